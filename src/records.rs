//! What is stored about each request, and the hourly rollups analytics read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::pricing::{Modality, Usage};
use crate::time::Millis;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Succeeded,
    Failed,
    /// The broker stopped while the request was in flight; its hold was
    /// released on the next start.
    Interrupted,
}

/// One request as history shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub user_id: String,
    pub model: String,
    pub modality: Modality,
    pub provider: String,
    pub status: RequestStatus,
    /// The first characters of the prompt, for people reading history.
    pub prompt_preview: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub usage: Usage,
    pub quote: Credits,
    pub cost: Credits,
    /// Cost beyond the hold that was not charged.
    pub shortfall: Credits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why this provider: the routing explanation.
    pub route: String,
    pub created_at: Millis,
    pub latency_ms: u64,
    /// Every upstream try, in order: retries and fallbacks included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// One try of one provider for a request. A failed try is never charged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// Upper bounds (ms) of the latency histogram kept in rollups.
pub const LATENCY_BOUNDS_MS: [u64; 10] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000];

/// Sums over the requests of one user at one provider in one hour. The key
/// `user_id` "" holds the sums over every user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    pub count: u64,
    pub successes: u64,
    pub cost: Credits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms_sum: u64,
    /// Counts per bucket of `LATENCY_BOUNDS_MS`, and one more for slower.
    pub latency_buckets: Vec<u64>,
}

impl Rollup {
    /// The contribution of one finished request.
    pub fn of(r: &RequestRecord) -> Rollup {
        let mut buckets = vec![0; LATENCY_BOUNDS_MS.len() + 1];
        let i = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| r.latency_ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        buckets[i] = 1;
        Rollup {
            count: 1,
            successes: u64::from(r.status == RequestStatus::Succeeded),
            cost: r.cost,
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
            latency_ms_sum: r.latency_ms,
            latency_buckets: buckets,
        }
    }

    pub fn merge(&mut self, o: &Rollup) {
        self.count += o.count;
        self.successes += o.successes;
        self.cost += o.cost;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.latency_ms_sum += o.latency_ms_sum;
        if self.latency_buckets.len() < o.latency_buckets.len() {
            self.latency_buckets.resize(o.latency_buckets.len(), 0);
        }
        for (a, b) in self.latency_buckets.iter_mut().zip(&o.latency_buckets) {
            *a += b;
        }
    }
}

/// Figures of one provider, as analytics reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProviderFigures {
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub success_rate: f64,
    pub cost: Credits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub mean_latency_ms: f64,
}

/// Totals and per-provider figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total_requests: u64,
    pub total_successes: u64,
    pub total_cost: Credits,
    pub providers: BTreeMap<String, ProviderFigures>,
}

/// Folds rollups keyed by provider into a summary.
pub fn summarize<'a>(rollups: impl IntoIterator<Item = (&'a str, &'a Rollup)>) -> Summary {
    let mut per: BTreeMap<String, Rollup> = BTreeMap::new();
    for (provider, r) in rollups {
        per.entry(provider.to_string()).or_default().merge(r);
    }
    let mut s = Summary::default();
    for (name, r) in per {
        s.total_requests += r.count;
        s.total_successes += r.successes;
        s.total_cost += r.cost;
        let rate = |n: u64| {
            if r.count == 0 {
                0.0
            } else {
                n as f64 / r.count as f64
            }
        };
        s.providers.insert(
            name,
            ProviderFigures {
                requests: r.count,
                successes: r.successes,
                failures: r.count - r.successes,
                success_rate: rate(r.successes),
                cost: r.cost,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                mean_latency_ms: rate(r.latency_ms_sum),
            },
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(provider: &str, ok: bool, cost: i64, ms: u64) -> RequestRecord {
        RequestRecord {
            id: "r".into(),
            user_id: "u".into(),
            model: provider.into(),
            modality: Modality::Text,
            provider: provider.into(),
            status: if ok {
                RequestStatus::Succeeded
            } else {
                RequestStatus::Failed
            },
            prompt_preview: String::new(),
            response: None,
            usage: Usage {
                input_tokens: 1,
                output_tokens: 2,
                ..Usage::default()
            },
            quote: Credits(cost),
            cost: Credits(cost),
            shortfall: Credits::ZERO,
            error: None,
            route: String::new(),
            created_at: 0,
            latency_ms: ms,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn summary_adds_up() {
        let rs = [
            Rollup::of(&rec("a", true, 5, 3)),
            Rollup::of(&rec("a", false, 0, 7)),
            Rollup::of(&rec("b", true, 9, 20_000)),
        ];
        let s = summarize([("a", &rs[0]), ("a", &rs[1]), ("b", &rs[2])]);
        assert_eq!(s.total_requests, 3);
        assert_eq!(s.total_successes, 2);
        assert_eq!(s.total_cost, Credits(14));
        let a = &s.providers["a"];
        assert_eq!((a.requests, a.successes, a.failures), (2, 1, 1));
        assert_eq!(a.success_rate, 0.5);
        assert_eq!(a.mean_latency_ms, 5.0);
        assert_eq!(rs[2].latency_buckets[LATENCY_BOUNDS_MS.len()], 1);
    }
}
