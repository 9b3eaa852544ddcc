//! Choosing a provider: filter the providers that can serve a request under
//! its constraints, then rank them by a strategy using live health figures.
//! Pure: the runtime passes the figures in.

use std::fmt::Write as _;

use serde::Serialize;

use crate::money::Credits;
use crate::provider::ProviderConfig;
use crate::records::ExperimentTag;
use crate::request::{AiRequest, Plan, RequestError};

// Defined in `choice`, below `config`, so the configuration needs nothing
// of routing; re-exported here, where callers have always found them.
pub use crate::choice::{Region, Strategy, Weights};

/// Live figures of one provider, read from its worker.
// `ProviderHealth` in the OpenAPI document, where `Health` is the answer of
// `GET /health`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ProviderHealth)]
pub struct Health {
    /// Smoothed latency of recent calls, in milliseconds.
    pub latency_ms: f64,
    /// Smoothed share of recent calls that succeeded, 0 to 1.
    pub success_rate: f64,
    /// False while the provider must not be used (its circuit is open).
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

/// What a caller allows: every set field narrows the candidates, and a
/// request none can serve within them is refused before anything is held.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    pub region: Option<Region>,
    /// Only these providers (empty: any).
    pub providers: Vec<String>,
    /// No candidate whose quote is above this.
    pub max_price: Option<Credits>,
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
    /// The A/B experiment's variant that chose the provider, if one did
    /// (set after ranking by the runtime; written into the record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentTag>,
    /// The id the request must take, when routing already made it (a
    /// per-request experiment draws its variant from it).
    #[serde(skip)]
    pub request_id: Option<String>,
}

/// Whether `p` answers to `model` (its own name, or one of its models).
pub fn serves(p: &ProviderConfig, model: &str) -> bool {
    p.name == model || p.models.iter().any(|m| m == model)
}

/// Ranks the providers able to serve a native request: its `provider`,
/// `region` and `max_price` fields are the constraints.
pub fn choose(
    req: &AiRequest,
    providers: &[(&ProviderConfig, Health)],
    strategy: Strategy,
    weights: &Weights,
) -> Result<Route, RequestError> {
    let constraints = Constraints {
        region: req.region,
        providers: req.provider.iter().cloned().collect(),
        max_price: req.max_price,
    };
    choose_with(
        &req.model,
        providers,
        strategy,
        weights,
        &constraints,
        |p| req.plan(p),
    )
}

/// Ranks the providers that serve `model`, fitting the request to each
/// with `plan`. Lower score ranks first; ties go by name, so equal figures
/// always give the same order. Providers whose circuit is open are left
/// out.
pub fn choose_with(
    model: &str,
    providers: &[(&ProviderConfig, Health)],
    strategy: Strategy,
    weights: &Weights,
    constraints: &Constraints,
    plan: impl Fn(&ProviderConfig) -> Result<Plan, RequestError>,
) -> Result<Route, RequestError> {
    let mut serving: Vec<&(&ProviderConfig, Health)> =
        providers.iter().filter(|(p, _)| serves(p, model)).collect();
    if serving.is_empty() {
        return Err(RequestError::UnknownModel(model.to_string()));
    }
    if !constraints.providers.is_empty() {
        serving.retain(|(p, _)| constraints.providers.contains(&p.name));
        if serving.is_empty() {
            return Err(RequestError::UnknownProvider(
                constraints.providers.join(","),
            ));
        }
    }
    if let Some(region) = constraints.region {
        serving.retain(|(p, _)| p.region == region);
        if serving.is_empty() {
            return Err(RequestError::NoProviderInRegion {
                model: model.to_string(),
                region: region.name().into(),
            });
        }
    }
    let mut offers = Vec::with_capacity(serving.len());
    let mut first_err = None;
    for (p, h) in serving {
        match plan(p) {
            Ok(plan) => offers.push((plan, *h, p.quality)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if offers.is_empty() {
        return Err(first_err.unwrap_or_else(|| RequestError::UnknownModel(model.to_string())));
    }
    if let Some(max) = constraints.max_price {
        let cheapest = offers.iter().map(|(p, _, _)| p.quote).min();
        offers.retain(|(p, _, _)| p.quote <= max);
        if let (true, Some(cheapest)) = (offers.is_empty(), cheapest) {
            return Err(RequestError::OverMaxPrice { max, cheapest });
        }
    }
    offers.retain(|(_, h, _)| h.available);
    if offers.is_empty() {
        return Err(RequestError::NoProviderAvailable(model.to_string()));
    }
    let max_quote = offers
        .iter()
        .map(|(p, _, _)| p.quote.0)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_lat = offers
        .iter()
        .map(|(_, h, _)| h.latency_ms)
        .fold(1.0_f64, f64::max);
    let w = weights;
    let mut ranked: Vec<Candidate> = offers
        .into_iter()
        .map(|(plan, h, quality)| {
            let cost = plan.quote.0 as f64 / max_quote;
            let lat = h.latency_ms / max_lat;
            let qual = 1.0 - f64::from(quality.min(100)) / 100.0;
            let unreliability = (1.0 - h.success_rate).clamp(0.0, 1.0);
            let score = match strategy {
                Strategy::Cost => cost,
                Strategy::Latency => lat,
                Strategy::Quality => qual,
                Strategy::Balanced => {
                    let total =
                        (w.cost + w.latency + w.quality + w.reliability).max(f64::MIN_POSITIVE);
                    (w.cost * cost
                        + w.latency * lat
                        + w.quality * qual
                        + w.reliability * unreliability)
                        / total
                }
            };
            Candidate { plan, score }
        })
        .collect();
    ranked.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then_with(|| a.plan.provider.cmp(&b.plan.provider))
    });
    let mut explanation = format!("strategy={}", strategy.name());
    if let Some(first) = ranked.first() {
        let _ = write!(explanation, "; chosen={}", first.plan.provider);
    }
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
        experiment: None,
        request_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Credits;
    use crate::provider::default_providers;

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
            max_price: None,
            strategy: None,
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
            choose(&req("chat"), &ps, s, &Weights::default())
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
            choose(&eu, &ps, Strategy::Quality, &Weights::default())
                .unwrap()
                .ranking
                .len(),
            1
        );
        let ru = AiRequest {
            region: Some(Region::Ru),
            ..req("chat")
        };
        assert!(matches!(
            choose(&ru, &ps, Strategy::Cost, &Weights::default()),
            Err(RequestError::NoProviderInRegion { .. })
        ));
        assert!(matches!(
            choose(&req("nope"), &ps, Strategy::Cost, &Weights::default()),
            Err(RequestError::UnknownModel(_))
        ));
        let pinned = AiRequest {
            provider: Some("a".into()),
            ..req("chat")
        };
        assert_eq!(
            choose(&pinned, &ps, Strategy::Cost, &Weights::default())
                .unwrap()
                .ranking[0]
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
            choose(&req("chat"), &down, Strategy::Quality, &Weights::default())
                .unwrap()
                .ranking[0]
                .plan
                .provider,
            "b"
        );
    }

    /// Three providers with fixed figures; each strategy's order is worked
    /// out by hand from the scoring rules.
    #[test]
    fn each_strategy_ranks_fixed_figures() {
        let base = default_providers().remove(0);
        let mk = |name: &str, per_token: i64, quality: u32, region: Region| {
            let mut p = base.clone();
            p.name = name.into();
            p.models = vec!["chat".into()];
            p.rates.per_output_token = Credits(per_token);
            p.quality = quality;
            p.region = region;
            p
        };
        // cheap: slow, poor, flaky. fast: mid price. good: dear, best quality.
        let cheap = mk("cheap", 1_000, 30, Region::Us);
        let fast = mk("fast", 2_000, 60, Region::Eu);
        let good = mk("good", 4_000, 95, Region::Us);
        let h = |lat: f64, ok: f64| Health {
            latency_ms: lat,
            success_rate: ok,
            available: true,
        };
        let ps = [
            (&cheap, h(400.0, 0.5)),
            (&fast, h(50.0, 1.0)),
            (&good, h(200.0, 1.0)),
        ];
        let order = |s, w: &Weights, c: &Constraints| {
            choose_with("chat", &ps, s, w, c, |p| req("chat").plan(p)).map(|r| {
                r.ranking
                    .iter()
                    .map(|c| c.plan.provider.clone())
                    .collect::<Vec<_>>()
            })
        };
        let none = Constraints::default();
        let w = Weights::default();
        assert_eq!(
            order(Strategy::Cost, &w, &none).unwrap(),
            ["cheap", "fast", "good"]
        );
        assert_eq!(
            order(Strategy::Latency, &w, &none).unwrap(),
            ["fast", "good", "cheap"]
        );
        assert_eq!(
            order(Strategy::Quality, &w, &none).unwrap(),
            ["good", "fast", "cheap"]
        );
        // Balanced, default weights: cheap .4*.25+.3*1+.2*.7+.1*.5 = .59,
        // fast .4*.5+.3*.125+.2*.4 = .3175, good .4+.3*.5+.2*.05 = .56.
        assert_eq!(
            order(Strategy::Balanced, &w, &none).unwrap(),
            ["fast", "good", "cheap"]
        );
        let route = choose_with("chat", &ps, Strategy::Balanced, &w, &none, |p| {
            req("chat").plan(p)
        })
        .unwrap();
        assert!((route.ranking[0].score - 0.3175).abs() < 1e-9, "{route:?}");
        assert!(
            route
                .explanation
                .starts_with("strategy=balanced; chosen=fast; fast quote="),
            "{}",
            route.explanation
        );
        // Weights change the answer: all on cost is the cost order.
        let cost_only = Weights {
            cost: 1.0,
            latency: 0.0,
            quality: 0.0,
            reliability: 0.0,
        };
        assert_eq!(
            order(Strategy::Balanced, &cost_only, &none).unwrap(),
            ["cheap", "fast", "good"]
        );
        // Region and max_price narrow the field.
        let us = Constraints {
            region: Some(Region::Us),
            ..Default::default()
        };
        assert_eq!(
            order(Strategy::Latency, &w, &us).unwrap(),
            ["good", "cheap"]
        );
        // req("chat") quotes 16 default output tokens: cheap 0.016, fast 0.032, good 0.064.
        let cap = Constraints {
            max_price: Some(Credits(32_000)),
            ..Default::default()
        };
        assert_eq!(
            order(Strategy::Quality, &w, &cap).unwrap(),
            ["fast", "cheap"]
        );
        let too_low = Constraints {
            max_price: Some(Credits(15_999)),
            ..Default::default()
        };
        assert_eq!(
            order(Strategy::Cost, &w, &too_low),
            Err(RequestError::OverMaxPrice {
                max: Credits(15_999),
                cheapest: Credits(16_000)
            })
        );
        let ru = Constraints {
            region: Some(Region::Ru),
            ..Default::default()
        };
        assert!(matches!(
            order(Strategy::Cost, &w, &ru),
            Err(RequestError::NoProviderInRegion { .. })
        ));
        let only = Constraints {
            providers: vec!["good".into(), "cheap".into()],
            ..Default::default()
        };
        assert_eq!(order(Strategy::Cost, &w, &only).unwrap(), ["cheap", "good"]);
        // An open circuit takes a provider out; all open is its own refusal.
        let open = Health {
            available: false,
            ..h(1.0, 1.0)
        };
        let ps2 = [(&cheap, open), (&fast, h(50.0, 1.0))];
        let r = choose_with("chat", &ps2, Strategy::Cost, &w, &none, |p| {
            req("chat").plan(p)
        })
        .unwrap();
        assert_eq!(r.ranking.len(), 1);
        assert_eq!(r.ranking[0].plan.provider, "fast");
        let ps3 = [(&cheap, open)];
        assert_eq!(
            choose_with("chat", &ps3, Strategy::Cost, &w, &none, |p| req("chat")
                .plan(p)),
            Err(RequestError::NoProviderAvailable("chat".into()))
        );
    }
}
