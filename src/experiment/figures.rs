//! An experiment's figures per variant, computed from the request records
//! that carry its tag and the ratings sent for them, and each non-control
//! variant compared with the control (the first) on four metrics, each
//! with its test from `stats` and a verdict in words.
//!
//! Definitions (docs/experiments.md says the same):
//! - requests: every record of the variant, failed ones included;
//! - success rate: succeeded / requests;
//! - latency: of the succeeded requests, p50 and p95 by nearest rank
//!   (the value at 1-based position ⌈q·n⌉ of the sorted latencies);
//! - cost per request: total charged / requests, in micro-credits rounded
//!   down (a failed request is charged nothing, and counts);
//! - a rating is positive when its score is 4 or 5 (of 1 to 5).

use serde::Serialize;

use crate::money::Credits;
use crate::records::{RequestRecord, RequestStatus};
use crate::stats;

use super::Experiment;

/// Below this p-value a difference is called significant.
pub const ALPHA: f64 = 0.05;
/// Lowest score of a rating.
pub const MIN_SCORE: u8 = 1;
/// Highest score of a rating.
pub const MAX_SCORE: u8 = 5;
/// Scores from this one up are positive.
pub const POSITIVE_FROM: u8 = 4;

/// One variant's figures.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VariantFigures {
    pub name: String,
    pub provider: String,
    pub weight: u32,
    pub requests: u64,
    pub succeeded: u64,
    /// succeeded / requests (0 with no requests).
    pub success_rate: f64,
    /// Of the succeeded requests; absent with none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<u64>,
    /// Everything charged for the variant's requests.
    pub cost: Credits,
    /// `cost` / `requests`, rounded down to a micro-credit.
    pub cost_per_request: Credits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub ratings: u64,
    /// Ratings of 4 or 5.
    pub positive_ratings: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating_mean: Option<f64>,
}

/// What is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentMetric)]
pub enum Metric {
    SuccessRate,
    Latency,
    CostPerRequest,
    PositiveRatings,
}

/// One variant against the control on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = VariantComparison)]
pub struct Comparison {
    pub metric: Metric,
    pub control: String,
    pub variant: String,
    /// Two-sided; absent when the test is undefined (too few requests,
    /// no variation at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// p below 0.05.
    pub significant: bool,
    /// In words, e.g. "B is cheaper than A by 31% ± 4% (p = 0.003)".
    pub verdict: String,
}

/// Per-variant figures and the comparisons with the control.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ExperimentFigures)]
pub struct Figures {
    pub variants: Vec<VariantFigures>,
    pub comparisons: Vec<Comparison>,
}

/// What one variant's records and ratings add up to, before the tests.
#[derive(Clone, Debug, Default)]
struct Tally {
    requests: u64,
    succeeded: u64,
    latencies: Vec<u64>,
    costs: Vec<i64>,
    cost: i64,
    input_tokens: u64,
    output_tokens: u64,
    scores: Vec<u8>,
}

/// Accumulates an experiment's records and ratings.
#[derive(Clone, Debug)]
pub struct Tallies {
    id: String,
    names: Vec<String>,
    tallies: Vec<Tally>,
}

impl Tallies {
    pub fn new(e: &Experiment) -> Tallies {
        Tallies {
            id: e.id.clone(),
            names: e.variants.iter().map(|v| v.name.clone()).collect(),
            tallies: vec![Tally::default(); e.variants.len()],
        }
    }

    fn slot(&mut self, variant: &str) -> Option<&mut Tally> {
        let i = self.names.iter().position(|n| n == variant)?;
        self.tallies.get_mut(i)
    }

    /// Counts a record if it carries this experiment's tag; true if so.
    pub fn record(&mut self, r: &RequestRecord) -> bool {
        let Some(tag) = r.experiment.as_ref().filter(|t| t.id == self.id) else {
            return false;
        };
        let Some(t) = self.slot(&tag.variant) else {
            return false;
        };
        t.requests += 1;
        t.cost = t.cost.saturating_add(r.cost.0);
        t.costs.push(r.cost.0);
        t.input_tokens += r.usage.input_tokens;
        t.output_tokens += r.usage.output_tokens;
        if r.status == RequestStatus::Succeeded {
            t.succeeded += 1;
            t.latencies.push(r.latency_ms);
        }
        true
    }

    /// Counts a rating of a request of `variant`.
    pub fn rating(&mut self, variant: &str, score: u8) {
        if let Some(t) = self.slot(variant) {
            t.scores.push(score);
        }
    }

    /// The figures of every variant and the comparisons.
    pub fn figures(mut self, e: &Experiment) -> Figures {
        for t in &mut self.tallies {
            t.latencies.sort_unstable();
        }
        let variants = e
            .variants
            .iter()
            .zip(&self.tallies)
            .map(|(v, t)| VariantFigures {
                name: v.name.clone(),
                provider: v.provider.clone(),
                weight: v.weight,
                requests: t.requests,
                succeeded: t.succeeded,
                success_rate: ratio(t.succeeded, t.requests),
                latency_p50_ms: nearest_rank(&t.latencies, 0.50),
                latency_p95_ms: nearest_rank(&t.latencies, 0.95),
                cost: Credits(t.cost),
                cost_per_request: Credits(match t.requests {
                    0 => 0,
                    n => t.cost / i64::try_from(n).unwrap_or(i64::MAX),
                }),
                input_tokens: t.input_tokens,
                output_tokens: t.output_tokens,
                ratings: t.scores.len() as u64,
                positive_ratings: positives(&t.scores),
                rating_mean: (!t.scores.is_empty()).then(|| {
                    t.scores.iter().map(|s| f64::from(*s)).sum::<f64>() / t.scores.len() as f64
                }),
            })
            .collect::<Vec<_>>();
        let mut comparisons = Vec::new();
        if let (Some(control), Some(c)) = (variants.first(), self.tallies.first()) {
            for (v, t) in variants.iter().zip(&self.tallies).skip(1) {
                comparisons.extend(compare(control, c, v, t));
            }
        }
        Figures {
            variants,
            comparisons,
        }
    }
}

fn ratio(x: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { x as f64 / n as f64 }
}

fn positives(scores: &[u8]) -> u64 {
    scores.iter().filter(|s| **s >= POSITIVE_FROM).count() as u64
}

/// The value at 1-based position ⌈q·n⌉ of `sorted`.
pub fn nearest_rank(sorted: &[u64], q: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// "p = 0.031", or "p < 0.001".
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        let s = format!("{p:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("p = {s}")
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn compare(
    control: &VariantFigures,
    c: &Tally,
    variant: &VariantFigures,
    t: &Tally,
) -> [Comparison; 4] {
    let (a, b) = (control.name.as_str(), variant.name.as_str());
    let make = |metric, test: Option<f64>, verdict: String| Comparison {
        metric,
        control: a.to_string(),
        variant: b.to_string(),
        p: test,
        significant: test.is_some_and(|p| p < ALPHA),
        verdict,
    };
    let undecided = |what: &str, p: Option<f64>| match p {
        Some(p) => format!("no significant difference in {what} ({})", p_text(p)),
        None => format!("not enough data to compare {what}"),
    };

    let success = stats::two_proportions(c.succeeded, c.requests, t.succeeded, t.requests);
    let success_p = success.map(|s| s.p);
    let success_text = match success {
        Some(s) if s.p < ALPHA => format!(
            "{b} succeeds {} often than {a}: {} vs {} ({})",
            if s.statistic > 0.0 { "more" } else { "less" },
            percent(variant.success_rate),
            percent(control.success_rate),
            p_text(s.p)
        ),
        _ => undecided("success rate", success_p),
    };

    let as_f64 = |v: &[u64]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
    let latency = stats::mann_whitney(&as_f64(&c.latencies), &as_f64(&t.latencies));
    let latency_p = latency.map(|s| s.p);
    let latency_text = match (latency, control.latency_p50_ms, variant.latency_p50_ms) {
        (Some(s), Some(ma), Some(mb)) if s.p < ALPHA => format!(
            "{b} is {} than {a}: median {mb} ms vs {ma} ms ({})",
            if s.statistic > 0.0 {
                "slower"
            } else {
                "faster"
            },
            p_text(s.p)
        ),
        _ => undecided("latency", latency_p),
    };

    let costs = |v: &[i64]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
    let cost = stats::welch(&costs(&c.costs), &costs(&t.costs));
    let cost_p = cost.map(|d| d.test.p);
    let cost_text = match cost {
        Some(d) if d.test.p < ALPHA => {
            let mean_a = c.cost as f64 / c.requests.max(1) as f64;
            let word = if d.difference < 0.0 {
                "cheaper"
            } else {
                "more expensive"
            };
            if mean_a > 0.0 {
                format!(
                    "{b} is {word} than {a} by {:.0}% ± {:.0}% ({})",
                    (d.difference / mean_a * 100.0).abs(),
                    d.margin / mean_a * 100.0,
                    p_text(d.test.p)
                )
            } else {
                format!(
                    "{b} is {word} than {a} by {} ± {} credits per request ({})",
                    Credits(d.difference.abs().round() as i64),
                    Credits(d.margin.round() as i64),
                    p_text(d.test.p)
                )
            }
        }
        _ => undecided("cost per request", cost_p),
    };

    let (pa, pb) = (positives(&c.scores), positives(&t.scores));
    let (na, nb) = (c.scores.len() as u64, t.scores.len() as u64);
    let rated = stats::two_proportions(pa, na, pb, nb);
    let rated_p = rated.map(|s| s.p);
    let rated_text = match rated {
        Some(s) if s.p < ALPHA => format!(
            "{b} is rated positive {} often than {a}: {} vs {} ({})",
            if s.statistic > 0.0 { "more" } else { "less" },
            percent(ratio(pb, nb)),
            percent(ratio(pa, na)),
            p_text(s.p)
        ),
        _ => undecided("positive ratings", rated_p),
    };

    [
        make(Metric::SuccessRate, success_p, success_text),
        make(Metric::Latency, latency_p, latency_text),
        make(Metric::CostPerRequest, cost_p, cost_text),
        make(Metric::PositiveRatings, rated_p, rated_text),
    ]
}
