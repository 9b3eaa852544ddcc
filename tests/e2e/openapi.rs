//! The OpenAPI document against the running server, both ways: every
//! documented operation answers (is not the not-found fallback), and every
//! route registered in the source is documented. Then the documented
//! examples are accepted, real answers carry exactly the documented fields,
//! and the Swagger UI and ReDoc pages load only files this server serves.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, TestServer};

/// Routes that are not part of the API and so stay out of the document.
/// Each needs a reason; anything else registered must be documented.
const NOT_API: &[(&str, &str, &str)] = &[
    ("GET", "/", "the dashboard page"),
    ("GET", "/assets/{file}", "the dashboard's static files"),
    (
        "GET",
        "/metrics",
        "Prometheus text for scrapers, not a client API",
    ),
];

/// Documented request examples this test does not send, each with why.
/// The sign-in routes' examples name an account, a password or a token
/// that exists only once a test has made it; `tests/e2e/accounts.rs`
/// drives those routes.
const EXAMPLES_NOT_SENT: &[(&str, &str)] = &[
    (
        "/api/auth/register",
        "needs open registration or an invitation",
    ),
    ("/api/auth/login", "needs a registered account"),
    ("/api/auth/refresh", "needs a refresh token of a sign-in"),
    ("/api/auth/logout", "needs a refresh token of a sign-in"),
    (
        "/api/reconcile",
        "an admin's upload of a provider's export; tests/e2e/reconcile.rs sends each format",
    ),
    (
        "/api/experiments/{id}/promote",
        "ends the experiment the GETs read (tests/e2e/experiments.rs)",
    ),
    (
        "/api/feedback",
        "needs a request of the caller's (tests/e2e/experiments.rs)",
    ),
];

/// The name the dashboard example is saved under.
const DASHBOARD: &str = "docs";

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head", "options"];

/// `(METHOD, path)` of every documented operation.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(*m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// `{name:regex}` → `{name}`, as OpenAPI writes path parameters.
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push(c);
            }
            '}' if in_param => {
                in_param = false;
                skipping = false;
                out.push(c);
            }
            ':' if in_param => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

/// The first string literal at the start of `s` (after `(` and spaces).
fn literal(s: &str) -> Option<String> {
    let s = s.trim_start_matches(['(', ' ', '\n']);
    let rest = s.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Method constructors in a builder chain: `web::get()` and friends.
fn chain_methods(chain: &str) -> Vec<String> {
    METHODS
        .iter()
        .filter(|m| chain.contains(&format!("web::{m}()")))
        .map(|m| m.to_uppercase())
        .collect()
}

/// Every route that source code under `dir` registers with actix-web,
/// read from the text: route attributes (`#[get("/x")]`, `#[route("/x",
/// method = "GET")]`), `.route("/x", web::get()...)` and
/// `web::resource("/x")...route(web::post()...)`. A construct this parser
/// does not understand (a `web::scope`) fails the test rather than hide
/// routes from it.
fn registered_routes(dir: &Path, out: &mut BTreeSet<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            registered_routes(&path, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        // Comments may quote routes; only code counts.
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let file = path.display();
        assert!(
            !text.contains("web::scope("),
            "{file}: uses web::scope, which tests/e2e/openapi.rs cannot read yet; teach \
             registered_routes() about it so its routes are checked against the document"
        );
        for (i, _) in text.match_indices("#[") {
            let attr = &text[i + 2..];
            let attr = attr.strip_prefix("actix_web::").unwrap_or(attr);
            for m in METHODS {
                if let Some(rest) = attr.strip_prefix(&format!("{m}(")) {
                    if let Some(p) = literal(rest) {
                        out.insert((m.to_uppercase(), normalise(&p)));
                    }
                }
            }
            if let Some(rest) = attr.strip_prefix("route(") {
                let p = literal(rest).expect("#[route] with a literal path");
                let head = &rest[..rest.find(")]").expect("end of #[route(...)]")];
                let mut any = false;
                for m in METHODS {
                    if head.contains(&format!("method = \"{}\"", m.to_uppercase())) {
                        out.insert((m.to_uppercase(), normalise(&p)));
                        any = true;
                    }
                }
                assert!(any, "{file}: #[route(\"{p}\")] without a method");
            }
        }
        for (i, _) in text.match_indices(".route(\"") {
            let rest = &text[i + ".route(".len()..];
            let p = literal(rest).unwrap();
            let call = &rest[..rest.find(".to(").unwrap_or(rest.len()).min(200)];
            let methods = chain_methods(call);
            assert!(
                !methods.is_empty(),
                "{file}: .route(\"{p}\", ..) without a method guard"
            );
            for m in methods {
                out.insert((m, normalise(&p)));
            }
        }
        for (i, _) in text.match_indices("web::resource(") {
            let rest = &text[i + "web::resource(".len()..];
            let p = literal(rest).expect("web::resource with a literal path");
            // The builder chain: up to the end of the statement or the next
            // resource.
            let end = [rest.find(';'), rest.find("web::resource(")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(rest.len());
            let methods = chain_methods(&rest[..end]);
            assert!(
                !methods.is_empty(),
                "{file}: web::resource(\"{p}\") without a method guard (web::get() ...)"
            );
            for m in methods {
                out.insert((m, normalise(&p)));
            }
        }
    }
}

/// The server's answer for a request no route takes: 404 for a path no
/// route serves, 405 for a path served with other methods.
fn is_fallback(status: StatusCode, body: &str) -> bool {
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    match status {
        StatusCode::NOT_FOUND => {
            serde_json::from_str::<Value>(body).ok()
                == Some(json!({"error": {"code": "not_found", "message": "route not found"}}))
        }
        StatusCode::METHOD_NOT_ALLOWED => code.as_deref() == Some("method_not_allowed"),
        _ => false,
    }
}

async fn probe(s: &TestServer, method: &str, path: &str) -> (StatusCode, String) {
    // Path parameters get a value no resource has: the handler answers
    // (404 for *that* resource, 400, 401...), the fallback does not.
    let filled: String = {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("doc-probe");
                }
                '}' => in_param = false,
                _ if in_param => {}
                _ => out.push(c),
            }
        }
        out
    };
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    // No key and no body: nothing is created or charged.
    let res = s
        .http
        .request(m, format!("{}{filled}", s.url))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.text().await.unwrap())
}

async fn document(s: &TestServer) -> Value {
    let res = s
        .http
        .get(format!("{}/api/openapi.json", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    res.json().await.unwrap()
}

#[tokio::test]
async fn document_matches_running_routes_both_ways() {
    let s = TestServer::start();
    let doc = document(&s).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "bearer security scheme"
    );
    let documented = documented(&doc);

    // The detector works: an unknown path and a wrong method are the
    // fallback, a known route is not.
    let (st, body) = probe(&s, "GET", "/api/no-such-route").await;
    assert!(is_fallback(st, &body), "{st} {body}");
    let (st, body) = probe(&s, "DELETE", "/api/status").await;
    assert!(
        is_fallback(st, &body),
        "a wrong method must not reach a route: {st} {body}"
    );
    let (st, body) = probe(&s, "GET", "/api/status").await;
    assert!(!is_fallback(st, &body), "{st} {body}");

    // (a) Every documented operation exists, with this method.
    let mut missing = Vec::new();
    for (method, path) in &documented {
        let (st, body) = probe(&s, method, path).await;
        if is_fallback(st, &body) {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "documented in web/src/openapi/ but not served: {missing:?}"
    );

    // (b) Every route the source registers is documented, or is listed in
    // NOT_API with a reason.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut registered = BTreeSet::new();
    registered_routes(&src, &mut registered);
    for known in [
        ("GET", "/api/status"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/api/docs"),
    ] {
        assert!(
            registered.contains(&(known.0.to_string(), known.1.to_string())),
            "the source scan missed {known:?}: {registered:?}"
        );
    }
    let undocumented: Vec<_> = registered
        .iter()
        .filter(|r| !documented.contains(*r))
        .filter(|(m, p)| !NOT_API.iter().any(|(nm, np, _)| nm == m && np == p))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes registered in web/src but missing from the OpenAPI document \
         (add a function to its area's file in web/src/openapi/ and list it in ApiDoc): {undocumented:?}"
    );
    // And every registered route is really served (the scan reads live code).
    for (method, path) in &registered {
        if NOT_API.iter().any(|(m, p, _)| m == method && p == path) {
            continue;
        }
        let (st, body) = probe(&s, method, path).await;
        assert!(
            !is_fallback(st, &body),
            "{method} {path} is in the source but not served"
        );
    }
    s.stop().await;
}

/// Follows `$ref`s into `components.schemas`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The JSON schema of `method path`'s request body, if any.
fn request_schema<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let s =
        doc["paths"][path][method]["requestBody"]["content"]["application/json"].get("schema")?;
    // An optional body (`POST /api/keys`) is `oneOf: [null, the body]`.
    let s = s["oneOf"]
        .as_array()
        .and_then(|o| o.iter().find(|v| v.get("$ref").is_some()))
        .unwrap_or(s);
    Some(resolve(doc, s))
}

/// The JSON schema of `method path`'s 2xx answer, with an `allOf` (what a
/// `#[serde(flatten)]` field derives) merged into one object's properties.
fn response_schema(doc: &Value, method: &str, path: &str) -> Value {
    let responses = &doc["paths"][path][method]["responses"];
    let ok = ["200", "201", "202"]
        .iter()
        .find_map(|c| responses.get(*c))
        .unwrap_or_else(|| panic!("{method} {path}: no 2xx response documented"));
    merge_all_of(
        doc,
        resolve(doc, &ok["content"]["application/json"]["schema"]),
    )
}

/// `schema` with the properties and required fields of each `allOf` part
/// (references followed) gathered into its own; as it is without `allOf`.
fn merge_all_of(doc: &Value, schema: &Value) -> Value {
    let Some(parts) = schema["allOf"].as_array() else {
        return schema.clone();
    };
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for part in parts {
        let part = merge_all_of(doc, resolve(doc, part));
        if let Some(p) = part["properties"].as_object() {
            props.extend(p.clone());
        }
        required.extend(part["required"].as_array().into_iter().flatten().cloned());
    }
    json!({"type": "object", "properties": props, "required": required})
}

/// Every field of `body` is documented, and every required field is there.
fn assert_fields_match(schema: &Value, body: &Value, what: &str) {
    let props = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: documented schema has no properties: {schema}"));
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {body}"));
    for k in obj.keys() {
        assert!(
            props.contains_key(k),
            "{what}: field `{k}` is not documented ({body})"
        );
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap();
        assert!(
            obj.contains_key(r),
            "{what}: documented required field `{r}` is absent ({body})"
        );
    }
}

#[tokio::test]
async fn examples_are_accepted_and_answers_have_the_documented_fields() {
    // An SMTP server, so that the report example is sent (tests/e2e/email.rs).
    let sink = crate::email::Sink::start(false);
    let s = TestServer::start_with(|c| {
        crate::email::email_to(sink.port, c);
        // So that the team top-up's example is taken (the caller is the
        // team's admin); it is off by default.
        c.auth.team_top_ups = true;
    });
    let doc = document(&s).await;
    let (user_id, key) = s.user("docs-reader", "1000").await;
    // A team of the user's, with a second member, for the team routes.
    let (other_id, _) = s.user("docs-colleague", "0").await;
    let (_, team) = s.post(&key, "/api/teams", json!({"name": "docs"})).await;
    let team_id = team["id"].as_str().unwrap().to_string();

    // Every documented request example is a body the server takes.
    let mut tried = 0;
    let mut request_id = None;
    let mut response_id = None;
    let mut job_id = None;
    let mut webhook_id = None;
    let mut experiment_id = None;
    for (method, path) in documented(&doc) {
        let m = method.to_lowercase();
        let Some(schema) = request_schema(&doc, &m, &path) else {
            continue;
        };
        if EXAMPLES_NOT_SENT.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let mut example = schema
            .get("example")
            .or_else(|| schema["examples"].get(0))
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path}: request schema has no example"));
        if example.get("user_id").is_some() {
            example["user_id"] = json!(user_id);
        }
        let admin_only = doc["paths"][&path][&m]["x-oneflow-permission"] == "administer";
        let k = if admin_only { ADMIN_KEY } else { key.as_str() };
        let target = if path.starts_with("/api/teams/") {
            path.replace("{id}", &team_id)
                .replace("{user_id}", &other_id)
        } else {
            // A saved dashboard's name, read back in the GETs below.
            path.replace("{name}", DASHBOARD)
        };
        let res = s
            .http
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{target}", s.url),
            )
            .bearer_auth(k)
            .json(&example)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let is_json = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
        let bytes = res.bytes().await.unwrap();
        assert!(
            status.is_success(),
            "{method} {path}: documented example {example} refused: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        if is_json {
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_fields_match(
                &response_schema(&doc, &m, &path),
                &body,
                &format!("{method} {path}"),
            );
            if path == "/api/request" {
                request_id = body["request_id"].as_str().map(str::to_string);
            }
            if path == "/v1/responses" {
                response_id = body["id"].as_str().map(str::to_string);
            }
            if path == "/api/jobs" {
                job_id = body["id"].as_str().map(str::to_string);
            }
            if path == "/api/webhooks" {
                webhook_id = body["id"].as_str().map(str::to_string);
            }
            if path == "/api/experiments" {
                experiment_id = body["id"].as_str().map(str::to_string);
            }
        }
        tried += 1;
    }
    assert!(tried >= 9, "only {tried} request examples found");

    // Documented GETs answer with the documented fields.
    let request_id = request_id.expect("the /api/request example ran");
    let response_id = response_id.expect("the /v1/responses example ran");
    let job_id = job_id.expect("the /api/jobs example ran");
    let webhook_id = webhook_id.expect("the /api/webhooks example ran");
    // A kept reconciliation report (of an export with no rows), to read back.
    let res = s
        .http
        .post(format!("{}/api/reconcile?provider=gpt", s.url))
        .bearer_auth(ADMIN_KEY)
        .body("day,model,input_tokens,output_tokens,cost\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let reconcile_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let experiment_id = experiment_id.expect("the /api/experiments example ran");
    let mut checked = 0;
    for (method, path) in documented(&doc) {
        if method != "GET" {
            continue;
        }
        let m = "get";
        let ok = &doc["paths"][&path][m]["responses"]["200"]["content"];
        if ok.get("application/json").is_none() || path == "/api/openapi.json" {
            continue;
        }
        let id = if path.starts_with("/v1/responses/") {
            &response_id
        } else if path.starts_with("/api/jobs/") {
            &job_id
        } else if path.starts_with("/api/webhooks/") {
            &webhook_id
        } else if path.starts_with("/api/experiments/") {
            &experiment_id
        } else if path.starts_with("/api/teams/") {
            &team_id
        } else if path.starts_with("/api/reconcile/") {
            &reconcile_id
        } else {
            &request_id
        };
        let mut filled = path
            .replace("{id}", id)
            .replace("{kind}", "requests")
            .replace("{name}", DASHBOARD)
            .replace("{index}", "0");
        if path == "/api/analytics/groups" {
            filled.push_str("?group_by=model");
        }
        if path.starts_with("/api/export/") {
            // CSV by default; the JSON form is the one compared here.
            filled.push_str("?format=json");
        }
        assert!(!filled.contains('{'), "{path}: fill its parameter here");
        // Admin-only GETs: the users' endpoints, the configuration, the
        // experiments and the reconciliation reports.
        let k = if doc["paths"][&path][m]["x-oneflow-permission"] == "administer" {
            ADMIN_KEY
        } else {
            key.as_str()
        };
        let (st, body) = s.get(k, &filled).await;
        assert_eq!(st, StatusCode::OK, "GET {filled}: {body}");
        let schema = response_schema(&doc, m, &path);
        // Free-form answers (the config) have no fields to compare.
        if schema.get("properties").is_some() {
            assert_fields_match(&schema, &body, &format!("GET {path}"));
        }
        checked += 1;
    }

    assert!(checked >= 10, "only {checked} GET answers checked");

    // Errors have the documented shapes, native and OpenAI.
    let (st, body) = s.call(Method::GET, None, "/api/status", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let err = &doc["components"]["schemas"]["ErrorBody"];
    assert_fields_match(err, &body, "native error");
    assert_fields_match(
        resolve(&doc, &err["properties"]["error"]),
        &body["error"],
        "native error detail",
    );
    let (st, body) = s.call(Method::GET, None, "/v1/models", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let err = &doc["components"]["schemas"]["OpenAiErrorBody"];
    assert_fields_match(err, &body, "OpenAI error");
    assert_fields_match(
        resolve(&doc, &err["properties"]["error"]),
        &body["error"],
        "OpenAI error detail",
    );
    s.stop().await;
}

/// `src`/`href` attribute values of `<script>` and `<link>` tags.
fn loaded_by(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let attr = if tag.starts_with("script") {
            "src=\""
        } else if tag.starts_with("link") {
            "href=\""
        } else if tag.starts_with("img") || tag.starts_with("iframe") {
            "src=\""
        } else {
            continue;
        };
        if let Some(i) = tag.find(attr) {
            let v = &tag[i + attr.len()..];
            out.push(v[..v.find('"').unwrap()].to_string());
        }
    }
    out
}

#[tokio::test]
async fn swagger_ui_and_redoc_load_only_local_files() {
    let s = TestServer::start();
    for (page, init) in [
        ("/api/docs", "swagger-init.js"),
        ("/api/redoc", "redoc-init.js"),
    ] {
        let res = s.http.get(format!("{}{page}", s.url)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
        let h = res.headers().clone();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        // The browser itself refuses anything from another origin.
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        for directive in csp.split(';') {
            assert!(
                !directive.contains("http") && !directive.contains('*'),
                "{page}: CSP allows another origin: {directive}"
            );
        }
        let html = res.text().await.unwrap();
        assert!(
            html.contains("data-spec-url=\"/api/openapi.json\""),
            "{page}: {html}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{page}: {html}"
        );
        assert!(
            !html.contains("<script>"),
            "{page}: inline scripts are blocked by the CSP"
        );

        let files = loaded_by(&html);
        assert!(files.len() >= 2, "{page} loads {files:?}");
        assert!(
            files.iter().any(|f| f.ends_with(init)),
            "{page} loads {files:?}"
        );
        for f in &files {
            assert!(
                f.starts_with('/') && !f.starts_with("//"),
                "{page}: {f} is not local"
            );
            let res = s.http.get(format!("{}{f}", s.url)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{page}: {f}");
            let ct = res.headers()["content-type"].to_str().unwrap().to_string();
            assert!(
                ct.starts_with("text/javascript") || ct.starts_with("text/css"),
                "{f}: {ct}"
            );
            let body = res.bytes().await.unwrap();
            assert!(body.len() > 100, "{f} is empty");
            // No source map is referenced that this server does not have.
            let tail = String::from_utf8_lossy(&body[body.len().saturating_sub(400)..]).to_string();
            assert!(
                !tail.contains("sourceMappingURL="),
                "{f} points at a missing source map"
            );
            // Nothing served names a CDN (Redoc's logo was one; see
            // web/assets/vendor/README.md).
            assert!(
                !String::from_utf8_lossy(&body).contains("//cdn."),
                "{f} names a CDN"
            );
            if f.ends_with("-init.js") {
                let text = String::from_utf8_lossy(&body);
                // Our start-up scripts name no host at all, and Swagger UI's
                // online validator badge is off.
                assert!(
                    !text.contains("http://") && !text.contains("https://"),
                    "{f}"
                );
                if f.ends_with("swagger-init.js") {
                    assert!(text.contains("validatorUrl: null"), "{f}");
                }
            }
        }
    }
    // The spec URL the pages use serves the document.
    let doc = document(&s).await;
    assert!(doc["paths"]["/api/request"]["post"].is_object());
    // An unknown asset is a clear 404 of its own, not the route fallback.
    let (st, body) = probe(&s, "GET", "/api/docs/assets/{file}").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        !is_fallback(st, &body) && body.contains("docs asset"),
        "{body}"
    );
    s.stop().await;
}

/// The URLs of the requests the page itself made, from Chromium's network
/// log (read as text, one event a line: a killed browser leaves the JSON
/// unfinished). The page's requests name it as their `initiator`; the
/// browser's own housekeeping (update checks, account lookups) does not,
/// and cannot leave the machine anyway (see the resolver rule in `render`).
fn page_requests(netlog: &str, origin: &str) -> Vec<String> {
    let initiator = format!("\"initiator\":\"{origin}\"");
    let mut out = Vec::new();
    for line in netlog.lines().filter(|l| l.contains(&initiator)) {
        for (i, _) in line.match_indices("\"url\":\"") {
            let rest = &line[i + "\"url\":\"".len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

/// Loads `origin` + `page` in headless Chromium: (rendered DOM, console
/// log, URLs the page requested).
fn render(origin: &str, page: &str) -> (String, String, Vec<String>) {
    let url = format!("{origin}{page}");
    let dir = tempfile::tempdir().unwrap();
    let netlog = dir.path().join("netlog.json");
    let mut child = std::process::Command::new(crate::tools::chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-first-run",
            "--no-proxy-server",
            // No name resolves but loopback: whatever the browser tries on
            // its own, no packet leaves the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(&url)
        // Files, not pipes: a full pipe nobody reads would stall the browser.
        .stdout(std::fs::File::create(dir.path().join("dom.html")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("console.log")).unwrap())
        .spawn()
        .unwrap();
    // Bounded: a browser that hangs is killed and the test fails below.
    let mut waited = 0;
    while child.try_wait().unwrap().is_none() && waited < 1200 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    let _ = child.kill();
    child.wait().unwrap();
    let read =
        |f: &str| String::from_utf8_lossy(&std::fs::read(dir.path().join(f)).unwrap()).to_string();
    let (dom, log) = (read("dom.html"), read("console.log"));
    let text = std::fs::read_to_string(&netlog).unwrap_or_default();
    assert!(
        text.len() > 100,
        "no network log from chromium for {url}:\n{log}"
    );
    let urls = page_requests(&text, origin);
    (dom, log, urls)
}

#[tokio::test]
async fn docs_pages_render_in_chromium_without_external_requests() {
    let s = TestServer::start();
    let origin = s.url.clone();
    for (page, rendered, bundle) in [
        ("/api/docs", "opblock", "swagger-ui-bundle.js"),
        ("/api/redoc", "redoc-wrap", "redoc.standalone.js"),
    ] {
        let o = origin.clone();
        let (dom, log, urls) = tokio::task::spawn_blocking(move || render(&o, page))
            .await
            .unwrap();
        // The viewer ran and drew our operations from /api/openapi.json.
        assert!(dom.contains(rendered), "{page} did not render:\n{log}");
        assert!(
            dom.contains("/api/quote") && dom.contains("/v1/chat/completions"),
            "{page} lacks operations"
        );
        assert!(
            !log.contains("Content Security Policy"),
            "{page} tried to load something the policy forbids:\n{log}"
        );
        // The page's own requests are seen (so the filter is not empty) and
        // every one went to this server.
        for wanted in [bundle, "/api/openapi.json"] {
            assert!(
                urls.iter().any(|u| u.ends_with(wanted)),
                "{page}: {wanted} not in {urls:?}"
            );
        }
        let here = format!("{origin}/");
        let foreign: Vec<_> = urls.iter().filter(|u| !u.starts_with(&here)).collect();
        assert!(foreign.is_empty(), "{page} asked other hosts: {foreign:?}");
    }
    s.stop().await;
}
