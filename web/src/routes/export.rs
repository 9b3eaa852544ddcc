//! `GET /api/export/{requests|transactions|analytics}?format=csv|json|ndjson`:
//! streamed exports of any size. The store is read in a blocking task that
//! feeds a bounded channel; the body is that channel, so memory stays flat
//! however many rows there are and a slow client slows the reader.

use actix_web::http::header::{CONTENT_DISPOSITION, HeaderValue};
use actix_web::{HttpResponse, get, web};
use bytes::Bytes;
use serde::Deserialize;

use oneflow::analytics::Bucket;
use oneflow_actors::Broker;
use oneflow_actors::export::{ExportKind, ExportQuery, Format};

use crate::access::Exporter;
use crate::error::ApiError;
use crate::routes::analytics::{bucket, ordered, scope, time};
use crate::state::AppState;

/// The parameters of a records export (`requests`, `transactions`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (default), `json` (one array) or `ndjson` (one object a line).
    #[param(pattern = "^(csv|json|ndjson)$")]
    pub format: Option<String>,
    /// An admin: one user's rows (without it, every user's). A team's id:
    /// the team's rows, for its team_admin and billing members.
    pub user_id: Option<String>,
    /// Milliseconds since the epoch or RFC 3339; must be before `to`.
    pub from: Option<String>,
    /// Milliseconds since the epoch or RFC 3339.
    pub to: Option<String>,
}

/// The analytics export's parameters: a records export's and the width of
/// its rows. A separate route, so that `bucket` is a parameter of the one
/// export it applies to.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsExportParams {
    /// `csv` (default), `json` (one array) or `ndjson` (one object a line).
    #[param(pattern = "^(csv|json|ndjson)$")]
    pub format: Option<String>,
    /// An admin: one user's rows (without it, every user's). A team's id:
    /// the team's rows, for its team_admin and billing members.
    pub user_id: Option<String>,
    /// Milliseconds since the epoch or RFC 3339; must be before `to`.
    pub from: Option<String>,
    /// Milliseconds since the epoch or RFC 3339.
    pub to: Option<String>,
    /// Width of the rows: `minute`, `hour` (default) or `day`.
    #[param(pattern = "^(minute|hour|day)$")]
    pub bucket: Option<String>,
}

/// Registered before [`export`], which would otherwise take `analytics`
/// as its kind.
#[get("/api/export/analytics")]
pub async fn export_analytics(
    s: web::Data<AppState>,
    c: Exporter,
    q: web::Query<AnalyticsExportParams>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let kind = ExportKind::Analytics(bucket(q.bucket.as_deref(), Bucket::Hour)?);
    let params = ExportParams {
        format: q.format,
        user_id: q.user_id,
        from: q.from,
        to: q.to,
    };
    stream(&s, &c, kind, &params).await
}

#[get("/api/export/{kind}")]
pub async fn export(
    s: web::Data<AppState>,
    c: Exporter,
    kind: web::Path<String>,
    q: web::Query<ExportParams>,
) -> Result<HttpResponse, ApiError> {
    let kind = match kind.as_str() {
        "requests" => ExportKind::Requests,
        "transactions" => ExportKind::Transactions,
        other => {
            return Err(ApiError::BadRequest(format!(
                "cannot export `{other}`: choose requests, transactions or analytics"
            )));
        }
    };
    stream(&s, &c, kind, &q).await
}

/// Checks the parameters and streams the export.
async fn stream(
    s: &AppState,
    c: &Exporter,
    kind: ExportKind,
    q: &ExportParams,
) -> Result<HttpResponse, ApiError> {
    let (format, mime, ext) = match q.format.as_deref().unwrap_or("csv") {
        "csv" => (Format::Csv, "text/csv; charset=utf-8", "csv"),
        "json" => (Format::Json, "application/json", "json"),
        "ndjson" => (Format::Ndjson, "application/x-ndjson", "ndjson"),
        other => {
            return Err(ApiError::BadRequest(format!(
                "`format` must be csv, json or ndjson, not `{other}`"
            )));
        }
    };
    let from = time("from", q.from.as_deref())?.unwrap_or(0);
    let to = time("to", q.to.as_deref())?.unwrap_or(i64::MAX);
    ordered(from, to)?;
    let user_id = scope(s, c, q.user_id.as_deref()).await?;
    if let Some(u) = user_id.as_ref().filter(|u| !Broker::is_team(u)) {
        // A named user must exist: an admin's typo is a 404, not an empty file.
        if !s.broker.users().await?.iter().any(|x| &x.id == u) {
            return Err(ApiError::NotFound("user".into()));
        }
    }
    let name = match kind {
        ExportKind::Requests => "requests",
        ExportKind::Transactions => "transactions",
        ExportKind::Analytics(_) => "analytics",
    };
    let query = ExportQuery {
        kind,
        format,
        user_id,
        from,
        to,
    };
    let rx = s.broker.export(&c.0.user_id, query)?;
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((
            item.map_err(|e| std::io::Error::other(format!("export broke off: {e}"))),
            rx,
        ))
    });
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\""))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type(mime)
        .insert_header((CONTENT_DISPOSITION, disposition))
        .streaming::<_, std::io::Error>(body_of(body)))
}

/// Names the stream's item type for `streaming`.
fn body_of(
    s: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    s
}
