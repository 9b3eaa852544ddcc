//! The built-in dashboard over HTTP: `/` serves the page with a strict
//! Content-Security-Policy, every file the page names is served from the
//! binary, and no file points anywhere but this server.

use reqwest::StatusCode;

use oneflow_web::routes::dashboard::{ASSETS, CONTENT_SECURITY_POLICY};

use crate::support::TestServer;

/// XML namespace names are identifiers that look like URLs; no browser ever
/// fetches them. They are the only absolute URLs an asset may contain.
const NAMESPACES: &[&str] = &["http://www.w3.org/2000/svg"];

/// The values of every `attr="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Every `http://` or `https://` URL in `text` that is not a namespace name.
fn absolute_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for scheme in ["http://", "https://"] {
        for (i, _) in text.match_indices(scheme) {
            let url: String = text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '`' | ')' | '<'))
                .collect();
            if !NAMESPACES.contains(&url.as_str()) {
                out.push(url);
            }
        }
    }
    out
}

async fn fetch(s: &TestServer, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap())
}

#[tokio::test]
async fn page_and_assets_are_served_from_the_binary_under_a_strict_policy() {
    let s = TestServer::start();
    let (status, headers, page) = fetch(&s, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert_eq!(csp, CONTENT_SECURITY_POLICY);
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert!(!csp.contains("http:") && !csp.contains("https:") && !csp.contains('*'));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        page.contains("id=\"signin\""),
        "the sign-in form is on the page"
    );

    // Nothing inline that the policy would block: scripts come by `src`, and
    // no element carries a `style` attribute.
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script src=\"/assets/").count()
    );
    assert!(!page.contains(" style=\""));

    // Every file the page refers to is one of ours and is served.
    let mut referenced: Vec<&str> = attribute_values(&page, "src");
    referenced.extend(attribute_values(&page, "href"));
    assert!(referenced.len() >= 5, "{referenced:?}");
    for r in &referenced {
        let name = r
            .strip_prefix("/assets/")
            .unwrap_or_else(|| panic!("{r} is not under /assets/"));
        let asset = ASSETS
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("{r} is not an embedded asset"));
        let (status, headers, body) = fetch(&s, r).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(
            headers["content-type"].to_str().unwrap(),
            asset.content_type
        );
        assert_eq!(body.as_bytes(), asset.body, "{r} is served as embedded");
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
    }
    // ...and every embedded file is used by the page.
    for a in ASSETS {
        assert!(
            referenced.contains(&format!("/assets/{}", a.name).as_str()),
            "{} is embedded but unused",
            a.name
        );
    }

    // No file names another host: no absolute URLs, no CSS imports or
    // protocol-relative links.
    let mut texts = vec![("index.html".to_string(), page.clone())];
    for a in ASSETS {
        texts.push((
            a.name.to_string(),
            String::from_utf8(a.body.to_vec()).unwrap(),
        ));
    }
    for (name, text) in &texts {
        assert_eq!(absolute_urls(text), Vec::<String>::new(), "{name}");
        assert!(!text.contains("@import"), "{name}");
        assert!(!text.contains("\"//") && !text.contains("url(//"), "{name}");
    }
}

#[tokio::test]
async fn unknown_assets_are_a_json_404() {
    let s = TestServer::start();
    for path in [
        "/assets/nope.js",
        "/assets/..%2Fsrc%2Flib.rs",
        "/assets/app.js.map",
        "/assets/",
    ] {
        let (status, _, body) = fetch(&s, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_found", "{path}: {body}");
    }
}

#[test]
fn absolute_urls_are_found_and_namespaces_allowed() {
    assert_eq!(
        absolute_urls("a <svg xmlns=\"http://www.w3.org/2000/svg\"> fetch('https://x.example/y')"),
        vec!["https://x.example/y".to_string()]
    );
    assert_eq!(
        attribute_values("<a href=\"/x\"><img src=\"/y\">", "src"),
        vec!["/y"]
    );
}
