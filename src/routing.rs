//! Choosing a provider: filter the providers that can serve a request under
//! its constraints, then rank them by a strategy using live health figures.
//! Pure: the runtime passes the figures in.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::ProviderConfig;
use crate::request::{AiRequest, Plan, RequestError};

/// Where a provider runs; requests may demand one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Region {
    Us,
    Eu,
    Ru,
}

impl Region {
    pub fn name(self) -> &'static str {
        match self {
            Region::Us => "US",
            Region::Eu => "EU",
            Region::Ru => "RU",
        }
    }
}

/// How candidates are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Cost,
    Latency,
    Quality,
    Balanced,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Cost => "cost",
            Strategy::Latency => "latency",
            Strategy::Quality => "quality",
            Strategy::Balanced => "balanced",
        }
    }
}

/// Live figures of one provider, read from its worker.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Health {
    /// Smoothed latency of recent calls, in milliseconds.
    pub latency_ms: f64,
    /// Smoothed share of recent calls that succeeded, 0 to 1.
    pub success_rate: f64,
    /// False while the provider must not be used.
    pub available: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            latency_ms: 0.0,
            success_rate: 1.0,
            available: true,
        }
    }
}

/// One ranked candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub plan: Plan,
    pub score: f64,
}

/// The ranking and a one-line explanation for humans and the route header.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Route {
    pub strategy: Strategy,
    pub ranking: Vec<Candidate>,
    pub explanation: String,
}

fn serves(p: &ProviderConfig, model: &str) -> bool {
    p.name == model || p.models.iter().any(|m| m == model)
}

/// Ranks the providers able to serve `req`. `providers` pairs each config
/// with its live health. Lower score ranks first.
pub fn choose(
    req: &AiRequest,
    providers: &[(&ProviderConfig, Health)],
    strategy: Strategy,
) -> Result<Route, RequestError> {
    let mut serving: Vec<&(&ProviderConfig, Health)> = providers
        .iter()
        .filter(|(p, _)| serves(p, &req.model))
        .collect();
    if serving.is_empty() {
        return Err(RequestError::UnknownModel(req.model.clone()));
    }
    if let Some(name) = &req.provider {
        serving.retain(|(p, _)| &p.name == name);
        if serving.is_empty() {
            return Err(RequestError::UnknownProvider(name.clone()));
        }
    }
    if let Some(region) = req.region {
        serving.retain(|(p, _)| p.region == region);
        if serving.is_empty() {
            return Err(RequestError::NoProviderInRegion {
                model: req.model.clone(),
                region: region.name().into(),
            });
        }
    }
    let mut ranking = Vec::with_capacity(serving.len());
    let mut first_err = None;
    for (p, h) in serving {
        match req.plan(p) {
            Ok(plan) => ranking.push((plan, *h, p.quality)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if ranking.is_empty() {
        return Err(first_err.unwrap_or_else(|| RequestError::UnknownModel(req.model.clone())));
    }
    let max_quote = ranking
        .iter()
        .map(|(p, _, _)| p.quote.0)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_lat = ranking
        .iter()
        .map(|(_, h, _)| h.latency_ms)
        .fold(1.0_f64, f64::max);
    let mut ranked: Vec<Candidate> = ranking
        .into_iter()
        .map(|(plan, h, quality)| {
            let cost = plan.quote.0 as f64 / max_quote;
            let lat = h.latency_ms / max_lat;
            let qual = 1.0 - f64::from(quality) / 100.0;
            let unreliability = 1.0 - h.success_rate;
            let mut score = match strategy {
                Strategy::Cost => cost,
                Strategy::Latency => lat,
                Strategy::Quality => qual,
                Strategy::Balanced => 0.4 * cost + 0.3 * lat + 0.2 * qual + 0.1 * unreliability,
            };
            if !h.available {
                score += 1_000.0;
            }
            Candidate { plan, score }
        })
        .collect();
    ranked.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then_with(|| a.plan.provider.cmp(&b.plan.provider))
    });
    let mut explanation = format!("strategy={}", strategy.name());
    for c in &ranked {
        let _ = write!(
            explanation,
            "; {} quote={} score={:.3}",
            c.plan.provider, c.plan.quote, c.score
        );
    }
    Ok(Route {
        strategy,
        ranking: ranked,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_providers;
    use crate::money::Credits;

    fn req(model: &str) -> AiRequest {
        AiRequest {
            model: model.into(),
            prompt: "hi there".into(),
            max_tokens: None,
            size: None,
            n: None,
            seconds: None,
            provider: None,
            region: None,
        }
    }

    #[test]
    fn ranks_by_strategy() {
        let mut a = default_providers().remove(0);
        a.name = "a".into();
        a.models = vec!["chat".into()];
        a.quality = 90;
        let mut b = a.clone();
        b.name = "b".into();
        b.quality = 40;
        b.rates.per_output_token = Credits(10);
        b.region = Region::Eu;
        let fast = Health {
            latency_ms: 5.0,
            ..Health::default()
        };
        let slow = Health {
            latency_ms: 50.0,
            ..Health::default()
        };
        let ps = [(&a, slow), (&b, fast)];
        let order = |s| {
            choose(&req("chat"), &ps, s)
                .unwrap()
                .ranking
                .iter()
                .map(|c| c.plan.provider.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(Strategy::Cost), ["b", "a"]);
        assert_eq!(order(Strategy::Latency), ["b", "a"]);
        assert_eq!(order(Strategy::Quality), ["a", "b"]);
        let eu = AiRequest {
            region: Some(Region::Eu),
            ..req("chat")
        };
        assert_eq!(
            choose(&eu, &ps, Strategy::Quality).unwrap().ranking.len(),
            1
        );
        let ru = AiRequest {
            region: Some(Region::Ru),
            ..req("chat")
        };
        assert!(matches!(
            choose(&ru, &ps, Strategy::Cost),
            Err(RequestError::NoProviderInRegion { .. })
        ));
        assert!(matches!(
            choose(&req("nope"), &ps, Strategy::Cost),
            Err(RequestError::UnknownModel(_))
        ));
        let pinned = AiRequest {
            provider: Some("a".into()),
            ..req("chat")
        };
        assert_eq!(
            choose(&pinned, &ps, Strategy::Cost).unwrap().ranking[0]
                .plan
                .provider,
            "a"
        );
        let down = [
            (
                &a,
                Health {
                    available: false,
                    ..fast
                },
            ),
            (&b, fast),
        ];
        assert_eq!(
            choose(&req("chat"), &down, Strategy::Quality)
                .unwrap()
                .ranking[0]
                .plan
                .provider,
            "b"
        );
    }
}
