//! Video jobs (`POST /api/jobs`, `GET /api/jobs/{id}` and its content):
//! through OpenAI's video job API on the mock upstream and through the
//! simulated provider, with the hold checked while the job renders, the
//! settle by the seconds made, the release of failed and timed-out jobs,
//! and a job's hold surviving `kill -9`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::{Config, ProviderKind};
use oneflow::pricing::Modality;

use crate::process::Proc;
use crate::providers::provider;
use crate::support::{Api, TestServer, assert_ledger_balances, credits};
use crate::upstream::{Behavior, Kind, MockUpstream, videos};

/// Micro-credits per second of video of the mock's provider.
const PER_SECOND: i64 = 100_000;

/// Adds a `sora` provider: the OpenAI mock's video API, answering to
/// `sora-2`, asking a job's state every 20 ms.
fn with_video(c: &mut Config, up: &MockUpstream) {
    let mut p = provider(
        "sora",
        ProviderKind::Openai,
        Modality::Video,
        up,
        &["sora-2"],
    );
    p.rates = Default::default();
    p.rates.per_second = Credits(PER_SECOND);
    p.poll_interval_ms = 20;
    p.request.default_seconds = 4;
    p.request.max_seconds = 12;
    c.providers.push(p);
    c.retry.backoff_base_ms = 5;
    c.retry.backoff_max_ms = 20;
}

/// A broker with the `sora` provider ([`with_video`]).
fn video_broker(up: &MockUpstream, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(move |c| {
        with_video(c, up);
        tweak(c);
    })
}

/// Starts a job: its 202 answer's body, after checking its `Location`.
async fn start(api: &Api, key: &str, body: Value) -> Value {
    let res = api
        .http
        .post(format!("{}/api/jobs", api.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        location.unwrap(),
        format!("/api/jobs/{}", v["id"].as_str().unwrap())
    );
    v
}

/// Asks for the job until `done` says so (bounded).
async fn wait_job(api: &Api, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, v) = api.get(key, &format!("/api/jobs/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "the job never got there: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A succeeded job's file, after checking it comes as a video attachment.
async fn video(api: &Api, key: &str, id: &str) -> Vec<u8> {
    let res = api
        .http
        .get(format!("{}/api/jobs/{id}/content", api.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "video/mp4");
    let disposition = res.headers()["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    res.bytes().await.unwrap().to_vec()
}

fn ended(v: &Value) -> bool {
    ["succeeded", "failed", "interrupted"].contains(&v["status"].as_str().unwrap())
}

async fn held(api: &Api, key: &str) -> Credits {
    let (_, v) = api.get(key, "/api/status").await;
    credits(&v["held"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_job_holds_while_it_renders_and_settles_by_the_seconds_made() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = video_broker(&up, |_| {});
    let (_, key) = s.user("director", "10").await;
    // Rendering until the test lets it finish.
    up.push(Behavior::Endless {
        delay: Duration::ZERO,
    });
    let job = start(
        &s,
        &key,
        json!({"model": "sora-2", "prompt": "a cat on a boat", "seconds": 8}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    assert!(
        ["queued", "running"].contains(&job["status"].as_str().unwrap()),
        "{job}"
    );
    let quote = Credits(8 * PER_SECOND);
    assert_eq!(credits(&job["quote"]), quote);

    let running = wait_job(&s, &key, &id, |v| v["progress"] == 50).await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["provider"], "sora");
    assert!(running.get("cost").is_none(), "{running}");
    assert_eq!(held(&s, &key).await, quote);
    assert_eq!(s.balance(&key).await, Credits::from_credits(10));
    let (st, v) = s.get(&key, &format!("/api/jobs/{id}/content")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    videos::release(&up.base_url());
    let done = wait_job(&s, &key, &id, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["seconds"], 8);
    assert_eq!(credits(&done["cost"]), quote);
    assert_eq!(done["content_url"], format!("/api/jobs/{id}/content"));
    assert_eq!(held(&s, &key).await, Credits::ZERO);
    assert_eq!(s.balance(&key).await, Credits::from_credits(10) - quote);
    assert_eq!(s.charges(&key).await, vec![quote]);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);

    // The job as the upstream got it: a form with the model, the prompt
    // and the seconds asked; then polls of its id.
    let sent = up.requests();
    let create = String::from_utf8_lossy(&sent[0].raw_body).to_string();
    assert_eq!(
        (sent[0].method.as_str(), sent[0].path.as_str()),
        ("POST", "/v1/videos")
    );
    for part in ["sora-2", "a cat on a boat", "name=\"seconds\"\r\n\r\n8\r\n"] {
        assert!(create.contains(part), "{create}");
    }
    assert!(
        sent[1..]
            .iter()
            .all(|r| r.method == "GET" && r.path.starts_with("/v1/videos/video_mock"))
    );

    // The file, passed on from the upstream.
    assert_eq!(video(&s, &key, &id).await, videos::mp4());

    // The job is its request in the history.
    let (st, rec) = s.get(&key, &format!("/api/history/requests/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{rec}");
    assert_eq!(
        (rec["modality"].as_str(), rec["status"].as_str()),
        (Some("video"), Some("succeeded"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refused_or_overcounted_job_costs_no_more_than_its_hold() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = video_broker(&up, |_| {});
    let (_, key) = s.user("careful", "10").await;
    let ask = json!({"model": "sora-2", "prompt": "waves", "seconds": 4});
    let quote = Credits(4 * PER_SECOND);

    // The upstream fails the render: nothing is charged.
    up.push(Behavior::StreamError { after: 0 });
    let job = start(&s, &key, ask.clone()).await;
    let failed = wait_job(&s, &key, job["id"].as_str().unwrap(), ended).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("moderation"),
        "{failed}"
    );
    assert_eq!(credits(&failed["cost"]), Credits::ZERO);
    assert!(failed.get("content_url").is_none());
    let (st, v) = s
        .get(
            &key,
            &format!("/api/jobs/{}/content", job["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // The upstream refuses the create (a 400 is not retried).
    up.push(Behavior::Status(400, None));
    let job = start(&s, &key, ask.clone()).await;
    let refused = wait_job(&s, &key, job["id"].as_str().unwrap(), ended).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(credits(&refused["cost"]), Credits::ZERO);

    // The upstream says it made more seconds than were asked: the charge
    // stops at the hold.
    up.push(Behavior::Usage(json!("12")));
    let job = start(&s, &key, ask.clone()).await;
    let over = wait_job(&s, &key, job["id"].as_str().unwrap(), ended).await;
    assert_eq!(over["status"], "succeeded", "{over}");
    assert_eq!(credits(&over["cost"]), quote);

    // An id that is a path is never put in a URL: the job fails at once,
    // no poll follows, and the create is not sent again.
    let before = up.request_count();
    up.push(Behavior::Malformed);
    let job = start(&s, &key, ask.clone()).await;
    let hostile = wait_job(&s, &key, job["id"].as_str().unwrap(), ended).await;
    assert_eq!(hostile["status"], "failed", "{hostile}");
    assert_eq!(up.request_count(), before + 1);

    // Refused prompts are the requests' doing: more of them than
    // `circuit.failures` leave the provider's circuit closed.
    for _ in 0..6 {
        up.push(Behavior::StreamError { after: 0 });
        let job = start(&s, &key, ask.clone()).await;
        wait_job(&s, &key, job["id"].as_str().unwrap(), ended).await;
    }
    let job = start(&s, &key, ask.clone()).await;
    let fine = wait_job(&s, &key, job["id"].as_str().unwrap(), ended).await;
    assert_eq!(fine["status"], "succeeded", "{fine}");

    assert_eq!(held(&s, &key).await, Credits::ZERO);
    assert_eq!(s.charges(&key).await, vec![quote, quote]);
    assert_eq!(
        s.balance(&key).await,
        Credits::from_credits(10) - quote - quote
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_content_bound_is_refused_not_passed_on() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = video_broker(&up, |c| c.jobs.max_content_bytes = 1000);
    let (_, key) = s.user("hoarder", "10").await;
    let job = start(
        &s,
        &key,
        json!({"model": "sora-2", "prompt": "long", "seconds": 4}),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let done = wait_job(&s, &key, id, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (st, v) = s.get(&key, &format!("/api/jobs/{id}/content")).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "upstream_too_large");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_is_deleted_upstream_and_its_hold_released() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = video_broker(&up, |c| c.jobs.timeout_ms = 400);
    let (_, key) = s.user("impatient", "10").await;
    up.push(Behavior::Endless {
        delay: Duration::ZERO,
    });
    let job = start(
        &s,
        &key,
        json!({"model": "sora-2", "prompt": "slow", "seconds": 4}),
    )
    .await;
    let done = wait_job(&s, &key, job["id"].as_str().unwrap(), ended).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{done}"
    );
    assert_eq!(held(&s, &key).await, Credits::ZERO);
    assert_eq!(s.balance(&key).await, Credits::from_credits(10));
    // The render that nobody will pay for is stopped upstream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while videos::deleted(&up.base_url()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the job was never deleted upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deletes: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].path,
        format!("/v1/videos/{}", videos::deleted(&up.base_url())[0])
    );
    s.stop().await;
}

/// A graceful stop deletes upstream the renders still running: nobody
/// would pay for them. After the restart the job has ended with nothing
/// charged and no hold left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_deletes_the_renders_still_running() {
    let up = MockUpstream::start(Kind::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), |c| with_video(c, &up));
    let (_, key) = s.user("stopped", "10").await;
    up.push(Behavior::Endless {
        delay: Duration::ZERO,
    });
    let job = start(
        &s,
        &key,
        json!({"model": "sora-2", "prompt": "stop me", "seconds": 4}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_job(&s, &key, &id, |v| v["status"] == "running").await;
    s.stop().await;
    assert_eq!(videos::deleted(&up.base_url()).len(), 1);

    let s = TestServer::start_in(dir.path(), |c| with_video(c, &up));
    let (st, v) = s.get(&key, &format!("/api/jobs/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        ["interrupted", "failed"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(credits(&v["cost"]), Credits::ZERO);
    assert_eq!(held(&s, &key).await, Credits::ZERO);
    assert_eq!(s.balance(&key).await, Credits::from_credits(10));
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_video_job_runs_offline_and_request_videos_are_jobs_too() {
    let s = TestServer::start_with(|c| c.providers[3].simulated.latency_ms = 200);
    let (_, key) = s.user("offline", "100").await;
    let job = start(
        &s,
        &key,
        json!({"model": "video", "prompt": "a sunrise", "seconds": 3}),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(held(&s, &key).await, Credits::from_credits(20));
    let done = wait_job(&s, &key, id, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["seconds"], 3);
    assert_eq!(credits(&done["cost"]), Credits::from_credits(20));
    assert_eq!(&video(&s, &key, id).await[4..12], b"ftypisom");

    // A video asked of /api/request waits for its job; it is shown here too.
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "video", "prompt": "dusk"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, seen) = s
        .get(
            &key,
            &format!("/api/jobs/{}", v["request_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{seen}");
    assert_eq!(seen["status"], "succeeded");
    assert_eq!(s.balance(&key).await, Credits::from_credits(60));
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_answer_a_clear_4xx_for_what_they_cannot_take() {
    let s = TestServer::start_with(|c| {
        c.providers[3].simulated.latency_ms = 2_000;
        c.jobs.max_running = 1;
    });
    let (_, key) = s.user("asker", "100").await;
    let (_, other) = s.user("stranger", "100").await;

    let (st, v) = s
        .post(&key, "/api/jobs", json!({"model": "gpt", "prompt": "hi"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "not_a_job");

    let res = s
        .http
        .post(format!("{}/api/jobs", s.url))
        .bearer_auth(&key)
        .header("idempotency-key", "k1")
        .json(&json!({"model": "video", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{v}"
    );

    let job = start(&s, &key, json!({"model": "video", "prompt": "long"})).await;
    let id = job["id"].as_str().unwrap();
    // One job at a time here: the second waits its turn.
    let res = s
        .http
        .post(format!("{}/api/jobs", s.url))
        .bearer_auth(&other)
        .json(&json!({"model": "video", "prompt": "also"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_jobs");
    assert_eq!(held(&s, &other).await, Credits::ZERO);

    // Another user's job, and no job, are not found; a running one has no
    // content yet.
    for path in [format!("/api/jobs/{id}"), format!("/api/jobs/{id}/content")] {
        let (st, v) = s.get(&other, &path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    }
    let (st, _) = s.get(&key, "/api/jobs/req_nothing").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s.get(&key, &format!("/api/jobs/{id}/content")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // A text request is no job, even by its id.
    let (_, t) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "hi", "max_tokens": 3}),
        )
        .await;
    let (st, _) = s
        .get(
            &key,
            &format!("/api/jobs/{}", t["request_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    wait_job(&s, &key, id, ended).await;
    // Its place is given back: the next job starts.
    let next = start(&s, &other, json!({"model": "video", "prompt": "now"})).await;
    wait_job(&s, &other, next["id"].as_str().unwrap(), ended).await;
    s.stop().await;
}

const KILL_CONFIG: &str = r#"
[server]
workers = 2
shutdown_timeout_secs = 1

[[providers]]
name = "video"
kind = "simulated"
modality = "video"
[providers.rates]
per_request = 20
[providers.simulated]
latency_ms = 60000
"#;

/// The 202 acknowledges the job's hold: a `kill -9` right after it must
/// find the hold committed, so the restart releases it and the job reads
/// `interrupted` (a hold left to ride with its settle's commit would be
/// lost whole, and the acknowledged job with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_job_survives_kill_9_as_interrupted_with_nothing_charged() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("oneflow.toml"), KILL_CONFIG).unwrap();
    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let (_, key) = api.user("kept", "100").await;
    let job = start(
        &api,
        &key,
        json!({"model": "video", "prompt": "never finished"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .unwrap();

    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let (st, v) = api.get(&key, &format!("/api/jobs/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "interrupted", "{v}");
    assert_eq!(credits(&v["cost"]), Credits::ZERO);
    assert_eq!(held(&api, &key).await, Credits::ZERO);
    assert_eq!(api.balance(&key).await, Credits::from_credits(100));
    assert_ledger_balances(&api.ledger(&key).await, api.balance(&key).await);
}

/// A job started through a team key is paid from the team's wallet as
/// that member's; the member, the team's viewers and its admin see it and
/// its record, another plain member of the team does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_keys_job_is_paid_by_the_team_and_seen_by_who_may() {
    use reqwest::Method;
    let s = TestServer::start();
    let (_, ann) = s.user("ann", "0").await;
    let (bob_id, bob) = s.user("bob", "7").await;
    let (cat_id, cat) = s.user("cat", "0").await;
    let (vic_id, vic) = s.user("vic", "0").await;
    let (_, team) = s.post(&ann, "/api/teams", json!({"name": "studio"})).await;
    let team = team["id"].as_str().unwrap().to_string();
    for (user, role) in [
        (&bob_id, "member"),
        (&cat_id, "member"),
        (&vic_id, "viewer"),
    ] {
        let path = format!("/api/teams/{team}/members/{user}");
        let (st, v) = s
            .call(Method::PUT, Some(&ann), &path, Some(&json!({"role": role})))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = s
        .post(
            crate::support::ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": team, "amount": "50"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, k) = s
        .post(&bob, &format!("/api/teams/{team}/keys"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let bob_team = k["api_key"].as_str().unwrap();

    let job = start(
        &s,
        bob_team,
        json!({"model": "video", "prompt": "a sunrise", "seconds": 3}),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let done = wait_job(&s, bob_team, id, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (_, wallet) = s.get(&ann, &format!("/api/teams/{team}/wallet")).await;
    assert_eq!(
        credits(&wallet["balance"]),
        Credits::from_credits(30),
        "{wallet}"
    );
    assert_eq!(
        s.balance(&bob).await,
        Credits::from_credits(7),
        "bob's own is untouched"
    );

    let record = format!("/api/history/requests/{id}");
    let job_path = format!("/api/jobs/{id}");
    for key in [bob_team, bob.as_str(), vic.as_str(), ann.as_str()] {
        for path in [&record, &job_path] {
            let (st, v) = s.get(key, path).await;
            assert_eq!(st, StatusCode::OK, "{path}: {v}");
        }
    }
    let (_, r) = s.get(&bob, &record).await;
    assert_eq!(r["member"], bob_id.as_str());
    assert_eq!(r["user_id"], team.as_str());
    for path in [&record, &job_path] {
        let (st, v) = s.get(&cat, path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "another member: {path}: {v}");
    }
    s.stop().await;
}
