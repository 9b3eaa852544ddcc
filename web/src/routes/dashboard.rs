//! `GET /` and `GET /assets/{file}`: the built-in dashboard.
//!
//! Every file is compiled into the binary, so the dashboard works on a
//! machine with no network and cannot drift from the server it ships with.
//! The page is plain HTML, CSS and JavaScript (no build step) that talks to
//! the JSON API with what the person signs in with (an API key, or an
//! account's access token, refreshed by the page); the server keeps no
//! dashboard session of its own.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, get, web};

use crate::error::ApiError;

/// The page's security policy: everything from this origin, nothing inline,
/// nothing from anywhere else. Charts are SVG drawn by our own script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its name under `/assets/`, media type and bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX: &str = include_str!("../../assets/index.html");

/// The files `/assets/` serves; the index page links to each of them.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    Asset {
        name: "money.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/money.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/charts.js"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/ui.js"),
    },
    Asset {
        name: "signin.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/signin.js"),
    },
    Asset {
        name: "budget.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/budget.js"),
    },
    Asset {
        name: "teams.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/teams.js"),
    },
    Asset {
        name: "webhooks.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/webhooks.js"),
    },
    Asset {
        name: "reconcile.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/reconcile.js"),
    },
    Asset {
        name: "experiments.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/experiments.js"),
    },
    Asset {
        name: "dashboards.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/dashboards.js"),
    },
    Asset {
        name: "send.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/send.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../assets/icon.svg"),
    },
];

/// Headers every dashboard response carries.
fn secured(mut res: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    res.insert_header(("content-security-policy", CONTENT_SECURITY_POLICY))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("x-frame-options", "DENY"));
    res
}

#[get("/")]
pub async fn index() -> HttpResponse {
    secured(HttpResponse::Ok())
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        // The page is tiny and must match the assets of this very binary.
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(INDEX)
}

#[get("/assets/{file}")]
pub async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let a = ASSETS
        .iter()
        .find(|a| a.name == file.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("asset `{}`", file.as_str())))?;
    Ok(secured(HttpResponse::Ok())
        .insert_header((CONTENT_TYPE, a.content_type))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(a.body))
}
