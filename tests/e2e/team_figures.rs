//! A team's figures and what is sent about them: its analytics, history
//! and exports under `?user_id=<team id>` for those whose role in the team
//! lets them see all of it; webhooks a team admin keeps for the team;
//! budget alerts and usage reports mailed to the team's admins and
//! billing members, through a real SMTP server.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use oneflow::Credits;

use crate::email::{Sink, email_to, task_runs, until};
use crate::support::{ADMIN_KEY, TestServer, credits};

/// Audio requests cost 5 credits each, quote == cost.
const PRICE: i64 = 5;

/// A team with an admin, a member, a viewer and a billing member, 100
/// credits in its wallet, and the member's team key.
struct Team {
    id: String,
    admin: String,
    member: String,
    viewer: String,
    billing: String,
    outsider: String,
    member_team_key: String,
}

async fn team(s: &TestServer) -> Team {
    let (_, admin) = s.user("ada", "0").await;
    let (member_id, member) = s.user("mel", "0").await;
    let (viewer_id, viewer) = s.user("vic", "0").await;
    let (billing_id, billing) = s.user("bea", "0").await;
    let (_, outsider) = s.user("oz", "0").await;
    let (st, t) = s.post(&admin, "/api/teams", json!({"name": "lab"})).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    for (user, role) in [
        (&member_id, "member"),
        (&viewer_id, "viewer"),
        (&billing_id, "billing"),
    ] {
        let path = format!("/api/teams/{id}/members/{user}");
        let (st, v) = s
            .call(
                Method::PUT,
                Some(&admin),
                &path,
                Some(&json!({"role": role})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": id, "amount": "100"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(&member, &format!("/api/teams/{id}/keys"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let member_team_key = v["api_key"].as_str().unwrap().to_string();
    Team {
        id,
        admin,
        member,
        viewer,
        billing,
        outsider,
        member_team_key,
    }
}

async fn spend(s: &TestServer, key: &str, n: usize) {
    for _ in 0..n {
        let (st, v) = s
            .post(
                key,
                "/api/request",
                json!({"model": "audio", "prompt": "x"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
}

async fn text(s: &TestServer, key: &str, path: &str) -> (StatusCode, String) {
    let res = s
        .http
        .get(format!("{}{path}", s.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

#[tokio::test]
async fn a_teams_figures_are_read_by_its_admin_viewers_and_billing_not_by_members() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start();
    let t = team(&s).await;
    spend(&s, &t.member_team_key, 3).await;
    let q = format!("user_id={}", t.id);

    // Those who see the whole team: the same figures as the records.
    let (_, page) = s
        .get(ADMIN_KEY, &format!("/api/history/requests?{q}&limit=100"))
        .await;
    let records = page["items"].as_array().unwrap().clone();
    assert_eq!(records.len(), 3, "{page}");
    let cost: Credits = records.iter().map(|r| credits(&r["cost"])).sum();
    assert_eq!(cost, Credits::from_credits(3 * PRICE));
    for key in [&t.admin, &t.viewer, &t.billing] {
        let (st, a) = s.get(key, &format!("/api/analytics?{q}")).await;
        assert_eq!(st, StatusCode::OK, "{a}");
        assert_eq!(a["user_id"], t.id.as_str());
        assert_eq!(a["total_requests"], 3, "{a}");
        assert_eq!(credits(&a["total_cost"]), cost, "{a}");
        let (st, h) = s.get(key, &format!("/api/history/requests?{q}")).await;
        assert_eq!(st, StatusCode::OK, "{h}");
        assert_eq!(h["items"].as_array().unwrap().len(), 3);
        let (st, series) = s
            .get(key, &format!("/api/analytics/series?{q}&bucket=hour"))
            .await;
        assert_eq!(st, StatusCode::OK, "{series}");
        let points = series["points"].as_array().unwrap();
        let in_series: u64 = points.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
        assert_eq!(in_series, 3, "{series}");
        let (st, b) = s.get(key, &format!("/api/budget?{q}")).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }

    // Exports: the team admin and billing; a viewer's role does not export.
    for key in [&t.admin, &t.billing] {
        let (st, csv) = text(&s, key, &format!("/api/export/requests?{q}&format=csv")).await;
        assert_eq!(st, StatusCode::OK, "{csv}");
        let rows = csv.trim_end().lines().count() - 1;
        assert_eq!(rows, 3, "{csv}");
        for r in &records {
            assert!(csv.contains(r["id"].as_str().unwrap()), "{csv}");
        }
    }
    let (st, body) = text(&s, &t.viewer, &format!("/api/export/requests?{q}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");

    // A member sees their own requests through the team's route, not the
    // team's figures; an outsider learns nothing of the team.
    for path in [
        format!("/api/analytics?{q}"),
        format!("/api/history/requests?{q}"),
        format!("/api/history/transactions?{q}"),
        format!("/api/budget?{q}"),
    ] {
        let (st, v) = s.get(&t.member, &path).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("member"),
            "{v}"
        );
        let (st, v) = s.get(&t.outsider, &path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (st, v) = s.get(ADMIN_KEY, "/api/analytics?user_id=team_0000").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "no such team: {v}");
    s.stop().await;
}

#[tokio::test]
async fn a_team_admin_keeps_the_teams_webhooks() {
    let s = TestServer::start();
    let t = team(&s).await;
    let body = json!({
        "url": "https://hooks.example.com/lab",
        "events": ["budget.threshold"],
        "user_id": t.id,
    });
    let (st, v) = s.post(&t.member, "/api/webhooks", body.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = s.post(&t.viewer, "/api/webhooks", body.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, hook) = s.post(&t.admin, "/api/webhooks", body).await;
    assert_eq!(st, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["user_id"], t.id.as_str());
    let hook_id = hook["id"].as_str().unwrap();
    let one = format!("/api/webhooks/{hook_id}");

    // Viewers read it and its log; only the team admin changes it.
    let (st, v) = s.get(&t.viewer, &one).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.get(&t.viewer, &format!("{one}/deliveries")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .get(&t.viewer, &format!("/api/webhooks?user_id={}", t.id))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["webhooks"].as_array().unwrap().len(), 1, "{v}");
    let delete = |key: &str| {
        s.http
            .delete(format!("{}{one}", s.url))
            .bearer_auth(key)
            .send()
    };
    for key in [&t.viewer, &t.member] {
        assert_eq!(delete(key).await.unwrap().status(), StatusCode::FORBIDDEN);
    }
    let (st, v) = s.get(&t.outsider, &one).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        delete(&t.admin).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (st, v) = s.get(&t.viewer, &one).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "gone: {v}");
    s.stop().await;
}

/// The e-mail addresses a message went to, sorted.
fn recipients(m: &Value) -> Vec<String> {
    let mut to: Vec<String> = m["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    to.sort();
    to
}

fn plain(m: &Value) -> String {
    m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == "text/plain")
        .and_then(|p| p["text"].as_str())
        .unwrap_or_else(|| panic!("no text part: {m}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_budget_alert_is_mailed_to_its_admins_once_per_window_and_percentage() {
    crate::support::avoid_midnight().await;
    let sink = Sink::start(false);
    let port = sink.port;
    let s = TestServer::start_with(move |c| {
        email_to(port, c);
        c.email.check_every_secs = 1;
        c.email.budget_alerts = vec![80, 100];
    });
    let t = team(&s).await;
    let path = format!("/api/teams/{}/budget", t.id);
    let (st, v) = s
        .call(
            Method::PUT,
            Some(&t.admin),
            &path,
            Some(&json!({"daily": (4 * PRICE).to_string()})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let to = vec!["ada@example.com".to_string(), "bea@example.com".to_string()];

    // 3 of 4 requests: 75 %, no alert, however many runs.
    spend(&s, &t.member_team_key, 3).await;
    let runs = task_runs(&s, "email-budget-alerts").await.0;
    until("two runs", || async {
        task_runs(&s, "email-budget-alerts").await.0 >= runs + 2
    })
    .await;
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());

    // The 4th: 100 %, which passes 80 % too; one message, at 100 %.
    spend(&s, &t.member_team_key, 1).await;
    until("the alert", || async { !sink.messages().is_empty() }).await;
    let runs = task_runs(&s, "email-budget-alerts").await.0;
    until("three more runs", || async {
        task_runs(&s, "email-budget-alerts").await.0 >= runs + 3
    })
    .await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(
        recipients(m),
        to,
        "the team's admin and billing member only"
    );
    assert_eq!(
        m["headers"]["Subject"], "OneFlow: Team lab's daily budget is 100% used",
        "{m}"
    );
    let (_, wallet) = s
        .get(&t.admin, &format!("/api/teams/{}/wallet", t.id))
        .await;
    let daily = wallet["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["window"] == "daily")
        .unwrap()
        .clone();
    let body = plain(m);
    let line = |l: String| assert!(body.lines().any(|x| x == l), "{l}:\n{body}\n{daily}");
    let six = |c: Credits| oneflow::report::credits6(c);
    line(format!("spent: {}", six(credits(&daily["spent"]))));
    line(format!("limit: {}", six(credits(&daily["limit"]))));
    line("remaining: 0.000000".into());
    assert_eq!(
        task_runs(&s, "email-budget-alerts").await.1,
        0,
        "no failed run"
    );

    // The team's usage report goes to the same people.
    let (st, sent) = s
        .post(
            &t.admin,
            "/api/reports/send-now",
            json!({"period": "day", "user_id": t.id}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{sent}");
    assert_eq!(
        sent["sent_to"], "ada@example.com, bea@example.com",
        "{sent}"
    );
    until("the report", || async { sink.messages().len() == 2 }).await;
    assert_eq!(recipients(&sink.messages()[1]), to);
    let (st, v) = s
        .post(
            &t.member,
            "/api/reports/send-now",
            json!({"period": "day", "user_id": t.id}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    s.stop().await;
}
