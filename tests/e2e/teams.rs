//! Teams: a shared wallet two members spend from at once, each within
//! their own cap inside the team's budget, with exact admission; who may
//! see and change what in a team.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use oneflow::Credits;

use crate::support::{ADMIN_KEY, TestServer, assert_ledger_balances, credits};

/// Audio requests cost 5 credits each, quote == cost.
const PRICE: i64 = 5;

async fn team_key(s: &TestServer, key: &str, team: &str, body: Value) -> String {
    let (st, v) = s.post(key, &format!("/api/teams/{team}/keys"), body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["team"], team);
    v["api_key"].as_str().unwrap().to_string()
}

/// Fires `n` requests with each key at once: successes per key.
async fn storm(s: &TestServer, keys: &[&str], n: usize) -> Vec<usize> {
    let body = json!({"model": "audio", "prompt": "x"});
    let futs = keys.iter().flat_map(|k| {
        let body = body.clone();
        (0..n).map(move |_| {
            let body = body.clone();
            async move { (*k, s.post(k, "/api/request", body).await) }
        })
    });
    let results = join_all(futs).await;
    keys.iter()
        .map(|k| {
            results
                .iter()
                .filter(|(key, (st, v))| {
                    assert!(
                        *st == StatusCode::OK || *st == StatusCode::PAYMENT_REQUIRED,
                        "{st}: {v}"
                    );
                    key == k && *st == StatusCode::OK
                })
                .count()
        })
        .collect()
}

async fn put(s: &TestServer, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::PUT, Some(key), path, Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_members_never_overspend_the_team_wallet_or_their_own_caps() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start();
    let (ann_id, ann) = s.user("ann", "0").await;
    let (bob_id, bob) = s.user("bob", "0").await;
    let (st, team) = s.post(&ann, "/api/teams", json!({"name": "lab"})).await;
    assert_eq!(st, StatusCode::CREATED, "{team}");
    let id = team["id"].as_str().unwrap().to_string();
    assert_eq!(team["members"][&ann_id], "team_admin");
    let (st, v) = put(
        &s,
        &ann,
        &format!("/api/teams/{id}/members/{bob_id}"),
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The team affords 37 requests; bob's own cap is 10 of them a day.
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": id, "amount": (37 * PRICE + 3).to_string()}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let budget = json!({"spenders": {bob_id.as_str(): {"daily": (10 * PRICE).to_string()}}});
    let (st, v) = put(&s, &ann, &format!("/api/teams/{id}/budget"), budget.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ann_t = team_key(&s, &ann, &id, json!({})).await;
    let bob_t = team_key(&s, &bob, &id, json!({})).await;

    // 250 each, at once: exactly what the wallet affords, bob within his cap.
    let ok = storm(&s, &[&ann_t, &bob_t], 250).await;
    assert_eq!(ok[0] + ok[1], 37, "{ok:?}");
    assert!(ok[1] <= 10, "{ok:?}");
    let (_, w) = s.get(&ann_t, &format!("/api/teams/{id}/wallet")).await;
    assert_eq!(credits(&w["balance"]), Credits::from_credits(3), "{w}");
    // Bob's cap is exact too: with money to spare, he gets his 10 a day
    // and not one more.
    s.post(
        ADMIN_KEY,
        "/api/credits/add",
        json!({"user_id": id, "amount": "1000"}),
    )
    .await;
    let more = storm(&s, &[&bob_t], 100).await;
    assert_eq!(ok[1] + more[0], 10, "{ok:?} then {more:?}");

    // The team's ledger balances; personal wallets were never touched.
    let ledger = s.ledger(&ann_t).await;
    let _ = ledger;
    let (_, tx) = s
        .get(
            ADMIN_KEY,
            &format!("/api/history/transactions?user_id={id}&limit=1000"),
        )
        .await;
    let mut entries: Vec<oneflow::ledger::LedgerEntry> =
        serde_json::from_value(tx["items"].clone()).unwrap();
    entries.reverse();
    let balance = credits(&s.get(ADMIN_KEY, &format!("/api/teams/{id}/wallet")).await.1["balance"]);
    assert_ledger_balances(&entries, balance);
    assert!(entries.iter().all(|e| !e.available_after.is_negative()));
    for k in [&ann, &bob] {
        assert_eq!(s.balance(k).await, Credits::ZERO);
    }

    // Records say who spent: bob sees his own, ann (team_admin) all.
    let (_, mine) = s
        .get(&bob_t, &format!("/api/teams/{id}/requests?limit=1000"))
        .await;
    let mine = mine["items"].as_array().unwrap();
    assert!(
        mine.iter().all(|r| r["member"] == bob_id.as_str()),
        "a member sees only their own"
    );
    assert_eq!(
        mine.iter().filter(|r| r["status"] == "succeeded").count(),
        10
    );
    let (_, all) = s
        .get(&ann_t, &format!("/api/teams/{id}/requests?limit=1000"))
        .await;
    let all = all["items"].as_array().unwrap();
    assert_eq!(
        all.iter().filter(|r| r["status"] == "succeeded").count(),
        37 + more[0]
    );
    assert!(all.iter().any(|r| r["member"] == ann_id.as_str()));
    s.stop().await;
}

#[tokio::test]
async fn a_member_changes_nothing_of_the_team_and_a_viewer_cannot_spend() {
    let s = TestServer::start();
    let (_, ann) = s.user("ann", "0").await;
    let (bob_id, bob) = s.user("bob", "0").await;
    let (cy_id, cy) = s.user("cy", "0").await;
    let (_, eve) = s.user("eve", "0").await;
    let (_, team) = s.post(&ann, "/api/teams", json!({"name": "lab"})).await;
    let id = team["id"].as_str().unwrap().to_string();
    for (who, role) in [(&bob_id, "member"), (&cy_id, "viewer")] {
        let (st, v) = put(
            &s,
            &ann,
            &format!("/api/teams/{id}/members/{who}"),
            json!({"role": role}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    s.post(
        ADMIN_KEY,
        "/api/credits/add",
        json!({"user_id": id, "amount": "100"}),
    )
    .await;
    // A member sets no budget, adds no one, makes no key for another.
    let (st, _) = put(
        &s,
        &bob,
        &format!("/api/teams/{id}/budget"),
        json!({"daily": "1000"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = put(
        &s,
        &bob,
        &format!("/api/teams/{id}/members/{cy_id}"),
        json!({"role": "team_admin"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            &bob,
            &format!("/api/teams/{id}/keys"),
            json!({"user_id": cy_id}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Nor a key above their role.
    let (st, _) = s
        .post(
            &bob,
            &format!("/api/teams/{id}/keys"),
            json!({"role": "team_admin"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A viewer reads the team's wallet and cannot spend from it.
    let viewer = team_key(&s, &cy, &id, json!({})).await;
    let (st, w) = s.get(&viewer, &format!("/api/teams/{id}/wallet")).await;
    assert_eq!(
        (st, credits(&w["balance"])),
        (StatusCode::OK, Credits::from_credits(100))
    );
    let (st, _) = s
        .post(
            &viewer,
            "/api/request",
            json!({"model": "audio", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let ask = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let (st, _) = s.post(&viewer, "/v1/chat/completions", ask).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Someone outside the team learns nothing of it.
    for path in [
        format!("/api/teams/{id}"),
        format!("/api/teams/{id}/wallet"),
    ] {
        let (st, _) = s.get(&eve, &path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, list) = s.get(&eve, "/api/teams").await;
    assert_eq!(list["teams"], json!([]));
    // A removed member's team keys stop working at once.
    let bob_t = team_key(&s, &bob, &id, json!({})).await;
    let (st, _) = s
        .post(
            &bob_t,
            "/api/request",
            json!({"model": "audio", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .call(
            Method::DELETE,
            Some(&ann),
            &format!("/api/teams/{id}/members/{bob_id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s
        .post(
            &bob_t,
            "/api/request",
            json!({"model": "audio", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // The last team_admin stays.
    let (ann_id, _) = (
        team["members"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone(),
        (),
    );
    let (st, _) = s
        .call(
            Method::DELETE,
            Some(&ann),
            &format!("/api/teams/{id}/members/{ann_id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Bad input.
    let (st, _) = s.post(&ann, "/api/teams", json!({"name": ""})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = put(
        &s,
        &ann,
        &format!("/api/teams/{id}/members/{cy_id}"),
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = put(
        &s,
        &ann,
        &format!("/api/teams/{id}/members/usr_nobody"),
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// A team admin invites someone into the team while registration is
/// closed: the account registered with the invitation joins the team with
/// the promised role. Nobody else of the team may invite.
#[tokio::test]
async fn a_team_admins_invitation_registers_a_member_of_the_team() {
    let s = TestServer::start();
    let (_, ann) = s.user("ann", "0").await;
    let (bob_id, bob) = s.user("bob", "0").await;
    let (eve_id, eve) = s.user("eve", "0").await;
    let (_, team) = s.post(&ann, "/api/teams", json!({"name": "lab"})).await;
    let id = team["id"].as_str().unwrap().to_string();
    put(
        &s,
        &ann,
        &format!("/api/teams/{id}/members/{bob_id}"),
        json!({"role": "member"}),
    )
    .await;
    // A team key for someone outside the team: the team is there, the
    // person is not in it.
    let (st, v) = s
        .post(
            &ann,
            &format!("/api/teams/{id}/keys"),
            json!({"user_id": eve_id}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let path = format!("/api/teams/{id}/invitations");
    let body = json!({"email": "Newt@Example.com", "role": "viewer"});
    let (st, v) = s.post(&bob, &path, body.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a member: {v}");
    let (st, v) = s.post(&eve, &path, body.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "an outsider: {v}");
    let (st, v) = s.post(&ann, &path, json!({"role": "admin"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "not a team role: {v}");
    let (st, inv) = s.post(&ann, &path, body).await;
    assert_eq!(st, StatusCode::CREATED, "{inv}");
    assert_eq!(inv["team"], id.as_str());
    assert_eq!(inv["team_role"], "viewer");
    assert_eq!(inv["email"], "newt@example.com");

    let password = "a long and unusual passphrase";
    let register = |token: &str| {
        s.http
            .post(format!("{}/api/auth/register", s.url))
            .json(&json!({"name": "Newt", "email": "newt@example.com",
                          "password": password, "invitation": token}))
            .send()
    };
    let res = register("ofi_not-a-real-one").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "closed without one");
    let res = register(inv["token"].as_str().unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let newt: Value = res.json().await.unwrap();
    let newt_id = newt["id"].as_str().unwrap();
    let (_, t) = s.get(&ann, &format!("/api/teams/{id}")).await;
    assert_eq!(t["members"][newt_id], "viewer", "{t}");

    // Signed in, the new viewer reads the team and cannot spend from it.
    let res = s
        .http
        .post(format!("{}/api/auth/login", s.url))
        .json(&json!({"email": "newt@example.com", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let pair: Value = res.json().await.unwrap();
    let token = pair["access_token"].as_str().unwrap();
    let (st, w) = s.get(token, &format!("/api/teams/{id}/wallet")).await;
    assert_eq!(st, StatusCode::OK, "{w}");
    let (st, v) = s
        .post(token, &format!("/api/teams/{id}/keys"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["role"], "viewer", "no more than the role in the team");
    let viewer_key = v["api_key"].as_str().unwrap();
    let (st, v) = s
        .post(
            viewer_key,
            "/api/request",
            json!({"model": "audio", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a viewer cannot spend: {v}");
    s.stop().await;
}

/// Where the deployment allows it, a team's admin and billing member add
/// credits to the team's wallet, once per Idempotency-Key, and the ledger
/// names who did; a member or viewer may not, nor anyone where it is off.
#[tokio::test]
async fn team_admins_and_billing_members_top_the_team_up_where_allowed() {
    for allowed in [false, true] {
        let s = TestServer::start_with(move |c| c.auth.team_top_ups = allowed);
        let (_, ann) = s.user("ann", "0").await;
        let (bea_id, bea) = s.user("bea", "0").await;
        let (mel_id, mel) = s.user("mel", "0").await;
        let (vic_id, vic) = s.user("vic", "0").await;
        let (_, eve) = s.user("eve", "0").await;
        let (_, team) = s.post(&ann, "/api/teams", json!({"name": "lab"})).await;
        let id = team["id"].as_str().unwrap().to_string();
        for (user, role) in [
            (&bea_id, "billing"),
            (&mel_id, "member"),
            (&vic_id, "viewer"),
        ] {
            let path = format!("/api/teams/{id}/members/{user}");
            let (st, v) = put(&s, &ann, &path, json!({"role": role})).await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        let path = format!("/api/teams/{id}/credits");
        let body = json!({"amount": "12.5", "note": "PO 1187"});
        if !allowed {
            for key in [&ann, &bea] {
                let (st, v) = s.post(key, &path, body.clone()).await;
                assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("team_top_ups")
                );
            }
            let (st, v) = s.post(ADMIN_KEY, &path, body.clone()).await;
            assert_eq!(st, StatusCode::OK, "an admin always may: {v}");
            assert_eq!(team_balance(&s, &ann, &id).await, Credits(12_500_000));
            s.stop().await;
            continue;
        }
        for key in [&mel, &vic] {
            let (st, v) = s.post(key, &path, body.clone()).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        }
        let (st, v) = s.post(&eve, &path, body.clone()).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "an outsider: {v}");
        assert_eq!(
            team_balance(&s, &ann, &id).await,
            Credits::ZERO,
            "nothing added by them"
        );

        let (st, v) = s.post(&ann, &path, body.clone()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(credits(&v["balance"]), Credits(12_500_000));
        // Twice with one Idempotency-Key: added once.
        for _ in 0..2 {
            let raw = s.post_raw(&bea, &path, Some("po-1188"), &body).await;
            assert_eq!(raw.status, StatusCode::OK, "{:?}", raw.json());
        }
        assert_eq!(team_balance(&s, &ann, &id).await, Credits(25_000_000));
        let (_, tx) = s
            .get(&bea, &format!("/api/history/transactions?user_id={id}"))
            .await;
        let notes: Vec<&str> = tx["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["note"].as_str())
            .collect();
        assert_eq!(notes.len(), 2, "{tx}");
        assert!(notes.iter().any(|n| n.contains(&bea_id)), "{notes:?}");
        let (st, v) = s.post(&bea, &path, json!({"amount": "0"})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        s.stop().await;
    }
}

async fn team_balance(s: &TestServer, key: &str, team: &str) -> Credits {
    credits(&s.get(key, &format!("/api/teams/{team}/wallet")).await.1["balance"])
}
