//! The analytics the broker answers from the rollups: totals, series and
//! burn-down. The rollup tables themselves are storage (`store::rollups`),
//! kept by the store in the transaction that writes the requests they sum.

use std::collections::BTreeMap;

use serde::Serialize;

use oneflow::Credits;
use oneflow::analytics::{Bucket, Point, Summary, hourly_rate, runs_out_at};
use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;
use oneflow::time::{Millis, Window};

use super::{Services, blocking, budgets};
use crate::error::BrokerError;
use crate::ids::now_ms;

/// The most points one series answer may have.
pub const MAX_POINTS: i64 = 10_000;

/// Analytics of one user, or of all users.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Analytics {
    /// Absent for an admin's all-users view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The range the figures cover, widened to whole buckets; absent for
    /// all time.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub from: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub to: Option<Millis>,
    #[serde(flatten)]
    pub summary: Summary,
    pub recent_requests: Vec<RequestRecord>,
    pub recent_transactions: Vec<LedgerEntry>,
}

/// A time series for charts.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Series {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub bucket: Bucket,
    #[schema(value_type = i64)]
    pub from: Millis,
    #[schema(value_type = i64)]
    pub to: Millis,
    pub points: Vec<Point>,
}

/// One budget (or the balance) and when it runs out at the current rate.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Projection {
    /// `daily`, `weekly` or `monthly`.
    pub window: Window,
    /// Set for a per-provider budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub limit: Credits,
    /// Spent in the current calendar window (held amounts included for the
    /// overall budgets, as the wallet counts them).
    pub spent: Credits,
    pub remaining: Credits,
    #[schema(value_type = i64)]
    pub resets_at: Millis,
    /// Spend over the rate window that counts against this budget.
    pub rate_per_hour: Credits,
    /// When `remaining` is used up at the current rate; null if the rate is
    /// zero.
    #[schema(value_type = Option<i64>)]
    pub runs_out_at: Option<Millis>,
    /// Whether that happens before the window resets.
    pub runs_out_before_reset: bool,
}

/// Spend rate over a recent window and when money or budgets run out.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct BurnDown {
    pub user_id: String,
    #[schema(value_type = i64)]
    pub now: Millis,
    /// The rate window: `[window_start, window_end)`, whole minutes.
    #[schema(value_type = i64)]
    pub window_start: Millis,
    #[schema(value_type = i64)]
    pub window_end: Millis,
    pub window_spent: Credits,
    pub rate_per_hour: Credits,
    pub balance: Credits,
    pub available: Credits,
    /// When `available` is used up at the current rate; null if zero.
    #[schema(value_type = Option<i64>)]
    pub balance_runs_out_at: Option<Millis>,
    pub budgets: Vec<Projection>,
}

/// A time range request, already checked: `[from, to)` on bucket edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub bucket: Bucket,
    pub from: Millis,
    pub to: Millis,
}

impl Range {
    /// Widens `[from, to)` to whole buckets; defaults: `to` now, `from` one
    /// day earlier (or 60 buckets for days). Errors name the bad parameter.
    pub fn new(
        bucket: Bucket,
        from: Option<Millis>,
        to: Option<Millis>,
        now: Millis,
    ) -> Result<Range, String> {
        let to = bucket.ceil(to.unwrap_or(now));
        let default_span = match bucket {
            Bucket::Day => 30 * bucket.ms(),
            _ => 24 * 3_600_000,
        };
        let from = bucket.floor(from.unwrap_or(to.saturating_sub(default_span)));
        if from < 0 || to < 0 {
            return Err("`from` and `to` must not be before 1970".into());
        }
        if from >= to {
            return Err("`from` must be before `to`".into());
        }
        if (to - from) / bucket.ms() > MAX_POINTS {
            return Err(format!(
                "the range holds more than {MAX_POINTS} {} buckets: choose a wider bucket or a shorter range",
                bucket.name()
            ));
        }
        Ok(Range { bucket, from, to })
    }
}

/// Totals from the rollups (never a scan of requests), with the latest
/// requests and transactions. `user_id: None`: across all users.
pub(crate) async fn totals(
    s: &Services,
    user_id: Option<&str>,
    range: Option<Range>,
    recent: usize,
) -> Result<Analytics, BrokerError> {
    let store = s.store.clone();
    let uid = user_id.map(str::to_string);
    blocking(move || {
        let summary = store.summary(uid.as_deref().unwrap_or(""), range.map(|r| (r.from, r.to)))?;
        let (recent_requests, recent_transactions) = match &uid {
            Some(u) => (
                store.requests_page(u, None, recent)?,
                store.transactions_page(u, None, recent)?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Analytics {
            user_id: uid,
            from: range.map(|r| r.from),
            to: range.map(|r| r.to),
            summary,
            recent_requests,
            recent_transactions,
        })
    })
    .await
}

/// A dense series over `range`, of one provider or all.
pub(crate) async fn series(
    s: &Services,
    user_id: Option<&str>,
    provider: Option<&str>,
    range: Range,
) -> Result<Series, BrokerError> {
    let store = s.store.clone();
    let uid = user_id.map(str::to_string);
    let provider = provider.map(str::to_string);
    blocking(move || {
        let points = store.series(
            uid.as_deref().unwrap_or(""),
            range.bucket,
            range.from,
            range.to,
            provider.as_deref(),
        )?;
        Ok(Series {
            user_id: uid,
            provider,
            bucket: range.bucket,
            from: range.from,
            to: range.to,
            points,
        })
    })
    .await
}

/// Spend over the last `window_ms` (whole minutes, the current one
/// included) and when the balance and each budget run out at that rate.
pub(crate) async fn burn_down(
    s: &Services,
    user_id: &str,
    window_ms: Millis,
) -> Result<BurnDown, BrokerError> {
    let now = now_ms();
    let view = budgets::wallet(s, user_id).await?;
    let end = Bucket::Minute.ceil(now + 1);
    let start = end - window_ms;
    let store = s.store.clone();
    let uid = user_id.to_string();
    let per_provider = view.budget.per_provider.clone();
    let (recent, provider_spend) = blocking(move || {
        let recent = store.summary(&uid, Some((start, end)))?;
        // Spend at each provider with a budget, in each calendar window.
        let mut spend = BTreeMap::new();
        for w in Window::ALL {
            if per_provider.values().all(|l| l.get(w).is_none()) {
                continue;
            }
            let s = store.summary(&uid, Some((w.start(now), end)))?;
            spend.insert(w, s);
        }
        Ok((recent, spend))
    })
    .await?;
    let window_spent = recent.total_cost;
    let mut budgets = Vec::new();
    let project = |window: Window,
                   provider: Option<String>,
                   limit: Credits,
                   spent: Credits,
                   remaining: Credits,
                   rate_spent: Credits| {
        let resets_at = window.end(now);
        let at = runs_out_at(now, remaining, rate_spent, window_ms);
        Projection {
            window,
            provider,
            limit,
            spent,
            remaining,
            resets_at,
            rate_per_hour: hourly_rate(rate_spent, window_ms),
            runs_out_at: at,
            runs_out_before_reset: at.is_some_and(|t| t < resets_at),
        }
    };
    for w in &view.windows {
        if let (Some(limit), Some(remaining)) = (w.limit, w.remaining) {
            budgets.push(project(
                w.window,
                None,
                limit,
                w.spent + w.held,
                remaining,
                window_spent,
            ));
        }
    }
    for (provider, limits) in &view.budget.per_provider {
        for w in Window::ALL {
            let Some(limit) = limits.get(w) else { continue };
            let spent = provider_spend
                .get(&w)
                .and_then(|s| s.providers.get(provider))
                .map(|f| f.cost)
                .unwrap_or_default();
            let rate = recent
                .providers
                .get(provider)
                .map(|f| f.cost)
                .unwrap_or_default();
            let remaining = (limit - spent).max(Credits::ZERO);
            budgets.push(project(
                w,
                Some(provider.clone()),
                limit,
                spent,
                remaining,
                rate,
            ));
        }
    }
    Ok(BurnDown {
        user_id: user_id.to_string(),
        now,
        window_start: start,
        window_end: end,
        window_spent,
        rate_per_hour: hourly_rate(window_spent, window_ms),
        balance: view.balance,
        available: view.available,
        balance_runs_out_at: runs_out_at(now, view.available, window_spent, window_ms),
        budgets,
    })
}
