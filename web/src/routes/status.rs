//! `GET /health` and `GET /api/status`.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::access::Reader;
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/api/status")]
pub async fn status(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    let wallet = s.broker.wallet(&user_id).await?;
    let providers = s.broker.providers();
    let up: Vec<_> = providers
        .iter()
        .filter(|p| p.up)
        .map(|p| p.name.clone())
        .collect();
    let mut body = json!({
        "user_id": user_id,
        "role": c.0.role,
        "balance": wallet.balance,
        "available": wallet.available,
        "held": wallet.held,
        "budgets": wallet.windows,
        "providers_up": up,
        "providers_total": providers.len(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    // How busy the whole broker is tells one user about the others: only
    // admins see it.
    if c.0.is_admin() {
        let (wallets_alive, writes_queued) = s.broker.runtime_figures();
        let cluster = s.broker.cluster().await?;
        let system = json!({
            "cluster": cluster,
            "tasks": s.broker.tasks(),
            "uptime_secs": s.started_at.elapsed().as_secs(),
            "wallets_alive": wallets_alive,
            "writes_queued": writes_queued,
            "persistence": s.broker.persistence_figures(),
        });
        if let (Some(b), Some(sys)) = (body.as_object_mut(), system.as_object()) {
            b.extend(sys.clone());
        }
    }
    Ok(HttpResponse::Ok().json(body))
}
