//! Saved dashboards in a real browser (`chrome.rs` starts it): the page
//! lists a dashboard saved through the API, opens it with its panel drawn
//! from the same figures the API gives, exports the panel as a real PNG
//! (checked by its signature and header) and as CSV whose rows are the
//! API's, and makes and deletes a dashboard through its form.

use fantoccini::Client;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::chrome::{click, js, screenshot, type_into, wait_js, with_browser};
use crate::saved_dashboards::{chat, panel_equals_analytics, two_upstreams};
use crate::support::TestServer;

async fn sign_in(c: &Client, s: &TestServer, key: &str) {
    c.goto(&format!("{}/", s.url)).await.unwrap();
    type_into(c, "#key", key).await;
    click(c, "#signin-btn").await;
    wait_js(c, "!document.getElementById('app').hidden", "the app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_shows_a_saved_dashboard_and_exports_its_panel_as_png_and_csv() {
    let (_a, _b, s) = two_upstreams();
    let (_, key) = s.user("bo", "100").await;
    for i in 0..3 {
        chat(&s, &key, "mock-chat", &format!("question {i}")).await;
    }
    chat(&s, &key, "mock-mini", "another question").await;
    let body = json!({"title": "Traffic", "panels": [
        {"title": "Requests by model", "metric": "requests", "group_by": "model", "window": "24h", "chart": "line"},
    ]});
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/dashboards/traffic",
            Some(&body),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let data = panel_equals_analytics(&s, &key, "traffic", 0, None).await;
    let csv_api = s
        .http
        .get(format!(
            "{}/api/dashboards/traffic/panels/0?format=csv",
            s.url
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    with_browser(|c| async move {
        sign_in(&c, &s, &key).await;
        wait_js(
            &c,
            "document.querySelector('#dash-list option[value=\"traffic\"]')",
            "the saved dashboard in the list",
        )
        .await;
        js(&c, "document.getElementById('dash-list').value = 'traffic';").await;
        click(&c, "#dash-open").await;
        let fig = "document.querySelector('figure.dash-panel[data-panel-index=\"0\"]')";
        wait_js(&c, &format!("{fig} && {fig}.querySelector('svg[data-group]')"), "the panel's chart").await;
        assert_eq!(
            js(&c, "return document.getElementById('dash-open-title').textContent;").await,
            "Traffic"
        );
        // One chart per group, each over the figures the API gave.
        let drawn = js(
            &c,
            &format!(
                "return [...{fig}.querySelectorAll('svg[data-group]')].map(s => [s.dataset.group, Number(s.dataset.total)]);"
            ),
        )
        .await;
        let want: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let sum: u64 = g["points"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["value"].as_u64().unwrap())
                    .sum();
                json!([g["group"], sum])
            })
            .collect();
        assert_eq!(drawn, json!(want));
        assert_eq!(want, vec![json!(["mock-chat", 3]), json!(["mock-mini", 1])]);
        screenshot(&c, "dashboards").await;

        // PNG: a real one (signature, IHDR, the canvas's width).
        click(&c, "figure.dash-panel[data-panel-index=\"0\"] .dash-png-btn").await;
        let png = wait_js(
            &c,
            &format!(
                "(() => {{ const a = {fig}.querySelector('a.dash-png'); \
                 if (!a.href.startsWith('data:image/png;base64,')) return null; \
                 const b = atob(a.href.slice(22)); \
                 return [...b.slice(0, 24)].map(ch => ch.charCodeAt(0)).concat([b.length]); }})()"
            ),
            "the PNG export",
        )
        .await;
        let bytes: Vec<u64> = png
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(&bytes[..8], &[0x89, b'P' as u64, b'N' as u64, b'G' as u64, 13, 10, 26, 10]);
        assert_eq!(&bytes[12..16], &[b'I' as u64, b'H' as u64, b'D' as u64, b'R' as u64]);
        let width = bytes[16..20].iter().fold(0, |a, b| a * 256 + b);
        assert_eq!(width, 960);
        assert!(bytes[24] > 1000, "a drawn image, not an empty one");

        // CSV: the server's rows, as the API gives them.
        click(&c, "figure.dash-panel[data-panel-index=\"0\"] .dash-csv-btn").await;
        let csv = wait_js(
            &c,
            &format!(
                "(() => {{ const a = {fig}.querySelector('a.dash-csv'); \
                 const p = 'data:text/csv;charset=utf-8,'; \
                 return a.href.startsWith(p) ? decodeURIComponent(a.href.slice(p.length)) : null; }})()"
            ),
            "the CSV export",
        )
        .await;
        assert_eq!(csv.as_str().unwrap(), csv_api);
        assert!(csv_api.lines().count() > 2);

        // Made through the form, then deleted through the page.
        click(&c, "#dash-new").await;
        type_into(&c, "#dash-name", "made-here").await;
        type_into(&c, "#dash-title", "Made here").await;
        click(&c, "#dash-save").await;
        wait_js(
            &c,
            "document.getElementById('dash-open-title') && document.getElementById('dash-open-title').dataset.name === 'made-here'",
            "the new dashboard opened",
        )
        .await;
        let (st, made) = s.get(&key, "/api/dashboards/made-here").await;
        assert_eq!(st, StatusCode::OK, "{made}");
        assert_eq!(made["title"], "Made here");
        assert_eq!(
            made["panels"],
            json!([{"metric": "requests", "group_by": "provider", "window": "24h", "chart": "line"}])
        );
        js(&c, "window.confirm = () => true; document.getElementById('dash-list').value = 'made-here';").await;
        click(&c, "#dash-delete").await;
        wait_js(
            &c,
            "!document.querySelector('#dash-list option[value=\"made-here\"]')",
            "the deleted dashboard gone from the list",
        )
        .await;
        let (st, _) = s.get(&key, "/api/dashboards/made-here").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    })
    .await;
}
