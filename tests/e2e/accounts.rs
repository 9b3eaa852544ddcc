//! Accounts and sign-in (docs/auth.md), through HTTP against the real
//! server: registering (open and by invitation), signing in, spending with
//! the access token, refreshing, signing out, refresh-token reuse, the
//! per-account lockout, and the bad input and bad tokens each refused with
//! a 4xx that changes nothing. The stored password is read back from the
//! redb file once the server has stopped.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use oneflow_actors::store::{RedbStore, Store};

use crate::support::{ADMIN_KEY, Api, TestServer};

const PASSWORD: &str = "a tune of moss and copper";
/// The signing key the tests that make their own tokens configure.
const SECRET: &str = "a signing key of at least thirty-two bytes";

fn open(c: &mut oneflow::config::Config) {
    c.auth.open_registration = true;
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A POST without a key: (status, Retry-After, body).
async fn public(api: &Api, path: &str, body: Value) -> (StatusCode, Option<u64>, Value) {
    let res = api
        .http
        .post(format!("{}{path}", api.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let text = res.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {status} {text}"))
    };
    (status, retry, v)
}

async fn register(api: &Api, name: &str, email: &str, password: &str) -> (StatusCode, Value) {
    let body = json!({"name": name, "email": email, "password": password});
    let (st, _, v) = public(api, "/api/auth/register", body).await;
    (st, v)
}

async fn login(api: &Api, email: &str, password: &str) -> (StatusCode, Option<u64>, Value) {
    let body = json!({"email": email, "password": password});
    public(api, "/api/auth/login", body).await
}

async fn refresh(api: &Api, token: &str) -> (StatusCode, Value) {
    let body = json!({"refresh_token": token});
    let (st, _, v) = public(api, "/api/auth/refresh", body).await;
    (st, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn user_count(api: &Api) -> usize {
    let (st, v) = api.get(ADMIN_KEY, "/api/users").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["users"].as_array().unwrap().len()
}

/// The fields of `body` are those `/api/openapi.json` documents for the
/// schema `name`: none undocumented, every required one there.
async fn documented_as(api: &Api, name: &str, body: &Value) {
    let res = api.http.get(format!("{}/api/openapi.json", api.url)).send();
    let doc: Value = res.await.unwrap().json().await.unwrap();
    let schema = &doc["components"]["schemas"][name];
    let props = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: {schema}"));
    for k in body.as_object().unwrap().keys() {
        assert!(
            props.contains_key(k),
            "{name}: `{k}` is not documented ({body})"
        );
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap();
        assert!(
            body.get(r).is_some(),
            "{name}: required `{r}` is absent ({body})"
        );
    }
}

#[tokio::test]
async fn an_account_registers_signs_in_spends_refreshes_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), open);

    let (st, user) = register(&s, "Ada", "Ada@Example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::CREATED, "{user}");
    assert_eq!(user["role"], "member");
    documented_as(&s, "User", &user).await;
    let user_id = user["id"].as_str().unwrap().to_string();
    // One account per address, whatever its case.
    let (st, v) = register(&s, "Ada again", " ada@example.COM", PASSWORD).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "email_taken"), "{v}");

    let (st, _, pair) = login(&s, "ada@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{pair}");
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    documented_as(&s, "TokenPair", &pair).await;
    let access = pair["access_token"].as_str().unwrap().to_string();
    assert_eq!(access.split('.').count(), 3, "{access}");

    // The access token is a key: the caller is the new user, with nothing
    // to spend yet.
    let (st, v) = s.get(&access, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], user_id.as_str(), "{v}");
    let ask = json!({"model": "gpt", "prompt": "hello brave world", "max_tokens": 10});
    let (st, v) = s.post(&access, "/api/request", ask.clone()).await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    // It is no admin's key.
    let (st, _) = s.get(&access, "/api/users").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": user_id, "amount": 10}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.post(&access, "/api/request", ask.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.balance(&access).await < oneflow::Credits::from_credits(10));
    let spent = s.charges(&access).await;
    assert_eq!(spent.len(), 1, "{spent:?}");

    // Refresh: a new pair, and the new access token works too.
    let (st, next) = refresh(&s, pair["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{next}");
    let next_refresh = next["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next_refresh, pair["refresh_token"].as_str().unwrap());
    let (st, v) = s
        .get(next["access_token"].as_str().unwrap(), "/api/status")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Sign out: the refresh token is dead.
    let body = json!({"refresh_token": next_refresh});
    let (st, _, v) = public(&s, "/api/auth/logout", body).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, v) = refresh(&s, &next_refresh).await;
    assert_eq!((st, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    s.stop().await;

    // The signing key was made at the first start and kept in the store:
    // after a restart, a token made before is still good.
    let s = TestServer::start_in(dir.path(), open);
    let (st, v) = s.get(&access, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;

    // What is stored of the password is its Argon2id hash.
    let store = RedbStore::open(&dir.path().join("oneflow.redb")).unwrap();
    let doc = store.doc("credential", "ada@example.com").unwrap().unwrap();
    let cred: Value = serde_json::from_slice(&doc.body).unwrap();
    let hash = cred["password_hash"].as_str().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!String::from_utf8_lossy(&doc.body).contains(PASSWORD));
    assert_eq!(cred["user_id"], user_id.as_str());
}

#[tokio::test]
async fn a_spent_refresh_token_shown_again_revokes_its_family() {
    let s = TestServer::start_with(open);
    let (st, v) = register(&s, "Bea", "bea@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, _, first) = login(&s, "bea@example.com", PASSWORD).await;
    let (_, _, other) = login(&s, "bea@example.com", PASSWORD).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let (st, second) = refresh(&s, r1).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();

    // r1 again: refused, and r2, of the same family, dies with it.
    let (st, v) = refresh(&s, r1).await;
    assert_eq!((st, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let (st, v) = refresh(&s, r2).await;
    assert_eq!((st, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    // Another sign-in of the same account is another family: untouched.
    let (st, v) = refresh(&s, other["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Unknown and absurd tokens are refused the same way.
    let (st, _) = refresh(&s, "ofr_0000").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = refresh(&s, &"x".repeat(5000)).await;
    assert!(
        st == StatusCode::UNAUTHORIZED || st == StatusCode::BAD_REQUEST,
        "{st}"
    );
    s.stop().await;
}

#[tokio::test]
async fn ten_wrong_passwords_lock_the_account_even_for_the_right_one() {
    let s = TestServer::start_with(|c| {
        open(c);
        // The per-address throttle is tested below; here only the account's
        // own count may refuse.
        c.server.auth_failures_per_minute = 1000;
    });
    for who in ["cy", "di"] {
        let (st, v) = register(&s, who, &format!("{who}@example.com"), PASSWORD).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    for i in 0..10 {
        let (st, _, v) = login(&s, "cy@example.com", "not the password at all").await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            "try {i}: {v}"
        );
    }
    let (st, retry, v) = login(&s, "cy@example.com", PASSWORD).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "account_locked"),
        "{v}"
    );
    let retry = retry.expect("Retry-After");
    assert!((1..=900).contains(&retry), "{retry}");
    // Another account is not locked by it; an unknown address answers
    // like a wrong password.
    let (st, _, v) = login(&s, "di@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, v) = login(&s, "nobody@example.com", PASSWORD).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    s.stop().await;
}

#[tokio::test]
async fn wrong_passwords_count_in_the_per_address_throttle() {
    let s = TestServer::start_with(|c| {
        open(c);
        c.server.auth_failures_per_minute = 3;
    });
    let (st, v) = register(&s, "Eve", "eve@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for i in 0..3 {
        let (st, _, v) = login(&s, &format!("guess{i}@example.com"), PASSWORD).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
    // This address is now refused before any password is looked at.
    let (st, retry, v) = login(&s, "eve@example.com", PASSWORD).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures"),
        "{v}"
    );
    assert!(retry.is_some());
    s.stop().await;
}

#[tokio::test]
async fn bad_input_and_bad_tokens_are_refused_and_change_nothing() {
    let s = TestServer::start_with(|c| {
        open(c);
        c.auth.jwt_secret = Some(SECRET.into());
    });
    let before = user_count(&s).await;
    let refused = [
        ("not-an-address", PASSWORD, "invalid_request"),
        ("two@@example.com", PASSWORD, "invalid_request"),
        ("short@example.com", "tooshort", "weak_password"),
        ("common@example.com", "qwerty123456", "weak_password"),
        ("common@example.com", "QWERTY123456", "weak_password"),
    ];
    for (email, password, want) in refused {
        let (st, v) = register(&s, "Mallory", email, password).await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::BAD_REQUEST, want),
            "{email}: {v}"
        );
        let (st, _, _) = login(&s, email, password).await;
        assert!(st.is_client_error(), "{email}: {st}");
    }
    let (_, v) = register(&s, "Mallory", "common@example.com", "qwerty123456").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("common"),
        "{v}"
    );
    let (st, v) = register(&s, "Mallory", "long@example.com", &"x".repeat(1025)).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::BAD_REQUEST, "weak_password"),
        "{v}"
    );
    let (st, _, v) = public(&s, "/api/auth/register", json!({"email": "x@y.z"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        user_count(&s).await,
        before,
        "a refused registration made a user"
    );

    // Tokens: with the configured secret, a good one passes (so the ones
    // below fail for what is wrong with them, not for the key).
    let (st, v) = register(&s, "Fay", "fay@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let sub = v["id"].as_str().unwrap().to_string();
    let now = now_secs();
    let sign = |claims: Value, secret: &str| {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let claims = |iat: i64, exp: i64, sub: &str| json!({"sub": sub, "role": "admin", "iat": iat, "exp": exp, "jti": "t"});
    let good = sign(claims(now, now + 600, &sub), SECRET);
    let (st, v) = s.get(&good, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The stored role decides, not the token's claim.
    let (st, _) = s.get(&good, "/api/users").await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let expired = sign(claims(now - 3600, now - 120, &sub), SECRET);
    let forged = sign(
        claims(now, now + 600, &sub),
        "another key, just as long as the first",
    );
    let body = good.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
    let stranger = sign(claims(now, now + 600, "usr_nobody"), SECRET);
    let hs512 = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS512),
        &claims(now, now + 600, &sub),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    for (what, token) in [
        ("expired", &expired),
        ("forged", &forged),
        ("alg none", &none),
        ("unknown user", &stranger),
        ("HS512", &hs512),
    ] {
        let (st, v) = s.get(token, "/api/status").await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{what}: {v}"
        );
        let (st, _) = s
            .call(
                Method::POST,
                Some(token),
                "/api/request",
                Some(&json!({"model": "gpt", "prompt": "hi"})),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}");
    }
    s.stop().await;
}

#[tokio::test]
async fn registration_by_invitation_uses_each_invitation_once() {
    let s = TestServer::start();
    let (st, v) = register(&s, "Gil", "gil@example.com", PASSWORD).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "registration_closed"),
        "{v}"
    );

    // Only admins invite, for 1 to 720 hours.
    let (_, user_key) = s.user("plain", "0").await;
    let (st, _) = s.post(&user_key, "/api/invitations", json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    for hours in [0, 721] {
        let (st, v) = s
            .post(
                ADMIN_KEY,
                "/api/invitations",
                json!({"expires_in_hours": hours}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{hours}: {v}");
    }
    let (st, bound) = s
        .post(
            ADMIN_KEY,
            "/api/invitations",
            json!({"email": "Gil@Example.com"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bound}");
    documented_as(&s, "CreatedInvitation", &bound).await;
    let hours = (bound["expires_at"].as_i64().unwrap() / 1000 - now_secs()) as f64 / 3600.0;
    assert!((71.9..=72.0).contains(&hours), "{hours}");
    let token = bound["token"].as_str().unwrap();

    let with = |email: &str, token: &str| json!({"name": "N", "email": email, "password": PASSWORD, "invitation": token});
    let before = user_count(&s).await;
    // For another address: refused, and not used up by it.
    let (st, _, v) = public(&s, "/api/auth/register", with("hal@example.com", token)).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "invalid_invitation"),
        "{v}"
    );
    let (st, _, v) = public(&s, "/api/auth/register", with("gil@example.com", token)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Used: refused for anyone, the same address included.
    let (st, _, v) = public(&s, "/api/auth/register", with("gil2@example.com", token)).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "invalid_invitation"),
        "{v}"
    );
    let (st, _, v) = public(&s, "/api/auth/register", with("gil@example.com", token)).await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::CONFLICT,
        "{st} {v}"
    );
    let (st, _, v) = public(
        &s,
        "/api/auth/register",
        with("ivy@example.com", "ofi_nope"),
    )
    .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::FORBIDDEN, "invalid_invitation"),
        "{v}"
    );
    assert_eq!(user_count(&s).await, before + 1);
    let (st, _, v) = login(&s, "gil@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // One invitation, several registrations at once: exactly one wins.
    let (st, open_inv) = s.post(ADMIN_KEY, "/api/invitations", json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{open_inv}");
    let token = open_inv["token"].as_str().unwrap().to_string();
    let before = user_count(&s).await;
    let racers = (0..4).map(|i| {
        let api = Api::new(&s.url);
        let body = with(&format!("racer{i}@example.com"), &token);
        async move { public(&api, "/api/auth/register", body).await }
    });
    let answers = futures_util::future::join_all(racers).await;
    let won = answers
        .iter()
        .filter(|a| a.0 == StatusCode::CREATED)
        .count();
    assert_eq!(won, 1, "{answers:?}");
    for (st, _, v) in answers.iter().filter(|a| a.0 != StatusCode::CREATED) {
        assert_eq!(
            (*st, code(v)),
            (StatusCode::FORBIDDEN, "invalid_invitation"),
            "{v}"
        );
    }
    assert_eq!(user_count(&s).await, before + 1);
    s.stop().await;
}

/// Two nodes on one PostgreSQL store: an account made on one signs in on
/// the other, an access token of one works on the other (the signing key
/// made at first start is read from the store, none is configured), a
/// refresh token is spent once across both, and wrong passwords sent to
/// both add up to one lockout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_accounts_tokens_and_lockouts() {
    let pg = crate::pg::PgSchema::new();
    let node = |name: &'static str| {
        TestServer::start_with(|c| {
            pg.apply(c, name);
            open(c);
            c.server.auth_failures_per_minute = 1000;
        })
    };
    let (a, b) = (node("a"), node("b"));
    let (st, v) = register(&a, "Hana", "hana@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = register(&b, "Hana", "HANA@example.com", PASSWORD).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "email_taken"), "{v}");

    let (st, _, pair) = login(&b, "hana@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{pair}");
    let access = pair["access_token"].as_str().unwrap();
    for api in [&a, &b] {
        let (st, v) = api.get(access, "/api/status").await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let first = pair["refresh_token"].as_str().unwrap();
    let (st, next) = refresh(&a, first).await;
    assert_eq!(st, StatusCode::OK, "{next}");
    // Shown again to the other node: spent there too, and the family goes.
    let (st, _) = refresh(&b, first).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = refresh(&a, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    for i in 0..10 {
        let api = if i % 2 == 0 { &a } else { &b };
        let (st, _, v) = login(api, "hana@example.com", "not the password at all").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
    for api in [&a, &b] {
        let (st, _, v) = login(api, "hana@example.com", PASSWORD).await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::TOO_MANY_REQUESTS, "account_locked")
        );
    }
    a.stop().await;
    b.stop().await;
}
