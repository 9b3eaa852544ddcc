//! API key management: keys made for oneself or (admin) for anyone, listed
//! without secrets, revoked at once and for good (across a restart), and
//! nobody revokes or sees another user's keys.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{ADMIN_KEY, Api, TestServer};

async fn delete(api: &Api, key: &str, path: &str) -> (StatusCode, Value) {
    api.call(Method::DELETE, Some(key), path, None).await
}

/// `POST /api/keys`: (key id, secret).
async fn new_key(api: &Api, key: &str, body: Value) -> (String, String) {
    let (s, v) = api.post(key, "/api/keys", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["api_key"].as_str().unwrap().to_string(),
    )
}

async fn status_of(api: &Api, key: &str) -> StatusCode {
    api.get(key, "/api/status").await.0
}

fn ids(v: &Value) -> Vec<String> {
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_revoked_key_fails_at_once_and_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), |_| {});
    let (ann_id, ann) = s.user("ann", "10").await;
    let (k2_id, k2) = new_key(&s, &ann, json!({})).await;
    let (k3_id, k3) = new_key(&s, ADMIN_KEY, json!({"user_id": ann_id})).await;
    // Used before revocation, so the broker has them in its cache.
    for k in [&ann, &k2, &k3] {
        let (st, v) = s.get(k, "/api/status").await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["user_id"], ann_id.as_str());
    }

    // Ann revokes k2 with her first key; the admin revokes k3.
    let (st, v) = delete(&s, &ann, &format!("/api/keys/{k2_id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["key"]["id"], k2_id.as_str());
    let (st, v) = delete(&s, ADMIN_KEY, &format!("/api/keys/{k3_id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(status_of(&s, &k2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&s, &k3).await, StatusCode::UNAUTHORIZED);
    let (st, v) = s
        .post(&k2, "/api/request", json!({"model": "gpt", "prompt": "hi"}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    assert_eq!(status_of(&s, &ann).await, StatusCode::OK);
    // A second revocation of the same key finds nothing.
    let (st, _) = delete(&s, &ann, &format!("/api/keys/{k2_id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    s.stop().await;
    let s = TestServer::start_in(tmp.path(), |_| {});
    assert_eq!(status_of(&s, &k2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&s, &k3).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&s, &ann).await, StatusCode::OK);
    let (st, v) = s.get(&ann, "/api/keys").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let listed = ids(&v);
    assert_eq!(listed.len(), 1, "{v}");
    assert!(!listed.contains(&k2_id) && !listed.contains(&k3_id), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn users_cannot_make_list_or_revoke_keys_of_others() {
    let s = TestServer::start();
    let (ann_id, ann) = s.user("ann", "10").await;
    let (bob_id, bob) = s.user("bob", "10").await;
    let (bob2_id, bob2) = new_key(&s, &bob, json!({"user_id": bob_id})).await;

    let (st, v) = s.get(&ann, "/api/keys").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert!(keys.iter().all(|k| k["user_id"] == ann_id.as_str()), "{v}");
    assert!(!ids(&v).contains(&bob2_id));
    // Another user's keys, listed, made or revoked by ann: "not found",
    // exactly as for an id that does not exist.
    let (st, v) = s.get(&ann, &format!("/api/keys?user_id={bob_id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s.post(&ann, "/api/keys", json!({"user_id": bob_id})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, theirs) = delete(&s, &ann, &format!("/api/keys/{bob2_id}")).await;
    let (st2, none) = delete(&s, &ann, "/api/keys/key_0000000000000000").await;
    assert_eq!((st, st2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(theirs, none);
    assert_eq!(status_of(&s, &bob2).await, StatusCode::OK);

    // A key made by the admin for ann is a member key of ann's.
    let (st, v) = s
        .post(ADMIN_KEY, "/api/keys", json!({"user_id": ann_id}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["user_id"], ann_id.as_str());
    assert_eq!(v["role"], "member");
    let (st, v) = s.get(v["api_key"].as_str().unwrap(), "/api/users").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // The admin sees everyone's keys and revokes bob's.
    let (st, v) = s.get(ADMIN_KEY, "/api/keys").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let owners: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["user_id"].as_str().unwrap())
        .collect();
    for who in ["admin", ann_id.as_str(), bob_id.as_str()] {
        assert!(owners.contains(&who), "{v}");
    }
    let (st, v) = delete(&s, ADMIN_KEY, &format!("/api/keys/{bob2_id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(status_of(&s, &bob2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&s, &bob).await, StatusCode::OK);

    // The last admin key cannot go; once there is a second, it can.
    let (st, v) = s.get(ADMIN_KEY, "/api/keys?user_id=admin").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let admin_key_id = ids(&v).pop().unwrap();
    let path = format!("/api/keys/{admin_key_id}");
    let (st, v) = delete(&s, ADMIN_KEY, &path).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    let (_, admin2) = new_key(&s, ADMIN_KEY, json!({})).await;
    let (st, v) = delete(&s, &admin2, &path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(status_of(&s, ADMIN_KEY).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get(&admin2, "/api/users").await.0, StatusCode::OK);

    // Bad bodies are a 400 in our shape, never read as "no body".
    for body in [json!({"user_id": 5}), json!({"user": ann_id}), json!([])] {
        let (st, v) = s.post(&ann, "/api/keys", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request");
    }
    let (st, v) = s.get(&ann, "/api/keys?user=x").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = delete(&s, "of_not_a_key", "/api/keys/x").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn listings_never_show_a_secret_or_its_hash() {
    let s = TestServer::start();
    let (ann_id, ann) = s.user("ann", "10").await;
    let (_, k2) = new_key(&s, &ann, json!({})).await;
    let (_, k3) = new_key(&s, ADMIN_KEY, json!({"user_id": ann_id})).await;
    let secrets = [ann.clone(), k2, k3, ADMIN_KEY.to_string()];
    for who in [ann.as_str(), ADMIN_KEY] {
        let res = s
            .http
            .get(format!("{}/api/keys", s.url))
            .bearer_auth(who)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let text = res.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert!(keys.len() >= 3, "{v}");
        for k in keys {
            let mut fields: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
            fields.sort_unstable();
            assert_eq!(
                fields,
                ["created_at", "id", "prefix", "role", "user_id"],
                "{k}"
            );
        }
        for secret in &secrets {
            let hash: String = Sha256::digest(secret.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(
                !text.contains(secret.as_str()),
                "a secret is listed: {text}"
            );
            assert!(!text.contains(&hash[..24]), "a hash is listed: {text}");
        }
    }
}

/// Revocation racing authentications of the same key: once any request
/// has been refused, none after it is let in (a lookup that read the key
/// just before the delete must not put it back in the cache), and every
/// request after the revocation's answer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_under_load_never_comes_back() {
    // Dozens of refusals of the revoked key come from this one address by
    // design: lift the guessing throttle out of the way.
    let s = TestServer::start_with(|c| c.server.auth_failures_per_minute = 10_000);
    let (_, ann) = s.user("ann", "10").await;
    let (k2_id, k2) = new_key(&s, &ann, json!({})).await;
    let api = std::sync::Arc::new(Api::new(&s.url));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (api, k2) = (api.clone(), k2.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Bounded: stops after a few refusals, or at 5,000 requests.
            while seen.len() < 5000
                && seen
                    .iter()
                    .filter(|s| **s == StatusCode::UNAUTHORIZED)
                    .count()
                    < 5
            {
                seen.push(status_of(&api, &k2).await);
            }
            seen
        }));
    }
    let (st, v) = delete(&s, &ann, &format!("/api/keys/{k2_id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for _ in 0..10 {
        assert_eq!(status_of(&s, &k2).await, StatusCode::UNAUTHORIZED);
    }
    for t in tasks {
        let seen = t.await.unwrap();
        let first_refusal = seen
            .iter()
            .position(|s| *s == StatusCode::UNAUTHORIZED)
            .unwrap_or_else(|| panic!("never refused in {} requests", seen.len()));
        assert!(
            seen[..first_refusal].iter().all(|s| *s == StatusCode::OK),
            "{seen:?}"
        );
        assert!(
            seen[first_refusal..]
                .iter()
                .all(|s| *s == StatusCode::UNAUTHORIZED),
            "the key worked again after a refusal: {seen:?}"
        );
    }
    assert_eq!(status_of(&s, &ann).await, StatusCode::OK);
}
