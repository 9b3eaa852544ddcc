//! `GET /api/analytics`: totals and per-provider figures from the rollups;
//! `GET /api/analytics/series`: a time series for charts;
//! `GET /api/analytics/burndown`: spend rate and when money runs out.
//!
//! Every answer reads rollup rows only, so its cost depends on the range and
//! the number of providers, not on how many requests are stored.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;

use oneflow::analytics::Bucket;
use oneflow::time::MS_PER_HOUR;
use oneflow::time::{TimeError, parse_time};
use oneflow_actors::analytics::Range;

use crate::access::{Can, Need};
use crate::error::ApiError;
use crate::state::AppState;

/// `from`/`to`: milliseconds since 1970 or RFC 3339; `bucket`: minute,
/// hour or day.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// An admin: one user's figures (without it, every user's).
    /// A team's id: the team's, for its team_admin, viewers and billing members (docs/auth.md).
    pub user_id: Option<String>,
    /// Milliseconds since the epoch or RFC 3339, widened to whole buckets.
    pub from: Option<String>,
    /// Milliseconds since the epoch or RFC 3339, widened to whole buckets.
    pub to: Option<String>,
    /// `minute`, `hour` or `day`.
    #[param(pattern = "^(minute|hour|day)$")]
    pub bucket: Option<String>,
    /// Series only: one provider.
    pub provider: Option<String>,
}

/// Parses `bucket`, defaulting to `default`.
pub fn bucket(q: Option<&str>, default: Bucket) -> Result<Bucket, ApiError> {
    match q {
        None => Ok(default),
        Some(b) => Bucket::parse(b).ok_or_else(|| {
            ApiError::BadRequest(format!("`bucket` must be minute, hour or day, not `{b}`"))
        }),
    }
}

/// Parses one time parameter, naming it in the error: 400 for text that is
/// no time, 422 for a day its month lacks.
pub fn time(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|s| {
        parse_time(s).map_err(|e| match e {
            TimeError::Malformed(_) => ApiError::BadRequest(format!("`{name}`: {e}")),
            TimeError::NoSuchDay(_) => ApiError::InvalidRange(format!("`{name}`: {e}")),
        })
    })
    .transpose()
}

/// `from` must come before `to`.
pub fn ordered(from: i64, to: i64) -> Result<(), ApiError> {
    if from >= to {
        return Err(ApiError::InvalidRange("`from` must be before `to`".into()));
    }
    Ok(())
}

impl RangeQuery {
    fn range(&self, default: Bucket) -> Result<Range, ApiError> {
        let b = bucket(self.bucket.as_deref(), default)?;
        let from = time("from", self.from.as_deref())?;
        let to = time("to", self.to.as_deref())?;
        if let (Some(f), Some(t)) = (from, to) {
            ordered(f, t)?;
        }
        Range::new(b, from, to, oneflow_actors::ids::now_ms()).map_err(ApiError::InvalidRange)
    }

    fn any_range(&self) -> bool {
        self.from.is_some() || self.to.is_some() || self.bucket.is_some()
    }
}

/// Whose figures: the caller's, a team's they may read for
/// (`Can::subject_or_team`), or an admin's choice; an admin without
/// `user_id` sees every user's.
pub async fn scope<N: Need>(
    s: &AppState,
    c: &Can<N>,
    user_id: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if c.0.is_admin() && user_id.is_none() {
        Ok(None)
    } else {
        Ok(Some(c.subject_or_team(s, user_id).await?))
    }
}

#[get("/api/analytics")]
pub async fn analytics(
    s: web::Data<AppState>,
    c: crate::access::Reader,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.provider.is_some() {
        return Err(ApiError::BadRequest(
            "`provider` applies to /api/analytics/series; this answer splits by provider".into(),
        ));
    }
    let subject = scope(&s, &c, q.user_id.as_deref()).await?;
    // Without a range: all time.
    let range = if q.any_range() {
        Some(q.range(Bucket::Hour)?)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(s.broker.analytics(subject.as_deref(), range, 10).await?))
}

#[get("/api/analytics/series")]
pub async fn series(
    s: web::Data<AppState>,
    c: crate::access::Reader,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let subject = scope(&s, &c, q.user_id.as_deref()).await?;
    let range = q.range(Bucket::Hour)?;
    Ok(HttpResponse::Ok().json(
        s.broker
            .analytics_series(subject.as_deref(), q.provider.as_deref(), range)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BurnDownQuery {
    /// An admin: any user's. A team's id: the team's, for its team_admin, viewers and billing members (docs/auth.md).
    pub user_id: Option<String>,
    /// The recent window the spend rate is measured over (default 24).
    #[param(minimum = 1, maximum = 2160)]
    pub window_hours: Option<u32>,
}

#[get("/api/analytics/burndown")]
pub async fn burndown(
    s: web::Data<AppState>,
    c: crate::access::Reader,
    q: web::Query<BurnDownQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    let hours = match q.window_hours {
        None => 24,
        Some(h @ 1..=2160) => h,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`window_hours` must be between 1 and 2160".into(),
            ));
        }
    };
    let window = i64::from(hours) * MS_PER_HOUR;
    Ok(HttpResponse::Ok().json(s.broker.burn_down(&user_id, window).await?))
}
