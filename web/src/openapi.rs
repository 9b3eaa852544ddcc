//! The OpenAPI 3 document of the whole `/api` and `/v1` surface, served at
//! `GET /api/openapi.json`, with Swagger UI at `GET /api/docs` and ReDoc at
//! `GET /api/redoc`. Every file those pages load is embedded in the binary
//! and served from `/api/docs/assets/{file}`: the docs work with no internet.
//!
//! The route handlers stay unannotated (they live in `routes/`, owned by
//! their resources). Each route is described here instead, by a doc-only
//! function in [`doc`] carrying `#[utoipa::path]`, and request and response
//! bodies by doc-only types in [`schema`] that mirror what the handlers read
//! and write.
//!
//! **To document a new route** (the e2e test `openapi` fails until you do):
//! 1. add a function to [`doc`] (copy a neighbour: method, path, tag,
//!    params, request body, responses);
//! 2. list it in [`ApiDoc`]'s `paths(...)`;
//! 3. if its bodies are new, add types to [`schema`]; they are collected
//!    from the paths that use them.
//!
//! For example, a key-revoking route would take these lines in [`doc`]
//! (and `doc::revoke_key,` in `paths(...)`):
//!
//! ```text
//! #[utoipa::path(delete, path = "/api/keys/{id}", tag = "users",
//!     params(("id" = String, Path, description = "The key's id")),
//!     responses(
//!         (status = 200, description = "Revoked", body = serde_json::Value),
//!         (status = 401, description = "Missing or invalid API key", body = ErrorBody),
//!         (status = 404, description = "No such key of the caller's", body = ErrorBody),
//!     ))]
//! pub fn revoke_key() {}
//! ```
//!
//! Routes that are not API (the dashboard page and its files, `/metrics`)
//! are listed instead in `NOT_API` in `tests/e2e/openapi.rs`, with a reason.

use std::sync::LazyLock;

use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS,
};
use actix_web::{HttpResponse, get, web};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ApiError;

/// The document. `security` applies to every path that does not say
/// otherwise; public paths say `security(())`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OneFlow",
        description = "A self-hosted AI request broker: every request is quoted, held against \
            the caller's prepaid credits and budgets, routed to a provider, settled with the \
            real usage and recorded.\n\nMoney is in credits, written as decimal numbers with at \
            most 6 places (1 credit = 1,000,000 micro-credits). Send `Authorization: Bearer \
            <key>` on every call but `/health` and the docs. Errors of the native API have the \
            shape `{\"error\": {\"code\", \"message\"}}`; the OpenAI-compatible `/v1` API answers \
            in OpenAI's shape `{\"error\": {\"message\", \"type\", \"code\", \"param\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        doc::health,
        doc::status,
        doc::quote,
        doc::request,
        doc::analytics,
        doc::get_budget,
        doc::put_budget,
        doc::add_credits,
        doc::providers,
        doc::config,
        doc::history_requests,
        doc::history_request,
        doc::history_transactions,
        doc::create_user,
        doc::list_users,
        doc::create_key,
        doc::list_keys,
        doc::revoke_key,
        doc::get_routing,
        doc::analytics_series,
        doc::burn_down,
        doc::export,
        doc::put_routing,
        doc::v1_chat,
        doc::v1_completions,
        doc::v1_embeddings,
        doc::v1_images,
        doc::v1_speech,
        doc::v1_models,
        doc::openapi_json,
        doc::swagger_page,
        doc::redoc_page,
        doc::docs_asset,
    ),
    components(schemas(schema::Credits, schema::ErrorBody, schema::OpenAiErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "status", description = "Liveness and the caller's standing."),
        (name = "requests", description = "Quote and send AI requests (native API)."),
        (name = "wallet", description = "Credits and budgets."),
        (name = "history", description = "Past requests and ledger entries, newest first, paged by cursor."),
        (name = "analytics", description = "Figures from the rollups."),
        (name = "providers", description = "Configured providers, their health, and the config."),
        (name = "users", description = "User administration (admin keys only)."),
        (name = "openai", description = "OpenAI-compatible API: existing SDKs work with `base_url = <server>/v1`."),
        (name = "docs", description = "This document and its viewers."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer-key scheme that `security(("bearer" = []))` names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "An API key made by `POST /api/users` (or the admin key printed at first start)."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// The document as JSON, built once on first use.
static DOCUMENT: LazyLock<Result<String, String>> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .map_err(|e| e.to_string())
});

/// Registers the document, the two pages and their assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(openapi_json)
        .service(swagger_page)
        .service(redoc_page)
        .service(docs_asset);
}

#[get("/api/openapi.json")]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    match &*DOCUMENT {
        Ok(json) => Ok(HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(json.clone())),
        Err(e) => Err(ApiError::Internal(format!("OpenAPI document: {e}"))),
    }
}

/// What the docs pages may load: only this server. Styles may be inline
/// (both viewers set element styles), images may be `data:` URIs, and
/// ReDoc's search runs in a worker made from a `blob:` URL. No other host:
/// should a later bundle name one, the browser refuses it.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'self'";

fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP)))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(html)
}

#[get("/api/docs")]
pub async fn swagger_page() -> HttpResponse {
    page(include_str!("../assets/apidocs/swagger.html"))
}

#[get("/api/redoc")]
pub async fn redoc_page() -> HttpResponse {
    page(include_str!("../assets/apidocs/redoc.html"))
}

/// The files the two pages load: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/swagger-ui/swagger-ui.css"),
    ),
    (
        "swagger-init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/apidocs/swagger-init.js"),
    ),
    (
        "redoc.standalone.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/redoc/redoc.standalone.js"),
    ),
    (
        "redoc-init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/apidocs/redoc-init.js"),
    ),
];

#[get("/api/docs/assets/{file}")]
pub async fn docs_asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("docs asset `{file}`")))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, *content_type))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The files change only with the binary; an hour keeps a reload
        // cheap without pinning an old version for long.
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(*bytes))
}

/// Doc-only functions: one per route, never called. Their attributes are
/// the description of the route; the handlers are in `routes/`.
#[allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]
pub mod doc {
    use super::schema::*;

    #[utoipa::path(get, path = "/health", tag = "status", security(()),
        responses((status = 200, description = "The server is up", body = Health)))]
    pub fn health() {}

    #[utoipa::path(get, path = "/api/status", tag = "status",
        params(ForUser),
        responses(
            (status = 200, description = "The caller's wallet, providers up, and runtime figures", body = Status),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn status() {}

    #[utoipa::path(post, path = "/api/quote", tag = "requests",
        request_body = AiRequest,
        responses(
            (status = 200, description = "The most the request can cost, and whether the balance covers it; nothing is held", body = Quote),
            (status = 400, description = "Invalid request (unknown model, field that does not apply, out of bounds)", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 413, description = "Body too large", body = ErrorBody),
        ))]
    pub fn quote() {}

    #[utoipa::path(post, path = "/api/request", tag = "requests",
        params(("Idempotency-Key" = Option<String>, Header,
            description = "1 to 255 visible ASCII characters. A repeat with the same key and body returns the first answer and is never charged twice.")),
        request_body = AiRequest,
        responses(
            (status = 200, description = "Done and settled: the answer, the cost charged and the balance after",
                body = RequestOutcome,
                headers(
                    ("x-oneflow-route" = String, description = "Why this provider was chosen"),
                    ("idempotent-replayed" = String, description = "`true` when this is a stored answer replayed"),
                )),
            (status = 400, description = "Invalid request", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 402, description = "Not enough credits (`insufficient_credits`) or a budget would be exceeded (`budget_exceeded`)", body = ErrorBody),
            (status = 422, description = "The Idempotency-Key was used with another body", body = ErrorBody),
            (status = 429, description = "The provider is overloaded; see Retry-After", body = FailedRequest),
            (status = 502, description = "Every provider tried failed; the hold was released", body = FailedRequest),
            (status = 503, description = "Broker busy or providers unavailable; see Retry-After", body = ErrorBody),
        ))]
    pub fn request() {}

    #[utoipa::path(get, path = "/api/analytics", tag = "analytics",
        params(RangeParams),
        responses(
            (status = 200, description = "Totals and per-provider figures (count, successes, success rate, cost, tokens, latency p50/p95/p99) from the rollups over the range; all time without `from`/`to`. An admin without `user_id` gets every user's totals.", body = Analytics),
            (status = 400, description = "Bad range or bucket", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn analytics() {}

    #[utoipa::path(get, path = "/api/budget", tag = "wallet",
        params(ForUser),
        responses(
            (status = 200, description = "The budget and each window's spending", body = BudgetView),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn get_budget() {}

    #[utoipa::path(put, path = "/api/budget", tag = "wallet",
        params(ForUser),
        request_body(content = BudgetConfig, description = "The whole budget: limits left out are removed"),
        responses(
            (status = 200, description = "The budget now in force", body = BudgetView),
            (status = 400, description = "Negative limit or unknown provider", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn put_budget() {}

    #[utoipa::path(post, path = "/api/credits/add", tag = "wallet",
        request_body = AddCredits,
        responses(
            (status = 200, description = "Added and committed", body = CreditsAdded),
            (status = 400, description = "Amount not positive, too precise or out of range", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "Not an admin key", body = ErrorBody),
            (status = 404, description = "No such user", body = ErrorBody),
        ))]
    pub fn add_credits() {}

    #[utoipa::path(get, path = "/api/providers", tag = "providers",
        responses(
            (status = 200, description = "Every configured provider with its rates, limits and live health", body = ProviderList),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        ))]
    pub fn providers() {}

    #[utoipa::path(get, path = "/api/config", tag = "providers",
        responses(
            (status = 200, description = "The configuration in force (it holds no secrets)", body = serde_json::Value),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        ))]
    pub fn config() {}

    #[utoipa::path(get, path = "/api/history/requests", tag = "history",
        params(PageQuery),
        responses(
            (status = 200, description = "One page of requests", body = RequestPage),
            (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn history_requests() {}

    #[utoipa::path(get, path = "/api/history/requests/{id}", tag = "history",
        params(("id" = String, Path, description = "A request id, as `request_id` in answers")),
        responses(
            (status = 200, description = "The request, with every upstream attempt", body = RequestRecord),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 404, description = "No such request of the caller's", body = ErrorBody),
        ))]
    pub fn history_request() {}

    #[utoipa::path(get, path = "/api/history/transactions", tag = "history",
        params(PageQuery),
        responses(
            (status = 200, description = "One page of ledger entries", body = TransactionPage),
            (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn history_transactions() {}

    #[utoipa::path(post, path = "/api/users", tag = "users",
        request_body = NewUser,
        responses(
            (status = 201, description = "Created; `api_key` is shown this once", body = CreatedUser),
            (status = 400, description = "Bad name, email or balance", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "Not an admin key", body = ErrorBody),
        ))]
    pub fn create_user() {}

    #[utoipa::path(get, path = "/api/users", tag = "users",
        responses(
            (status = 200, description = "Every user", body = UserList),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "Not an admin key", body = ErrorBody),
        ))]
    pub fn list_users() {}

    #[utoipa::path(post, path = "/api/keys", tag = "users",
        request_body(content = NewKey, description = "Optional: an admin names the user; a user makes a key for themself"),
        responses(
            (status = 201, description = "Created; `api_key` is shown this once", body = CreatedKey),
            (status = 400, description = "Bad body", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
            (status = 404, description = "No such user", body = ErrorBody),
        ))]
    pub fn create_key() {}

    #[utoipa::path(get, path = "/api/keys", tag = "users",
        params(ForUser),
        responses(
            (status = 200, description = "The caller's keys (an admin without `user_id`: every key); never a secret", body = KeyList),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn list_keys() {}

    #[utoipa::path(delete, path = "/api/keys/{id}", tag = "users",
        params(("id" = String, Path, description = "The key's id, as listed")),
        responses(
            (status = 200, description = "Revoked: the key stops working at once, durably", body = RevokedKey),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 404, description = "No such key of the caller's", body = ErrorBody),
            (status = 409, description = "The last admin key cannot be revoked", body = ErrorBody),
        ))]
    pub fn revoke_key() {}

    #[utoipa::path(get, path = "/api/routing", tag = "requests",
        params(ForUser),
        responses(
            (status = 200, description = "The caller's default routing strategy and the one in effect", body = RoutingView),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn get_routing() {}

    #[utoipa::path(get, path = "/api/analytics/series", tag = "analytics",
        params(RangeParams),
        responses(
            (status = 200, description = "One point per bucket over the range (default: the last 24 hours by hour), from the rollups only", body = Series),
            (status = 400, description = "Bad range or bucket, or more than 10,000 points", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn analytics_series() {}

    #[utoipa::path(get, path = "/api/analytics/burndown", tag = "analytics",
        params(BurnDownParams),
        responses(
            (status = 200, description = "Spend rate over the recent window, and when the balance and each budget run out at that rate (null when the rate is zero)", body = BurnDown),
            (status = 400, description = "Bad window", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn burn_down() {}

    #[utoipa::path(get, path = "/api/export/{kind}", tag = "analytics",
        params(("kind" = String, Path, description = "`requests`, `transactions` or `analytics`"), ExportParams),
        responses(
            (status = 200, description = "Streamed, any size: CSV with a header row, one JSON array, or one JSON object a line", content(
                (Vec<serde_json::Value> = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
            (status = 400, description = "Unknown kind or format, bad range", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn export() {}

    #[utoipa::path(put, path = "/api/routing", tag = "requests",
        params(ForUser),
        request_body(content = RoutingPrefs, description = "The default strategy for requests that name none; null follows the global one"),
        responses(
            (status = 200, description = "Stored (committed before this answer)", body = RoutingView),
            (status = 400, description = "Unknown strategy", body = ErrorBody),
            (status = 401, description = "Missing or invalid API key", body = ErrorBody),
            (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        ))]
    pub fn put_routing() {}

    #[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
        params(RouteHeaders),
        request_body = ChatCompletionRequest,
        responses(
            (status = 200, description = "The completion; with `stream: true`, server-sent events of `chat.completion.chunk` objects ending in `data: [DONE]`",
                content(
                    (ChatCompletion = "application/json"),
                    (String = "text/event-stream"),
                ),
                headers(
                    ("x-oneflow-request-id" = String, description = "The request's id in history"),
                    ("x-oneflow-route" = String, description = "Why this provider was chosen"),
                    ("x-oneflow-cost" = String, description = "Credits charged (not on streams)"),
                    ("x-oneflow-quote" = String, description = "Credits held (streams only)"),
                )),
            (status = 400, description = "Invalid request", body = OpenAiErrorBody),
            (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
            (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
            (status = 429, description = "Provider overloaded; see Retry-After", body = OpenAiErrorBody),
            (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
            (status = 503, description = "Busy or unavailable; see Retry-After", body = OpenAiErrorBody),
        ))]
    pub fn v1_chat() {}

    #[utoipa::path(post, path = "/v1/completions", tag = "openai",
        params(RouteHeaders),
        request_body = CompletionRequest,
        responses(
            (status = 200, description = "The completion; with `stream: true`, server-sent events ending in `data: [DONE]`",
                content(
                    (Completion = "application/json"),
                    (String = "text/event-stream"),
                )),
            (status = 400, description = "Invalid request", body = OpenAiErrorBody),
            (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
            (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
            (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
        ))]
    pub fn v1_completions() {}

    #[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
        params(RouteHeaders),
        request_body = EmbeddingRequest,
        responses(
            (status = 200, description = "One vector per input", body = EmbeddingList),
            (status = 400, description = "Invalid request", body = OpenAiErrorBody),
            (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
            (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
            (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
        ))]
    pub fn v1_embeddings() {}

    #[utoipa::path(post, path = "/v1/images/generations", tag = "openai",
        params(RouteHeaders),
        request_body = ImageRequest,
        responses(
            (status = 200, description = "The generated images", body = ImageList),
            (status = 400, description = "Invalid request", body = OpenAiErrorBody),
            (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
            (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
            (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
        ))]
    pub fn v1_images() {}

    #[utoipa::path(post, path = "/v1/audio/speech", tag = "openai",
        params(RouteHeaders),
        request_body = SpeechRequest,
        responses(
            (status = 200, description = "The audio, in the provider's format (`audio/mpeg`, `audio/wav`, ...); a provider that returns no audio (the simulated one returns a clip address) answers with JSON",
                content(
                    (Vec<u8> = "application/octet-stream"),
                    (SpeechSummary = "application/json"),
                )),
            (status = 400, description = "Invalid request", body = OpenAiErrorBody),
            (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
            (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
            (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
        ))]
    pub fn v1_speech() {}

    #[utoipa::path(get, path = "/v1/models", tag = "openai",
        responses(
            (status = 200, description = "Every provider name and model name a request may use", body = ModelList),
            (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        ))]
    pub fn v1_models() {}

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
}

/// Doc-only types: the shapes the handlers read and write, as the document
/// shows them. They mirror the domain and runtime types (which stay free of
/// documentation concerns); the e2e test `openapi` sends the documented
/// request examples to the server and compares real answers' fields with
/// these, so a drift shows up there.
#[allow(
    dead_code,
    reason = "doc-only: read by #[derive(ToSchema)], never built"
)]
pub mod schema {
    use std::collections::BTreeMap;

    use serde_json::json;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::{RefOr, schema::SchemaType};
    use utoipa::{IntoParams, PartialSchema, ToSchema};

    /// An amount of credits: a decimal number with at most 6 places
    /// (micro-credits), sent as a JSON number or a string holding one.
    pub struct Credits;

    impl PartialSchema for Credits {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Number, Type::String]))
                .description(Some(
                    "Credits as a decimal number with at most 6 places (1 credit = 1,000,000 \
                     micro-credits); a string holding such a number is accepted too.",
                ))
                .examples([json!(12.5)])
                .into()
        }
    }

    impl ToSchema for Credits {}

    /// Our error shape, on every native route.
    #[derive(ToSchema)]
    #[schema(example = json!({"error": {"code": "insufficient_credits", "message": "available balance 0.5 is less than the quote 1.2"}}))]
    pub struct ErrorBody {
        pub error: ErrorDetail,
    }

    #[derive(ToSchema)]
    pub struct ErrorDetail {
        /// Stable, for programs: `unauthorized`, `forbidden`, `not_found`,
        /// `invalid_request`, `unknown_model`, `payload_too_large`,
        /// `insufficient_credits`, `budget_exceeded`,
        /// `idempotency_key_reused`, `overloaded`, `no_provider_available`,
        /// `conflict`, `unavailable`, `provider_error`,
        /// `provider_overloaded`, `provider_unavailable`,
        /// `provider_timeout`, `internal`.
        pub code: String,
        /// For people.
        pub message: String,
        /// Set when a request was recorded before it failed.
        pub request_id: Option<String>,
    }

    /// A native request that reached providers and failed: our error shape
    /// plus the recorded outcome (nothing was charged).
    #[derive(ToSchema)]
    pub struct FailedRequest {
        pub error: ErrorDetail,
        pub request: RequestOutcome,
    }

    /// OpenAI's error shape, on every `/v1` route.
    #[derive(ToSchema)]
    #[schema(example = json!({"error": {"message": "missing or invalid API key; send `Authorization: Bearer <key>`", "type": "authentication_error", "code": "unauthorized", "param": null}}))]
    pub struct OpenAiErrorBody {
        pub error: OpenAiErrorDetail,
    }

    #[derive(ToSchema)]
    pub struct OpenAiErrorDetail {
        pub message: String,
        /// `authentication_error`, `insufficient_quota`,
        /// `permission_error`, `not_found_error`, `rate_limit_error`,
        /// `invalid_request_error` or `api_error`.
        #[schema(rename = "type")]
        pub kind: String,
        /// Our stable code (as in [`ErrorDetail::code`]).
        pub code: String,
        /// Always null.
        pub param: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Health {
        /// `ok`.
        pub status: String,
    }

    /// `?user_id=`: an admin acting on another user's data.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct ForUser {
        /// Admins only: whose data (default: the caller's).
        pub user_id: Option<String>,
    }

    /// Paging of newest-first listings.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct PageQuery {
        /// 1 to 1000; default 50.
        pub limit: Option<usize>,
        /// `next_cursor` of the previous page.
        pub cursor: Option<String>,
        /// Admins only: whose data (default: the caller's).
        pub user_id: Option<String>,
    }

    /// Routing wishes as headers (the same as the body's `oneflow` field,
    /// which they override).
    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub struct RouteHeaders {
        /// `cost`, `latency`, `quality` or `balanced`.
        #[param(rename = "x-oneflow-strategy")]
        pub strategy: Option<String>,
        /// `US`, `EU` or `RU`.
        #[param(rename = "x-oneflow-region")]
        pub region: Option<String>,
        /// Comma-separated provider names allowed to serve.
        #[param(rename = "x-oneflow-providers")]
        pub providers: Option<String>,
        /// Only providers whose quote is at most this many credits.
        #[param(rename = "x-oneflow-max-price")]
        pub max_price: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum Modality {
        Text,
        Image,
        Audio,
        Video,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "UPPERCASE")]
    pub enum Region {
        Us,
        Eu,
        Ru,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum Strategy {
        Cost,
        Latency,
        Quality,
        Balanced,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum RequestStatus {
        Succeeded,
        Failed,
        Interrupted,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum Role {
        Admin,
        User,
    }

    /// A native AI request. Fields that do not apply to the model's
    /// modality are refused, not ignored.
    #[derive(ToSchema)]
    #[schema(example = json!({"model": "gpt", "prompt": "Say hello in French", "max_tokens": 50}))]
    pub struct AiRequest {
        /// A provider name (`gpt`, `image`, `audio`, `video` by default) or a
        /// model a provider lists (see `GET /v1/models`).
        pub model: String,
        pub prompt: String,
        /// Text: the most output tokens (the quote assumes all are used).
        pub max_tokens: Option<u32>,
        /// Image: one of the provider's sizes, e.g. `1024x1024`.
        pub size: Option<String>,
        /// Image: how many.
        pub n: Option<u32>,
        /// Audio and video: length in seconds.
        pub seconds: Option<u32>,
        /// Only this provider may serve the request.
        pub provider: Option<String>,
        /// Only providers in this region.
        pub region: Option<Region>,
        /// Only providers whose quote is at most this.
        pub max_price: Option<Credits>,
        /// How to rank providers (default: the configured one).
        pub strategy: Option<Strategy>,
    }

    /// Consumption of one request (for a quote: the most it may use).
    #[derive(ToSchema)]
    pub struct Usage {
        pub input_tokens: u64,
        pub output_tokens: u64,
        pub images: u64,
        pub seconds: u64,
    }

    #[derive(ToSchema)]
    pub struct Quote {
        pub model: String,
        /// The provider routing would try first.
        pub provider: String,
        pub modality: Modality,
        /// What would be held: the most any candidate provider can charge.
        pub quote: Credits,
        pub max_usage: Usage,
        pub available: Credits,
        /// Whether the balance covers the quote now (budgets are checked
        /// when the request is made).
        pub affordable: bool,
        /// The routing explanation.
        pub route: String,
    }

    /// The answer to a native request (the same on an idempotent replay).
    #[derive(ToSchema)]
    pub struct RequestOutcome {
        pub request_id: String,
        pub status: RequestStatus,
        /// The output (text, or a summary of images, audio or video).
        pub response: Option<String>,
        pub model: String,
        pub provider: String,
        pub usage: Usage,
        /// What was held.
        pub quote: Credits,
        /// What was charged (0 on failure).
        pub cost: Credits,
        /// Balance after the charge.
        pub balance: Credits,
        pub available: Credits,
        /// Why this provider.
        pub route: String,
        /// On failure: `provider_error`, `provider_overloaded`,
        /// `provider_unavailable`, `provider_timeout`.
        pub error_code: Option<String>,
        pub error: Option<String>,
        pub retry_after_secs: Option<u64>,
        pub latency_ms: u64,
        /// Milliseconds since the Unix epoch.
        pub created_at: u64,
    }

    #[derive(ToSchema)]
    pub struct Attempt {
        pub provider: String,
        pub ok: bool,
        pub error_code: Option<String>,
        pub error: Option<String>,
        pub latency_ms: u64,
    }

    /// One request as history shows it.
    #[derive(ToSchema)]
    pub struct RequestRecord {
        pub id: String,
        pub user_id: String,
        pub model: String,
        pub modality: Modality,
        pub provider: String,
        pub status: RequestStatus,
        /// The first 200 characters of the prompt.
        pub prompt_preview: String,
        pub response: Option<String>,
        pub usage: Usage,
        pub quote: Credits,
        pub cost: Credits,
        /// Cost beyond the hold that was not charged.
        pub shortfall: Credits,
        pub error: Option<String>,
        pub route: String,
        /// Milliseconds since the Unix epoch.
        pub created_at: u64,
        pub latency_ms: u64,
        /// Every upstream try, in order (absent when there was none).
        pub attempts: Option<Vec<Attempt>>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    pub enum EntryKind {
        TopUp,
        Hold,
        Charge,
        Release,
        Refund,
        Adjustment,
    }

    /// One append-only ledger line.
    #[derive(ToSchema)]
    pub struct LedgerEntry {
        pub user_id: String,
        /// Orders a user's entries.
        pub seq: u64,
        pub kind: EntryKind,
        /// Positive for every kind but `adjustment`, which is signed.
        pub amount: Credits,
        pub balance_after: Credits,
        pub available_after: Credits,
        pub hold_id: Option<u64>,
        pub request_id: Option<String>,
        pub note: Option<String>,
        /// Milliseconds since the Unix epoch.
        pub at: u64,
    }

    #[derive(ToSchema)]
    pub struct RequestPage {
        pub items: Vec<RequestRecord>,
        /// Pass as `cursor` for the next page; absent on the last one.
        pub next_cursor: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct TransactionPage {
        pub items: Vec<LedgerEntry>,
        /// Pass as `cursor` for the next page; absent on the last one.
        pub next_cursor: Option<String>,
    }

    /// Caps for the calendar windows (UTC); absent means no cap.
    #[derive(ToSchema)]
    pub struct BudgetLimits {
        pub daily: Option<Credits>,
        pub weekly: Option<Credits>,
        pub monthly: Option<Credits>,
    }

    /// A user's budget: overall caps and caps per provider.
    #[derive(ToSchema)]
    #[schema(example = json!({"daily": 5, "monthly": 100, "per_provider": {"image": {"daily": 2}}}))]
    pub struct BudgetConfig {
        pub daily: Option<Credits>,
        pub weekly: Option<Credits>,
        pub monthly: Option<Credits>,
        /// By provider name.
        pub per_provider: Option<BTreeMap<String, BudgetLimits>>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum Window {
        Daily,
        Weekly,
        Monthly,
    }

    /// One budget window now; open holds count as spent.
    #[derive(ToSchema)]
    pub struct WindowView {
        pub window: Window,
        pub limit: Option<Credits>,
        pub spent: Credits,
        pub held: Credits,
        /// `limit - spent - held`, when there is a limit.
        pub remaining: Option<Credits>,
        /// Milliseconds since the Unix epoch.
        pub resets_at: u64,
    }

    #[derive(ToSchema)]
    pub struct BudgetView {
        pub user_id: String,
        pub budget: BudgetConfig,
        pub windows: Vec<WindowView>,
        pub available: Credits,
    }

    #[derive(ToSchema)]
    pub struct Status {
        pub user_id: String,
        pub role: Role,
        pub balance: Credits,
        /// Balance minus open holds.
        pub available: Credits,
        pub held: Credits,
        pub budgets: Vec<WindowView>,
        pub providers_up: Vec<String>,
        pub providers_total: u64,
        pub version: String,
        pub uptime_secs: u64,
        pub wallets_alive: u64,
        pub writes_queued: u64,
        /// Group-commit figures since start.
        #[schema(value_type = Object)]
        pub persistence: serde_json::Value,
    }

    /// Top-up of a user's wallet (admin).
    #[derive(ToSchema)]
    #[schema(example = json!({"user_id": "usr_0123", "amount": 25, "note": "invoice 7"}))]
    pub struct AddCredits {
        pub user_id: String,
        /// Greater than zero.
        pub amount: Credits,
        pub note: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct CreditsAdded {
        pub user_id: String,
        pub added: Credits,
        pub balance: Credits,
        pub available: Credits,
        pub transaction: LedgerEntry,
    }

    #[derive(ToSchema)]
    pub struct ProviderView {
        pub name: String,
        pub modality: Modality,
        pub models: Vec<String>,
        pub region: Region,
        pub quality: u32,
        /// Prices by line (per request, per 1k tokens, per image, ...).
        #[schema(value_type = Object)]
        pub rates: serde_json::Value,
        pub up: bool,
        /// Smoothed latency and success rate.
        #[schema(value_type = Object)]
        pub health: serde_json::Value,
        /// `closed`, `open` or `half_open`.
        pub circuit: String,
        #[schema(value_type = Object)]
        pub limits: serde_json::Value,
        pub queued: u64,
        pub in_flight: u64,
        pub calls: u64,
        pub failures: u64,
        pub rejected: u64,
    }

    #[derive(ToSchema)]
    pub struct ProviderList {
        pub providers: Vec<ProviderView>,
    }

    #[derive(ToSchema)]
    pub struct Analytics {
        /// Absent for an admin's all-users view.
        pub user_id: Option<String>,
        /// The range covered, widened to whole buckets; absent for all time.
        pub from: Option<u64>,
        pub to: Option<u64>,
        pub total_requests: u64,
        pub total_successes: u64,
        pub total_cost: Credits,
        pub success_rate: f64,
        pub totals: Figures,
        /// Figures by provider name.
        #[schema(value_type = Object)]
        pub providers: serde_json::Value,
        pub recent_requests: Vec<RequestRecord>,
        pub recent_transactions: Vec<LedgerEntry>,
    }

    #[derive(ToSchema)]
    pub struct Figures {
        pub requests: u64,
        pub successes: u64,
        pub failures: u64,
        pub success_rate: f64,
        pub cost: Credits,
        pub input_tokens: u64,
        pub output_tokens: u64,
        pub mean_latency_ms: f64,
        /// Estimated from fixed log-spaced histogram buckets; null with no
        /// requests.
        pub latency_p50_ms: Option<u64>,
        pub latency_p95_ms: Option<u64>,
        pub latency_p99_ms: Option<u64>,
    }

    #[derive(ToSchema)]
    pub struct Point {
        /// The bucket's start, milliseconds since the Unix epoch.
        pub start: u64,
        #[serde(flatten)]
        pub figures: Figures,
    }

    #[derive(ToSchema)]
    pub struct Series {
        pub user_id: Option<String>,
        pub provider: Option<String>,
        /// `minute`, `hour` or `day`.
        pub bucket: String,
        pub from: u64,
        pub to: u64,
        pub points: Vec<Point>,
    }

    #[derive(ToSchema)]
    pub struct Projection {
        /// `daily`, `weekly` or `monthly`.
        pub window: String,
        /// Set for a per-provider budget.
        pub provider: Option<String>,
        pub limit: Credits,
        pub spent: Credits,
        pub remaining: Credits,
        pub resets_at: u64,
        pub rate_per_hour: Credits,
        /// Null when the rate is zero.
        pub runs_out_at: Option<u64>,
        pub runs_out_before_reset: bool,
    }

    #[derive(ToSchema)]
    pub struct BurnDown {
        pub user_id: String,
        pub now: u64,
        pub window_start: u64,
        pub window_end: u64,
        pub window_spent: Credits,
        pub rate_per_hour: Credits,
        pub balance: Credits,
        pub available: Credits,
        /// When `available` is used up at the current rate; null if zero.
        pub balance_runs_out_at: Option<u64>,
        pub budgets: Vec<Projection>,
    }

    /// A time range: `from` and `to` as milliseconds since the epoch or
    /// RFC 3339, widened to whole buckets.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct RangeParams {
        /// Admins only: one user's figures.
        pub user_id: Option<String>,
        pub from: Option<String>,
        pub to: Option<String>,
        /// `minute`, `hour` or `day`.
        pub bucket: Option<String>,
        /// Series only: one provider.
        pub provider: Option<String>,
    }

    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct BurnDownParams {
        /// Admins only.
        pub user_id: Option<String>,
        /// The recent window the spend rate is measured over (default 24).
        pub window_hours: Option<u32>,
    }

    #[derive(IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct ExportParams {
        /// `csv` (default), `json` or `ndjson`.
        pub format: Option<String>,
        /// Admins only; without it an admin exports every user's rows.
        pub user_id: Option<String>,
        pub from: Option<String>,
        pub to: Option<String>,
        /// Width of analytics rows (default `hour`).
        pub bucket: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"name": "Ada", "email": "ada@example.com", "initial_balance": 10}))]
    pub struct NewUser {
        /// 1 to 200 characters.
        pub name: String,
        pub email: String,
        /// Default 0.
        pub initial_balance: Option<Credits>,
    }

    #[derive(ToSchema)]
    pub struct CreatedUser {
        pub id: String,
        pub name: String,
        pub email: String,
        pub role: Role,
        /// Shown only here; store it.
        pub api_key: String,
        pub balance: Credits,
        pub created_at: u64,
    }

    #[derive(ToSchema)]
    pub struct User {
        pub id: String,
        pub name: String,
        pub email: String,
        pub role: Role,
        pub created_at: u64,
        /// The user's default routing strategy, when set.
        pub strategy: Option<Strategy>,
    }

    #[derive(ToSchema)]
    pub struct UserList {
        pub users: Vec<User>,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"user_id": "usr_..."}))]
    pub struct NewKey {
        /// Admins only: whose key to make. Default: the caller.
        pub user_id: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct KeyView {
        /// What `DELETE /api/keys/{id}` takes.
        pub id: String,
        pub user_id: String,
        pub role: Role,
        /// The first characters of the secret, to tell keys apart.
        pub prefix: String,
        /// Milliseconds since the Unix epoch.
        pub created_at: u64,
    }

    #[derive(ToSchema)]
    pub struct CreatedKey {
        pub id: String,
        pub user_id: String,
        pub role: Role,
        pub prefix: String,
        pub created_at: u64,
        /// The secret: shown this once, stored only as a hash.
        pub api_key: String,
    }

    #[derive(ToSchema)]
    pub struct KeyList {
        pub keys: Vec<KeyView>,
    }

    #[derive(ToSchema)]
    pub struct RevokedKey {
        pub revoked: bool,
        pub key: KeyView,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"strategy": "quality"}))]
    pub struct RoutingPrefs {
        /// null: follow the global `[routing] strategy`.
        pub strategy: Option<Strategy>,
    }

    #[derive(ToSchema)]
    pub struct RoutingView {
        pub user_id: String,
        /// The user's own default, if set.
        pub strategy: Option<Strategy>,
        /// The global default.
        pub global: Strategy,
        /// What a request naming no strategy is routed by.
        pub effective: Strategy,
    }

    /// Routing wishes in a `/v1` body (`oneflow` field).
    #[derive(ToSchema)]
    pub struct RouteWish {
        pub strategy: Option<Strategy>,
        pub region: Option<Region>,
        /// Provider names allowed to serve.
        pub providers: Option<Vec<String>>,
        pub max_price: Option<Credits>,
    }

    #[derive(ToSchema)]
    pub struct ChatMessage {
        /// `system`, `user` or `assistant`.
        pub role: String,
        /// A string, or an array of parts of which `text` parts are read.
        pub content: serde_json::Value,
    }

    #[derive(ToSchema)]
    pub struct StreamOptions {
        pub include_usage: Option<bool>,
    }

    /// OpenAI's chat request. `tools`, `functions` and `logprobs` are
    /// refused; `temperature`, `top_p`, `stop`, `seed`, `response_format`
    /// and the penalties pass through to the provider.
    #[derive(ToSchema)]
    #[schema(example = json!({"model": "gpt", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20}))]
    pub struct ChatCompletionRequest {
        pub model: String,
        pub messages: Vec<ChatMessage>,
        pub max_tokens: Option<u32>,
        pub max_completion_tokens: Option<u32>,
        pub stream: Option<bool>,
        pub stream_options: Option<StreamOptions>,
        /// Only 1.
        pub n: Option<u32>,
        pub temperature: Option<f64>,
        pub top_p: Option<f64>,
        pub oneflow: Option<RouteWish>,
    }

    #[derive(ToSchema)]
    pub struct AssistantMessage {
        pub role: String,
        pub content: String,
    }

    #[derive(ToSchema)]
    pub struct ChatChoice {
        pub index: u32,
        pub message: AssistantMessage,
        pub finish_reason: String,
        pub logprobs: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct TokenUsage {
        pub prompt_tokens: u64,
        pub completion_tokens: u64,
        pub total_tokens: u64,
    }

    #[derive(ToSchema)]
    pub struct ChatCompletion {
        /// `chatcmpl-<request id>`.
        pub id: String,
        /// `chat.completion`.
        pub object: String,
        pub created: u64,
        pub model: String,
        pub choices: Vec<ChatChoice>,
        pub usage: TokenUsage,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"model": "gpt", "prompt": "Once upon a time", "max_tokens": 20}))]
    pub struct CompletionRequest {
        pub model: String,
        /// A string, or an array of one string.
        pub prompt: serde_json::Value,
        pub max_tokens: Option<u32>,
        pub stream: Option<bool>,
        pub stream_options: Option<StreamOptions>,
        /// Only 1.
        pub n: Option<u32>,
        pub oneflow: Option<RouteWish>,
    }

    #[derive(ToSchema)]
    pub struct CompletionChoice {
        pub index: u32,
        pub text: String,
        pub finish_reason: String,
        pub logprobs: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Completion {
        /// `cmpl-<request id>`.
        pub id: String,
        /// `text_completion`.
        pub object: String,
        pub created: u64,
        pub model: String,
        pub choices: Vec<CompletionChoice>,
        pub usage: TokenUsage,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"model": "gpt", "input": ["first text", "second text"]}))]
    pub struct EmbeddingRequest {
        pub model: String,
        /// A string or an array of 1 to 2048 strings.
        pub input: serde_json::Value,
        pub encoding_format: Option<String>,
        pub dimensions: Option<u32>,
        pub oneflow: Option<RouteWish>,
    }

    #[derive(ToSchema)]
    pub struct Embedding {
        /// `embedding`.
        pub object: String,
        pub index: u32,
        pub embedding: Vec<f64>,
    }

    #[derive(ToSchema)]
    pub struct EmbeddingUsage {
        pub prompt_tokens: u64,
        pub total_tokens: u64,
    }

    #[derive(ToSchema)]
    pub struct EmbeddingList {
        /// `list`.
        pub object: String,
        pub data: Vec<Embedding>,
        pub model: String,
        pub usage: EmbeddingUsage,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"model": "image", "prompt": "A lighthouse at dusk", "n": 1, "size": "512x512"}))]
    pub struct ImageRequest {
        pub model: String,
        pub prompt: String,
        pub n: Option<u32>,
        pub size: Option<String>,
        pub response_format: Option<String>,
        pub oneflow: Option<RouteWish>,
    }

    #[derive(ToSchema)]
    pub struct ImageData {
        pub url: Option<String>,
        pub b64_json: Option<String>,
        pub revised_prompt: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct ImageList {
        pub created: u64,
        pub data: Vec<ImageData>,
    }

    #[derive(ToSchema)]
    #[schema(example = json!({"model": "audio", "input": "Hello there", "voice": "alloy"}))]
    pub struct SpeechRequest {
        pub model: String,
        /// 1 to 4096 characters.
        pub input: String,
        /// Default `alloy`.
        pub voice: Option<String>,
        pub response_format: Option<String>,
        pub speed: Option<f64>,
        pub oneflow: Option<RouteWish>,
    }

    /// `/v1/audio/speech` when the provider returned no audio bytes.
    #[derive(ToSchema)]
    pub struct SpeechSummary {
        /// What the provider returned instead, e.g. a clip's address.
        pub output: String,
    }

    #[derive(ToSchema)]
    pub struct Model {
        pub id: String,
        /// `model`.
        pub object: String,
        pub created: u64,
        /// The provider serving it.
        pub owned_by: String,
    }

    #[derive(ToSchema)]
    pub struct ModelList {
        /// `list`.
        pub object: String,
        pub data: Vec<Model>,
    }
}
