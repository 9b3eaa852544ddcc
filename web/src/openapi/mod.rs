//! The OpenAPI 3 document of the whole `/api` and `/v1` surface, served at
//! `GET /api/openapi.json`, with Swagger UI at `GET /api/docs` and ReDoc at
//! `GET /api/redoc`. Every file those pages load is embedded in the binary
//! and served from `/api/docs/assets/{file}`: the docs work with no internet.
//!
//! The route handlers stay unannotated (they live in `routes/`, owned by
//! their resources). Each route is described here instead, by a doc-only
//! function carrying `#[utoipa::path]`, in the file of its area:
//! [`requests`] (native AI requests), [`users`] (users, keys, credits,
//! budget), [`signin`] (accounts and sign-in), [`analytics`] (history, analytics, export), [`providers`]
//! (health, status, providers, config, routing), [`v1`] (the
//! OpenAI-compatible API), [`anthropic`] (the Anthropic-compatible API)
//! and [`docs`] (this document and its pages).
//!
//! Bodies and query parameters are described by the types the server really
//! reads and writes with serde: `#[derive(utoipa::ToSchema)]` (bodies) or
//! `#[derive(utoipa::IntoParams)]` (queries) on the type itself, in the
//! domain crate (`AiRequest`, `BudgetConfig`, `RequestRecord`,
//! `LedgerEntry`, ...) or next to its handler in `routes/`. utoipa honours
//! their serde attributes (`rename`, `default`, `skip_serializing_if`,
//! `flatten`, `deny_unknown_fields`), so the schema says what serde does;
//! what serde cannot say (lengths, ranges) goes in `#[schema(...)]` or
//! `#[param(...)]` on the field, and the doc comments are the descriptions,
//! so they are written for API users. `Credits` implements its schema by
//! hand (a decimal number or string). Only shapes with no Rust type of their
//! own are written by hand, in [`schema`] and [`v1_schema`], which say why.
//!
//! **To document a new route** (the e2e test `openapi` fails until you do):
//! 1. add a function to its area's file (copy a neighbour: method, path,
//!    tag, params, request body, responses);
//! 2. list it in [`ApiDoc`]'s `paths(...)`;
//! 3. derive `ToSchema` (and a `#[schema(example = json!(...))]`: the test
//!    sends it) on the body type the handler reads, and `ToSchema` on the
//!    type it answers with; write a type in [`schema`] only if the answer
//!    has none (a `json!` wrapper). Schemas are collected from the paths
//!    that use them.
//!
//! For example, a key-revoking route would take these lines in [`users`]
//! (and `users::revoke_key,` in `paths(...)`):
//!
//! ```text
//! #[utoipa::path(delete, path = "/api/keys/{id}", tag = "users",
//!     params(("id" = String, Path, description = "The key's id")),
//!     responses(
//!         (status = 200, description = "Revoked", body = RevokedKey),
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

pub mod analytics;
pub mod anthropic;
pub mod dashboards;
pub mod docs;
mod document;
pub mod experiments;
pub mod permissions;
use permissions::Permissions;
pub mod providers;
pub mod reconcile;
pub mod reports;
pub mod requests;
pub mod schema;
pub mod signin;
pub mod teams;
pub mod users;
pub mod v1;
pub mod v1_schema;
pub mod webhooks;

pub use document::document;

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
        providers::health,
        providers::status,
        requests::quote,
        requests::request,
        requests::start_job,
        requests::job,
        requests::job_content,
        analytics::analytics,
        users::get_budget,
        users::put_budget,
        users::add_credits,
        providers::providers,
        providers::config,
        providers::backup,
        analytics::history_requests,
        analytics::history_request,
        analytics::history_transactions,
        users::create_user,
        users::list_users,
        users::create_key,
        users::list_keys,
        users::revoke_key,
        signin::register,
        signin::login,
        signin::refresh,
        signin::logout,
        signin::invite,
        providers::get_routing,
        analytics::analytics_series,
        analytics::burn_down,
        analytics::export,
        analytics::export_analytics,
        providers::put_routing,
        reports::send_now,
        v1::v1_chat,
        v1::v1_completions,
        v1::v1_embeddings,
        v1::v1_images,
        v1::v1_speech,
        v1::v1_models,
        v1::v1_responses,
        v1::v1_transcriptions,
        v1::v1_translations,
        v1::v1_response,
        anthropic::messages,
        anthropic::count_tokens,
        docs::openapi_json,
        docs::swagger_page,
        docs::redoc_page,
        docs::docs_asset,
        teams::create_team,
        teams::list_teams,
        teams::get_team,
        teams::set_team_member,
        teams::remove_team_member,
        teams::create_team_key,
        teams::invite_to_team,
        teams::top_up_team,
        teams::team_wallet,
        teams::set_team_budget,
        teams::team_requests,
        webhooks::create_webhook,
        webhooks::list_webhooks,
        webhooks::get_webhook,
        webhooks::delete_webhook,
        webhooks::rotate_webhook_secret,
        webhooks::webhook_deliveries,
        reconcile::reconcile,
        reconcile::reconciliations,
        reconcile::reconciliation,
        experiments::create_experiment,
        experiments::list_experiments,
        experiments::get_experiment,
        experiments::stop_experiment,
        experiments::promote_experiment,
        experiments::unpin_experiment,
        experiments::send_feedback,
        dashboards::analytics_groups,
        dashboards::list_dashboards,
        dashboards::get_dashboard,
        dashboards::put_dashboard,
        dashboards::delete_dashboard,
        dashboards::dashboard_panel,
    ),
    components(schemas(oneflow::Credits, schema::ErrorBody, v1_schema::OpenAiErrorBody, anthropic::AnthropicErrorBody)),
    modifiers(&BearerAuth, &AuthThrottled, &CommonErrors, &Idempotent, &Permissions),
    security(("bearer" = [])),
    tags(
        (name = "status", description = "Liveness and the caller's standing."),
        (name = "requests", description = "Quote and send AI requests (native API)."),
        (name = "wallet", description = "Credits and budgets."),
        (name = "history", description = "Past requests and ledger entries, newest first, paged by cursor."),
        (name = "analytics", description = "Figures from the rollups."),
        (name = "providers", description = "Configured providers, their health, and the config."),
        (name = "users", description = "User administration (admin keys only)."),
        (name = "auth", description = "Accounts and sign-in: register, sign in for a token pair, refresh, sign out (docs/auth.md)."),
        (name = "openai", description = "OpenAI-compatible API: existing SDKs work with `base_url = <server>/v1`."),
        (name = "anthropic", description = "Anthropic-compatible API: Anthropic's SDKs work with `base_url = <server>` (they add `/v1/messages`); the key goes in `x-api-key` or `Authorization: Bearer`."),
        (name = "reports", description = "Usage reports by e-mail (docs/email.md)."),
        (name = "teams", description = "Teams: a shared wallet, members with roles, their own caps inside it, team keys."),
        (name = "docs", description = "This document and its viewers."),
        (name = "webhooks", description = "Signed event deliveries to the caller's URLs (see docs/webhooks.md)."),
        (name = "reconcile", description = "Providers' usage exports against our records: drift reports (admins; docs/reconcile.md)."),
        (name = "experiments", description = "A/B experiments of providers (admins) and ratings of requests (see docs/experiments.md)."),
        (name = "dashboards", description = "Saved dashboards of a user or a team, and their panels' data (see docs/dashboard.md)."),
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
            "An API key made by `POST /api/users` (or the admin key printed at first start), \
             or the access token of a sign-in (`POST /api/auth/login`)."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
        // The Anthropic-compatible routes also take the key as their SDKs
        // send it.
        components.add_security_scheme(
            "x-api-key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "x-api-key",
                    "The same API key, as Anthropic's SDKs send it (`/v1/messages` only).",
                ),
            )),
        );
    }
}

/// Every operation that can answer 401 can also answer 429
/// `too_many_auth_failures` (see `throttle.rs`): added here, in the 401's
/// own body shape, rather than repeated on each operation.
struct AuthThrottled;

impl Modify for AuthThrottled {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        const WHY: &str = "too many failed authentications from this address \
                           (`too_many_auth_failures`); see Retry-After";
        for op in operations(openapi) {
            let r = &mut op.responses.responses;
            let Some(RefOr::T(unauthorized)) = r.get("401").cloned() else {
                continue;
            };
            match r.get_mut("429") {
                Some(RefOr::T(existing)) => {
                    existing.description = format!("{}; or {WHY}", existing.description);
                }
                _ => {
                    let mut throttled = unauthorized;
                    throttled.description = format!("Too many requests: {WHY}");
                    r.insert("429".into(), RefOr::T(throttled));
                }
            }
        }
    }
}

/// Every operation of the document, whatever its method.
fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// The answers every operation of a kind can give, whatever its handler:
/// added here, in the operation's own error shape (that of its 401), rather
/// than repeated on each. Only operations that take a key have a 401, and
/// only those are changed; the public ones take no body and no query.
/// - query parameters: 400 for an unknown one or a value of the wrong type
///   (every query type denies unknown fields);
/// - a `user_id` query parameter: 404 when it names no user, or anyone but
///   the caller for a non-admin (who learns nothing of other users);
/// - a request body: 400 for a body that is not the documented JSON, and
///   413 past `server.max_body_bytes`.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::path::ParameterIn;
        for op in operations(openapi) {
            let params = op.parameters.as_deref().unwrap_or_default();
            let query = params
                .iter()
                .any(|p| matches!(p.parameter_in, ParameterIn::Query));
            let for_user = params
                .iter()
                .any(|p| matches!(p.parameter_in, ParameterIn::Query) && p.name == "user_id");
            let body = op.request_body.is_some();
            let r = &mut op.responses.responses;
            let Some(RefOr::T(shape)) = r.get("401").cloned() else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                if !r.contains_key(status) {
                    let mut answer = shape.clone();
                    answer.description = description.into();
                    r.insert(status.into(), RefOr::T(answer));
                }
            };
            if query {
                add(
                    "400",
                    "Invalid query string: an unknown parameter, or a value of the wrong type",
                );
            }
            if for_user {
                add(
                    "404",
                    "`user_id` names no user (or, from a non-admin, another user)",
                );
            }
            if body {
                add("400", "Invalid body: not the documented JSON");
                add("413", "Body larger than `server.max_body_bytes`");
            }
        }
    }
}

/// The POSTs that take an `Idempotency-Key` besides `/api/request` (which
/// documents it itself), and whether each keeps whole answers (the `/v1`
/// ones: a replay whose answer was too large to keep is 409).
const IDEMPOTENT: &[(&str, bool)] = &[
    ("/v1/chat/completions", true),
    ("/v1/completions", true),
    ("/v1/embeddings", true),
    ("/v1/images/generations", true),
    ("/v1/audio/speech", true),
    ("/v1/messages", true),
    ("/v1/responses", true),
    ("/v1/audio/transcriptions", true),
    ("/v1/audio/translations", true),
    ("/api/credits/add", false),
    ("/api/teams/{id}/credits", false),
];

/// Adds the `Idempotency-Key` header and what it can answer to each of
/// [`IDEMPOTENT`], in the operation's own error shape (that of its 400).
struct Idempotent;

impl Modify for Idempotent {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{Header, RefOr, Required};
        for (path, keeps_answers) in IDEMPOTENT {
            let Some(op) = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|i| i.post.as_mut())
            else {
                continue;
            };
            let header = ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1 to 255 printable ASCII characters. A repeat with the same key and body \
                     (compared as parsed JSON) within `idempotency.retention_hours` gets the \
                     first answer again, byte for byte, and is never charged or credited \
                     twice; a repeat while the first is running waits for it. Not taken \
                     with `stream: true` (400).",
                ))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .pattern(Some(crate::routes::IDEMPOTENCY_KEY_PATTERN)),
                ))
                .build();
            op.parameters.get_or_insert_with(Vec::new).push(header);
            let r = &mut op.responses.responses;
            if let Some(RefOr::T(ok)) = r.get_mut("200") {
                ok.headers.insert(
                    "idempotent-replayed".into(),
                    Header::new(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::String),
                    ),
                );
            }
            let Some(RefOr::T(bad)) = r.get("400").cloned() else {
                continue;
            };
            let mut reused = bad.clone();
            reused.description =
                "The Idempotency-Key was used with another body (`idempotency_key_reused`)".into();
            if *keeps_answers {
                // The /v1 ones are AI requests, which route by region too.
                reused.description.push_str(
                    "; or no provider of the model is in the region asked \
                     (`no_provider_in_region`)",
                );
            }
            r.insert("422".into(), RefOr::T(reused));
            if *keeps_answers {
                let mut not_kept = bad;
                not_kept.description = "A repeat of a request whose answer was larger than \
                    `idempotency.max_answer_bytes` (`idempotency_answer_not_kept`): it ran and \
                    was charged once; its record is in the history"
                    .into();
                r.insert("409".into(), RefOr::T(not_kept));
            }
        }
    }
}

/// Registers the document, the two pages and their assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(openapi_json)
        .service(swagger_page)
        .service(redoc_page)
        .service(docs_asset);
}

#[get("/api/openapi.json")]
pub async fn openapi_json(s: web::Data<crate::state::AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(s.openapi.clone())
}

/// Routes served outside the document (see `NOT_API` in
/// `tests/e2e/openapi.rs`), for [`allowed_methods`].
const UNDOCUMENTED_ROUTES: &[(&str, &str)] =
    &[("/", "GET"), ("/assets/{file}", "GET"), ("/metrics", "GET")];

/// A path's segments (`None` for a parameter) and its methods.
type Route = (Vec<Option<String>>, Vec<&'static str>);

/// Each route's path split in segments (`None` for a `{parameter}`) and
/// the methods it answers, from the document itself, so that a route gets
/// its 405 as soon as it is documented.
static ROUTES: LazyLock<Vec<Route>> = LazyLock::new(|| {
    let segments = |path: &str| -> Vec<Option<String>> {
        path.split('/')
            .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
            .collect()
    };
    let mut routes: Vec<Route> = ApiDoc::openapi()
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
            ];
            let methods = methods.iter().filter(|m| m.1).map(|m| m.0).collect();
            (segments(path), methods)
        })
        .collect();
    for (path, method) in UNDOCUMENTED_ROUTES {
        routes.push((segments(path), vec![*method]));
    }
    routes
});

/// The `Allow` header for a path some route serves (with another method
/// than the one asked), or `None` for a path no route serves.
pub fn allowed_methods(path: &str) -> Option<String> {
    let asked: Vec<&str> = path.split('/').collect();
    let mut methods: Vec<&str> = ROUTES
        .iter()
        .filter(|(segs, _)| {
            segs.len() == asked.len()
                && segs.iter().zip(&asked).all(|(s, a)| match s {
                    Some(lit) => lit == a,
                    None => !a.is_empty(),
                })
        })
        .flat_map(|(_, m)| m.iter().copied())
        .collect();
    if methods.is_empty() {
        return None;
    }
    methods.sort_unstable();
    methods.dedup();
    Some(methods.join(", "))
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
    page(include_str!("../../assets/apidocs/swagger.html"))
}

#[get("/api/redoc")]
pub async fn redoc_page() -> HttpResponse {
    page(include_str!("../../assets/apidocs/redoc.html"))
}

/// The files the two pages load: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/swagger-ui/swagger-ui.css"),
    ),
    (
        "swagger-init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/apidocs/swagger-init.js"),
    ),
    (
        "redoc.standalone.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/redoc/redoc.standalone.js"),
    ),
    (
        "redoc-init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/apidocs/redoc-init.js"),
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
