//! `POST /api/reports/send-now`: e-mails a usage report to the user now
//! (docs/email.md). The answer comes once the SMTP server took the
//! message, or with 502 when it refused it, was down or took longer than
//! `email.timeout_secs`.

use actix_web::{HttpResponse, post, web};
use serde::Deserialize;

use oneflow::email::Period;
use oneflow_actors::ids::now_ms;

use crate::access::Reader;
use crate::error::ApiError;
use crate::routes::analytics::time;
use crate::state::AppState;

/// A named period, ending at the start of today (UTC).
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PeriodName {
    /// The previous UTC day, charted per hour.
    Day,
    /// The previous 7 UTC days, charted per day.
    Week,
}

/// Which report to send. Give `period`, or `from` and `to`, or nothing
/// (the previous day).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"period": "day"}))]
pub struct SendNow {
    pub period: Option<PeriodName>,
    /// Milliseconds since the epoch or RFC 3339; with `to`, instead of
    /// `period`. Widened to whole hours, or whole days past two days; at
    /// most 366 days. (Its pattern is written in by `openapi/document.rs`.)
    pub from: Option<String>,
    /// Milliseconds since the epoch or RFC 3339; not included.
    pub to: Option<String>,
    /// Whose report (default: the caller's): an admin's choice of user,
    /// sent to that user's address; or a team's id, for its team_admin,
    /// viewers and billing members, sent to its team admins and billing
    /// members.
    pub user_id: Option<String>,
}

#[post("/api/reports/send-now")]
pub async fn send_now(
    s: web::Data<AppState>,
    c: Reader,
    body: super::Object<SendNow>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let user_id = c.subject_or_team(&s, b.user_id.as_deref()).await?;
    let from = time("from", b.from.as_deref())?;
    let to = time("to", b.to.as_deref())?;
    let now = now_ms();
    let period = match (b.period, from, to) {
        (None, None, None) | (Some(PeriodName::Day), None, None) => Period::previous_day(now),
        (Some(PeriodName::Week), None, None) => Period::previous_week(now),
        (None, Some(f), Some(t)) => Period::explicit(f, t).map_err(ApiError::InvalidRange)?,
        (Some(_), _, _) => {
            return Err(ApiError::Inconsistent(
                "give `period`, or `from` and `to`, not both".into(),
            ));
        }
        (None, _, _) => {
            return Err(ApiError::Inconsistent("`from` and `to` go together".into()));
        }
    };
    Ok(HttpResponse::Ok().json(s.broker.send_report(&user_id, period).await?))
}
