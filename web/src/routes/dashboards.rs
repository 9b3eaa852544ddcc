//! `/api/dashboards`: a user's or a team's saved dashboards, the data of
//! their panels (JSON or CSV), and `GET /api/analytics/groups`, the
//! grouped series every panel is a view of. A team's go through the same
//! routes with `?user_id=<team id>`: read by those who read the team's
//! figures, written by its team_admin (`Can::subject_or_team`).

use actix_web::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, delete, get, put, web};
use serde::Deserialize;
use serde_json::json;

use oneflow::analytics::{Bucket, GroupBy};
use oneflow::dashboard::DashboardSpec;
use oneflow_actors::BrokerError;
use oneflow_actors::analytics::Range;

use crate::access::{Manager, Reader};
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::routes::analytics::{bucket, ordered, scope, time};
use crate::state::AppState;

/// `GET /api/analytics/groups`: a series split by a grouping.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GroupsQuery {
    /// `provider`, `model`, `key` or `member`.
    #[param(pattern = "^(provider|model|key|member)$")]
    pub group_by: String,
    /// An admin: one user's figures (without it, every user's).
    /// A team's id: the team's, for its team_admin, viewers and billing members (docs/auth.md).
    pub user_id: Option<String>,
    /// Milliseconds since the epoch or RFC 3339, widened to whole buckets.
    pub from: Option<String>,
    /// Milliseconds since the epoch or RFC 3339, widened to whole buckets.
    pub to: Option<String>,
    /// `minute`, `hour` (default) or `day`.
    #[param(pattern = "^(minute|hour|day)$")]
    pub bucket: Option<String>,
}

#[get("/api/analytics/groups")]
pub async fn groups(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<GroupsQuery>,
) -> Result<HttpResponse, ApiError> {
    let by = GroupBy::parse(&q.group_by).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`group_by` must be provider, model, key or member, not `{}`",
            q.group_by.chars().take(64).collect::<String>()
        ))
    })?;
    let b = bucket(q.bucket.as_deref(), Bucket::Hour)?;
    let from = time("from", q.from.as_deref())?;
    let to = time("to", q.to.as_deref())?;
    if let (Some(f), Some(t)) = (from, to) {
        ordered(f, t)?;
    }
    let range =
        Range::new(b, from, to, oneflow_actors::ids::now_ms()).map_err(ApiError::InvalidRange)?;
    let subject = scope(&s, &c, q.user_id.as_deref()).await?;
    Ok(HttpResponse::Ok().json(
        s.broker
            .analytics_groups(subject.as_deref(), by, range)
            .await?,
    ))
}

#[get("/api/dashboards")]
pub async fn list(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let owner = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    let dashboards = s.broker.dashboards(&owner).await?;
    Ok(HttpResponse::Ok().json(json!({ "user_id": owner, "dashboards": dashboards })))
}

#[get("/api/dashboards/{name}")]
pub async fn get_one(
    s: web::Data<AppState>,
    c: Reader,
    name: web::Path<String>,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let owner = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    Ok(HttpResponse::Ok().json(s.broker.dashboard(&owner, &name).await?))
}

/// Creates or replaces: 201 when new, 200 when replaced. Every check runs
/// before anything is written, so a refused body leaves the old one.
#[put("/api/dashboards/{name}")]
pub async fn save(
    s: web::Data<AppState>,
    c: Manager,
    name: web::Path<String>,
    q: web::Query<ForUser>,
    body: web::Json<DashboardSpec>,
) -> Result<HttpResponse, ApiError> {
    let owner = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    let dashboard = body
        .read()
        .map_err(|e| ApiError::Broker(BrokerError::InvalidDashboard(e.0)))?;
    let (new, view) = s.broker.put_dashboard(&owner, &name, dashboard).await?;
    Ok(if new {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

#[delete("/api/dashboards/{name}")]
pub async fn remove(
    s: web::Data<AppState>,
    c: Manager,
    name: web::Path<String>,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let owner = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    s.broker.delete_dashboard(&owner, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A panel's data: whose dashboard, and as what.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PanelQuery {
    /// Whose dashboard (default: the caller's): an admin's choice of
    /// user, or a team's id for those who read the team's figures.
    pub user_id: Option<String>,
    /// `json` (default) or `csv`; without it, `Accept: text/csv` asks
    /// for CSV.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

#[get("/api/dashboards/{name}/panels/{index}")]
pub async fn panel(
    req: HttpRequest,
    s: web::Data<AppState>,
    c: Reader,
    path: web::Path<(String, usize)>,
    q: web::Query<PanelQuery>,
) -> Result<HttpResponse, ApiError> {
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(f) => {
            return Err(ApiError::BadRequest(format!(
                "`format` must be json or csv, not `{}`",
                f.chars().take(64).collect::<String>()
            )));
        }
        None => req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv")),
    };
    let owner = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    let (name, index) = path.into_inner();
    let data = s.broker.dashboard_panel(&owner, &name, index).await?;
    if !csv {
        return Ok(HttpResponse::Ok().json(data));
    }
    let file = format!("attachment; filename=\"{name}-panel-{index}.csv\"");
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((CONTENT_DISPOSITION, file))
        .body(oneflow_actors::dashboards::panel_csv(&data)))
}
