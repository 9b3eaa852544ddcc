//! `POST /api/reconcile`: a provider's usage export compared with our
//! records; `GET /api/reconcile` and `GET /api/reconcile/{id}`: the kept
//! reports (docs/reconcile.md). Admins only: the report covers every
//! user's requests.

use actix_web::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Deserialize;

use oneflow::Credits;
use oneflow::reconcile::formats::{ExportError, Format};
use oneflow::reconcile::text::decimal;
use oneflow::reconcile::{Tolerance, cells_csv};
use oneflow_actors::reconcile::{ReconcileError, Report, Upload};

use crate::access::AdminCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest export read, in bytes: its rows are bounded too
/// (`oneflow::reconcile::MAX_ROWS`), but JSON spends many bytes a row.
pub const MAX_EXPORT_BYTES: usize = 16 << 20;

/// How to read the upload and what counts as a match.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReconcileParams {
    /// The OneFlow provider the export belongs to. May be left out for a
    /// generic CSV with a `provider` column.
    pub provider: Option<String>,
    /// The export's format: `openai_json`, `openai_csv`, `anthropic` or
    /// `csv` (generic). Without it, the body's text tells.
    #[param(pattern = "^(openai_json|openai_csv|anthropic|csv)$")]
    pub format: Option<String>,
    /// Token counts match within this fraction of ours (default 0: exact).
    #[param(pattern = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$")]
    pub tokens_tolerance: Option<String>,
    /// Costs match within this fraction of ours (default 0.005) ...
    #[param(pattern = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$")]
    pub cost_tolerance: Option<String>,
    /// ... or within this many credits (default 0.000001).
    #[param(pattern = r"^[0-9]{1,12}(\.[0-9]{1,6})?$")]
    pub cost_tolerance_abs: Option<String>,
}

/// How to answer a kept report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// `json` (default) or `csv`; `Accept: text/csv` asks for CSV too.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

fn export_format(name: &str) -> Result<Format, ApiError> {
    Ok(match name {
        "openai_json" => Format::OpenaiJson,
        "openai_csv" => Format::OpenaiCsv,
        "anthropic" => Format::Anthropic,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::BadRequest(format!(
                "`format` must be openai_json, openai_csv, anthropic or csv, not `{other}`"
            )));
        }
    })
}

/// A fraction from 0 to 1, in parts per million.
fn ratio(field: &str, v: Option<&str>, default: u64) -> Result<u64, ApiError> {
    let Some(v) = v else {
        return Ok(default);
    };
    match decimal(v, 6) {
        Some(ppm) if (0..=1_000_000).contains(&ppm) && v.len() <= 12 => Ok(ppm as u64),
        _ => Err(ApiError::BadRequest(format!(
            "`{field}` must be a fraction from 0 to 1, e.g. 0.005"
        ))),
    }
}

fn tolerance(q: &ReconcileParams) -> Result<Tolerance, ApiError> {
    let d = Tolerance::default();
    let cost_abs = match q.cost_tolerance_abs.as_deref() {
        None => d.cost_abs,
        Some(v) => Credits::parse_plain(v)
            .filter(|c| !c.is_negative())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "`cost_tolerance_abs` must be credits, at most 6 decimal places".into(),
                )
            })?,
    };
    Ok(Tolerance {
        tokens_ppm: ratio(
            "tokens_tolerance",
            q.tokens_tolerance.as_deref(),
            d.tokens_ppm,
        )?,
        cost_ppm: ratio("cost_tolerance", q.cost_tolerance.as_deref(), d.cost_ppm)?,
        cost_abs,
    })
}

fn wants_csv(req: &HttpRequest, format: Option<&str>) -> bool {
    format == Some("csv")
        || req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv"))
}

/// The report as JSON, or its cells as CSV.
fn answer(report: &Report, csv: bool) -> HttpResponse {
    if csv {
        HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
            .insert_header((
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.csv\"", report.id),
            ))
            .body(cells_csv(&report.cells))
    } else {
        HttpResponse::Ok().json(report)
    }
}

fn refused(e: ReconcileError) -> ApiError {
    match e {
        ReconcileError::Export(e @ ExportError::TooManyRows) => {
            ApiError::ExportTooLarge(e.to_string())
        }
        ReconcileError::Export(e @ ExportError::TooManyDays(_)) => {
            ApiError::InvalidRange(e.to_string())
        }
        ReconcileError::Export(e @ ExportError::Malformed(_)) => {
            ApiError::InvalidExport(e.to_string())
        }
        e @ ReconcileError::UnknownProvider(_) => ApiError::Inconsistent(e.to_string()),
        e @ ReconcileError::TooManyCells(_) => ApiError::ExportTooLarge(e.to_string()),
        e @ ReconcileError::Busy => ApiError::Unavailable(e.to_string()),
        ReconcileError::Broker(e) => ApiError::Broker(e),
    }
}

#[post("/api/reconcile")]
pub async fn reconcile(
    s: web::Data<AppState>,
    _admin: AdminCaller,
    req: HttpRequest,
    q: web::Query<ReconcileParams>,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let format = q.format.as_deref().map(export_format).transpose()?;
    let tolerance = tolerance(&q)?;
    // A declared length over the bound is refused before a byte is read.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_EXPORT_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_EXPORT_BYTES));
    }
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if bytes.len() + chunk.len() > MAX_EXPORT_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_EXPORT_BYTES));
        }
        bytes.extend_from_slice(&chunk);
    }
    let upload = Upload {
        format,
        provider: q.provider,
        tolerance,
        body: bytes.freeze(),
    };
    let report = s.broker.reconcile(upload).await.map_err(refused)?;
    Ok(answer(&report, wants_csv(&req, None)))
}

#[get("/api/reconcile")]
pub async fn list(s: web::Data<AppState>, _admin: AdminCaller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.reconciliations().await?))
}

#[get("/api/reconcile/{id}")]
pub async fn get_one(
    s: web::Data<AppState>,
    _admin: AdminCaller,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<ReportParams>,
) -> Result<HttpResponse, ApiError> {
    let csv = match q.format.as_deref() {
        Some("json") => false,
        None | Some("csv") => wants_csv(&req, q.format.as_deref()),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`format` must be json or csv, not `{other}`"
            )));
        }
    };
    let report = s.broker.reconciliation(&id).await?;
    Ok(answer(&report, csv))
}
