//! Figures read from rollups: totals, per provider, dense series and the
//! burn-down of a budget.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::money::Credits;
use crate::time::{MS_PER_HOUR, Millis};

use super::bucket::Bucket;
use super::rollup::Rollup;

/// Figures over a set of requests, as the API reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub success_rate: f64,
    pub cost: Credits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub mean_latency_ms: f64,
    /// Estimated from fixed log-spaced histogram buckets; null with no
    /// requests.
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

impl Figures {
    pub fn of(r: &Rollup) -> Figures {
        let ratio = |n: u64| {
            if r.count == 0 {
                0.0
            } else {
                n as f64 / r.count as f64
            }
        };
        Figures {
            requests: r.count,
            successes: r.successes,
            failures: r.count.saturating_sub(r.successes),
            success_rate: ratio(r.successes),
            cost: r.cost,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            mean_latency_ms: ratio(r.latency_ms_sum),
            latency_p50_ms: r.latency_quantile(500),
            latency_p95_ms: r.latency_quantile(950),
            latency_p99_ms: r.latency_quantile(990),
        }
    }
}

/// Totals and per-provider figures. The flat `total_*` fields are kept for
/// clients of the first version of `GET /api/analytics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub total_requests: u64,
    pub total_successes: u64,
    pub total_cost: Credits,
    pub success_rate: f64,
    pub totals: Figures,
    /// Figures by provider name.
    pub providers: BTreeMap<String, Figures>,
}

/// Folds rollups keyed by provider into a summary.
pub fn summarize<'a>(rollups: impl IntoIterator<Item = (&'a str, &'a Rollup)>) -> Summary {
    let mut per: BTreeMap<&str, Rollup> = BTreeMap::new();
    let mut all = Rollup::default();
    for (provider, r) in rollups {
        per.entry(provider).or_default().merge(r);
        all.merge(r);
    }
    let totals = Figures::of(&all);
    Summary {
        total_requests: totals.requests,
        total_successes: totals.successes,
        total_cost: totals.cost,
        success_rate: totals.success_rate,
        totals,
        providers: per
            .into_iter()
            .map(|(p, r)| (p.to_string(), Figures::of(&r)))
            .collect(),
    }
}

/// One point of a time series: a bucket's start and its figures.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// The bucket's start, milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub start: Millis,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Builds a dense series from rows read one at a time, in any order:
/// a slot per bucket, filled as rows arrive, so a range read needs no
/// intermediate collection.
pub struct SeriesBuilder {
    bucket: Bucket,
    from: Millis,
    slots: Vec<Option<Rollup>>,
}

impl SeriesBuilder {
    /// `from` and `to` on bucket boundaries.
    pub fn new(bucket: Bucket, from: Millis, to: Millis) -> SeriesBuilder {
        let n = usize::try_from((to - from).max(0) / bucket.ms()).unwrap_or(0);
        SeriesBuilder {
            bucket,
            from,
            slots: vec![None; n],
        }
    }

    /// The accumulator of the bucket holding `start`, if it is in range.
    pub fn slot(&mut self, start: Millis) -> Option<&mut Rollup> {
        if start < self.from {
            return None;
        }
        let i = usize::try_from((start - self.from) / self.bucket.ms()).ok()?;
        Some(self.slots.get_mut(i)?.get_or_insert_with(Rollup::default))
    }

    pub fn finish(self) -> Vec<Point> {
        let empty = Figures::of(&Rollup::default());
        let (from, ms) = (self.from, self.bucket.ms());
        self.slots
            .into_iter()
            .enumerate()
            .map(|(i, r)| Point {
                start: from + i as Millis * ms,
                figures: r.map(|r| Figures::of(&r)).unwrap_or_else(|| empty.clone()),
            })
            .collect()
    }
}

/// A dense series over `[from, to)` in buckets of `b` (both bounds on
/// bucket boundaries), empty buckets as zeros. `rows` are (bucket start,
/// rollup); rows outside the range are ignored.
pub fn series<'a>(
    b: Bucket,
    from: Millis,
    to: Millis,
    rows: impl IntoIterator<Item = (Millis, &'a Rollup)>,
) -> Vec<Point> {
    let mut by_start: BTreeMap<Millis, Rollup> = BTreeMap::new();
    for (start, r) in rows {
        if start >= from && start < to {
            by_start.entry(b.floor(start)).or_default().merge(r);
        }
    }
    let empty = Rollup::default();
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        out.push(Point {
            start: at,
            figures: Figures::of(by_start.get(&at).unwrap_or(&empty)),
        });
        at += b.ms();
    }
    out
}

/// When `remaining` runs out if spending goes on as `spent` per
/// `window_ms`: `None` if nothing was spent (it never runs out at that
/// rate), `now` if nothing remains. Integer arithmetic, rounded up.
pub fn runs_out_at(
    now: Millis,
    remaining: Credits,
    spent: Credits,
    window_ms: Millis,
) -> Option<Millis> {
    if spent <= Credits::ZERO || window_ms <= 0 {
        return None;
    }
    if remaining <= Credits::ZERO {
        return Some(now);
    }
    // Both positive here: round up by hand (signed `div_ceil` is unstable).
    let (num, den) = (
        i128::from(remaining.0) * i128::from(window_ms),
        i128::from(spent.0),
    );
    let ms = (num + den - 1) / den;
    Some(i64::try_from(i128::from(now) + ms).unwrap_or(i64::MAX))
}

/// Spend per hour at the rate of `spent` per `window_ms`, rounded down to
/// a micro-credit.
pub fn hourly_rate(spent: Credits, window_ms: Millis) -> Credits {
    if window_ms <= 0 {
        return Credits::ZERO;
    }
    let v = i128::from(spent.0) * i128::from(MS_PER_HOUR) / i128::from(window_ms);
    Credits(i64::try_from(v).unwrap_or(i64::MAX))
}
