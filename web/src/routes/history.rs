//! `GET /api/history/requests`, `GET /api/history/requests/{id}`,
//! `GET /api/history/transactions`: newest first, paged by cursor.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;

use crate::access::Reader;
use crate::error::ApiError;
use crate::state::AppState;

/// Paging of newest-first listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 1000; default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Whose data (default: the caller's): an admin's choice of user.
    /// A team's id: the team's, for its team_admin, viewers and billing members (docs/auth.md).
    pub user_id: Option<String>,
}

impl PageQuery {
    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=1000) => Ok(n),
            Some(_) => Err(ApiError::BadRequest(
                "`limit` must be between 1 and 1000".into(),
            )),
        }
    }
}

#[get("/api/history/requests")]
pub async fn requests(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    Ok(HttpResponse::Ok().json(
        s.broker
            .requests(&user_id, q.cursor.as_deref(), q.limit()?)
            .await?,
    ))
}

#[get("/api/history/requests/{id}")]
pub async fn request(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.request_record(&c.0, &id).await?))
}

#[get("/api/history/transactions")]
pub async fn transactions(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    Ok(HttpResponse::Ok().json(
        s.broker
            .transactions(&user_id, q.cursor.as_deref(), q.limit()?)
            .await?,
    ))
}
