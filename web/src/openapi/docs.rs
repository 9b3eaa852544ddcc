//! The routes of this document and its viewers (served by the parent module). One doc-only function per
//! route, never called: its attributes describe the route; the handler is
//! in `routes/`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use super::schema::ErrorBody;

#[utoipa::path(get, path = "/api/openapi.json", tag = "docs", security(()),
    responses((status = 200, description = "This document", body = serde_json::Value)))]
pub fn openapi_json() {}

#[utoipa::path(get, path = "/api/docs", tag = "docs", security(()),
    responses((status = 200, description = "Swagger UI on this document", content_type = "text/html", body = String)))]
pub fn swagger_page() {}

#[utoipa::path(get, path = "/api/redoc", tag = "docs", security(()),
    responses((status = 200, description = "ReDoc on this document", content_type = "text/html", body = String)))]
pub fn redoc_page() {}

#[utoipa::path(get, path = "/api/docs/assets/{file}", tag = "docs", security(()),
    params(("file" = String, Path, description = "A file the docs pages load, e.g. `swagger-ui-bundle.js`")),
    responses(
        (status = 200, description = "The file (script or style sheet)", content_type = "text/javascript", body = String),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
pub fn docs_asset() {}
