//! OneFlow's HTTP layer: routes, authentication, errors, configuration
//! loading, and the server both `main` and the tests start.

pub mod access;
pub mod auth;
pub mod cli;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod state;
pub mod storage_cli;
pub mod throttle;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, HttpServer, web};

use oneflow::config::Config;
use oneflow_actors::Broker;

use crate::error::ApiError;
use crate::state::AppState;

/// Builds the HTTP app for `main` and the tests alike.
pub fn create_app(
    state: web::Data<AppState>,
    max_body: usize,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        // No answer of ours is to be read as anything but its stated type
        // (a JSON error echoing input must never be sniffed as HTML).
        .wrap(
            actix_web::middleware::DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")),
        )
        .app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(max_body)
                .error_handler(move |e, _| error::json_error(e, max_body)),
        )
        .app_data(web::PayloadConfig::default().limit(max_body))
        .app_data(web::QueryConfig::default().error_handler(|e, _| error::query_error(e)))
        .app_data(web::PathConfig::default().error_handler(|e, _| error::path_error(e)))
        .service(routes::status::health)
        // The routes that carry traffic come first: actix tries resources
        // in the order given, and each one with a `{param}` before them is
        // a regex match (4% of the CPU of a `/v1/chat/completions` under
        // load when these came last).
        .service(routes::request::quote)
        .service(routes::request::request)
        .service(routes::openai::chat::chat)
        .service(routes::openai::completions::completions)
        .service(routes::openai::embeddings::embeddings)
        .service(routes::openai::images::images)
        .service(routes::openai::speech::speech)
        .service(routes::openai::transcriptions::transcriptions)
        .service(routes::openai::transcriptions::translations)
        .service(routes::openai::models::models)
        .service(routes::openai::responses::create)
        .service(routes::openai::responses::retrieve)
        .service(routes::anthropic::messages::count_tokens)
        .service(routes::anthropic::messages::messages)
        .service(routes::status::status)
        .service(routes::metrics::metrics)
        .service(routes::jobs::start)
        .service(routes::jobs::content)
        .service(routes::jobs::job)
        .service(routes::analytics::analytics)
        .service(routes::analytics::series)
        .service(routes::analytics::burndown)
        .service(routes::dashboards::groups)
        .service(routes::dashboards::list)
        .service(routes::dashboards::panel)
        .service(routes::dashboards::get_one)
        .service(routes::dashboards::save)
        .service(routes::dashboards::remove)
        .service(routes::export::export_analytics)
        .service(routes::export::export)
        .service(routes::budget::get_budget)
        .service(routes::budget::put_budget)
        .service(routes::routing::get_routing)
        .service(routes::routing::put_routing)
        .service(routes::credits::add)
        .service(routes::reports::send_now)
        .service(routes::providers::providers)
        .service(routes::providers::config)
        .service(routes::backup::backup)
        .service(routes::history::requests)
        .service(routes::history::request)
        .service(routes::history::transactions)
        .service(routes::users::create)
        .service(routes::users::list)
        .service(routes::keys::create)
        .service(routes::keys::list)
        .service(routes::keys::revoke)
        .service(routes::signin::register)
        .service(routes::signin::login)
        .service(routes::signin::refresh)
        .service(routes::signin::logout)
        .service(routes::signin::invite)
        .service(routes::teams::create)
        .service(routes::teams::list)
        .service(routes::teams::get_one)
        .service(routes::teams::set_member)
        .service(routes::teams::remove_member)
        .service(routes::teams::create_key)
        .service(routes::teams::invite)
        .service(routes::teams::top_up)
        .service(routes::teams::wallet)
        .service(routes::teams::set_budget)
        .service(routes::teams::requests)
        .service(routes::webhooks::create)
        .service(routes::webhooks::list)
        .service(routes::webhooks::get_one)
        .service(routes::webhooks::remove)
        .service(routes::webhooks::rotate)
        .service(routes::webhooks::deliveries)
        .service(routes::reconcile::reconcile)
        .service(routes::reconcile::list)
        .service(routes::reconcile::get_one)
        .service(routes::experiments::create)
        .service(routes::experiments::list)
        .service(routes::experiments::get_one)
        .service(routes::experiments::stop)
        .service(routes::experiments::promote)
        .service(routes::experiments::unpin)
        .service(routes::experiments::feedback)
        .configure(openapi::configure)
        .service(routes::dashboard::index)
        .service(routes::dashboard::asset)
        .default_service(web::to(fallback))
}

/// No route took the request: 405 with `Allow` when the path is served
/// with other methods, else 404; under `/v1` in OpenAI's error shape.
async fn fallback(req: actix_web::HttpRequest) -> HttpResponse {
    let path = req.path();
    let allow = openapi::allowed_methods(path);
    let error = match &allow {
        Some(methods) => ApiError::MethodNotAllowed(methods.clone()),
        None => ApiError::NotFound("route".into()),
    };
    let mut res = if path == "/v1" || path.starts_with("/v1/") {
        HttpResponse::from_error(routes::openai::OpenAiError(error))
    } else {
        HttpResponse::from_error(error)
    };
    if let Some(methods) = allow
        && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&methods)
    {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    res
}

/// A started server: await `server` to run it, then call
/// `broker.shutdown()` to commit what is queued.
pub struct Started {
    pub server: Server,
    pub addr: SocketAddr,
    pub broker: Broker,
    /// A new admin key, made on first start; shown once.
    pub admin_key: Option<String>,
}

/// Opens the store, recovers, starts the actors and binds the listener.
/// Must run inside an actix system.
pub fn start(config: Config, admin_key: Option<&str>) -> Result<Started, String> {
    let (broker, new_key) = Broker::start(config.clone(), admin_key).map_err(|e| e.to_string())?;
    let openapi = openapi::document(&config).map_err(|e| format!("OpenAPI document: {e}"))?;
    let state = web::Data::new(AppState {
        broker: broker.clone(),
        started_at: Instant::now(),
        auth_throttle: throttle::AuthThrottle::new(config.server.auth_failures_per_minute),
        openapi,
    });
    let max_body = config.server.max_body_bytes;
    let mut http = HttpServer::new(move || create_app(state.clone(), max_body))
        // Streams are many small writes: without TCP_NODELAY, Nagle's
        // algorithm holds each behind the client's delayed ACK (up to
        // 40 ms a chunk). actix leaves the accepted socket as it is.
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .client_request_timeout(Duration::from_secs(
            config.server.client_request_timeout_secs,
        ))
        .shutdown_timeout(config.server.shutdown_timeout_secs);
    if config.server.workers > 0 {
        http = http.workers(config.server.workers);
    }
    let http = http
        .bind(&config.server.bind)
        .map_err(|e| format!("cannot bind {}: {e}", config.server.bind))?;
    let addr = http.addrs().first().copied().ok_or("no address bound")?;
    Ok(Started {
        server: http.run(),
        addr,
        broker,
        admin_key: new_key,
    })
}

/// Runs until the server stops (SIGINT/SIGTERM or a handle's `stop`), then
/// commits everything queued.
pub async fn run(started: Started) -> std::io::Result<()> {
    let result = started.server.await;
    started.broker.shutdown().await;
    result
}
