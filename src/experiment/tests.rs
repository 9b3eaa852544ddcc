use super::figures::{Tallies, nearest_rank, p_text};
use super::*;
use crate::money::Credits;
use crate::pricing::{Modality, Usage};
use crate::records::{RequestRecord, RequestStatus};

fn providers() -> Vec<ProviderConfig> {
    let base = crate::config::default_providers()[0].clone();
    ["a", "b", "other"]
        .iter()
        .map(|n| {
            let mut p = base.clone();
            p.name = n.to_string();
            p.models = if *n == "other" {
                vec!["elsewhere".into()]
            } else {
                vec!["m".into()]
            };
            p
        })
        .collect()
}

fn variant(name: &str, provider: &str, weight: u32) -> Variant {
    Variant {
        name: name.into(),
        provider: provider.into(),
        weight,
        overrides: Overrides::default(),
    }
}

fn spec(variants: Vec<Variant>) -> ExperimentSpec {
    ExperimentSpec {
        model: "m".into(),
        variants,
        sticky: Sticky::User,
        note: None,
    }
}

fn experiment(weights: [u32; 2]) -> Experiment {
    Experiment {
        id: "exp_test".into(),
        model: "m".into(),
        variants: vec![variant("A", "a", weights[0]), variant("B", "b", weights[1])],
        sticky: Sticky::Request,
        note: None,
        state: ExperimentState::Running,
        created_at: 0,
        ended_at: None,
        promoted: None,
        created_by: "admin".into(),
    }
}

#[test]
fn validation_names_what_is_wrong() {
    let p = providers();
    assert!(
        spec(vec![variant("A", "a", 7), variant("B", "b", 3)])
            .validate(&p)
            .is_ok()
    );
    let err = |s: ExperimentSpec| s.validate(&p).unwrap_err().0;
    assert!(err(spec(vec![variant("A", "a", 0), variant("B", "b", 0)])).contains("more than 0"));
    assert!(
        err(spec(vec![variant("A", "a", 1), variant("B", "nope", 1)])).contains("unknown provider")
    );
    assert!(
        err(spec(vec![variant("A", "a", 1), variant("B", "other", 1)])).contains("does not serve")
    );
    assert!(err(spec(vec![variant("A", "a", 1), variant("A", "b", 1)])).contains("two variants"));
    assert!(err(spec(vec![variant("A", "a", 1)])).contains("2 to 8"));
    assert!(err(spec(vec![variant("A b", "a", 1), variant("B", "b", 1)])).contains("letters"));
    let mut hot = variant("B", "b", 1);
    hot.overrides.temperature = Some(2.5);
    assert!(err(spec(vec![variant("A", "a", 1), hot])).contains("temperature"));
    let mut s = spec(vec![variant("A", "a", 1), variant("B", "b", 1)]);
    s.model = "unknown".into();
    assert!(err(s).contains("no provider serves"));
}

#[test]
fn assignment_is_stable_and_follows_the_weights() {
    let e = experiment([70, 30]);
    let first = assign(&e, "user-1").unwrap().name.clone();
    for _ in 0..10 {
        assert_eq!(assign(&e, "user-1").unwrap().name, first);
    }
    let a = (0..10_000)
        .filter(|i| assign(&e, &format!("req_{i:016x}")).unwrap().name == "A")
        .count();
    // 7,000 expected; the standard deviation is about 46.
    assert!((6_850..=7_150).contains(&a), "{a}");
    let all_b = experiment([0, 5]);
    assert!((0..100).all(|i| assign(&all_b, &i.to_string()).unwrap().name == "B"));
    assert!(assign(&experiment([0, 0]), "x").is_none());
}

fn record(variant: &str, ok: bool, latency_ms: u64, cost: i64) -> RequestRecord {
    RequestRecord {
        id: format!("req_{variant}_{latency_ms}"),
        user_id: "u".into(),
        model: "m".into(),
        modality: Modality::Text,
        provider: variant.to_lowercase(),
        status: if ok {
            RequestStatus::Succeeded
        } else {
            RequestStatus::Failed
        },
        prompt_preview: String::new(),
        response: None,
        usage: Usage {
            input_tokens: 3,
            output_tokens: 5,
            ..Usage::default()
        },
        quote: Credits(cost),
        cost: Credits(if ok { cost } else { 0 }),
        shortfall: Credits::ZERO,
        error: None,
        route: String::new(),
        created_at: 0,
        latency_ms,
        attempts: Vec::new(),
        usage_anomaly: false,
        member: None,
        cached: false,
        key_id: None,
        experiment: Some(ExperimentTag {
            id: "exp_test".into(),
            variant: variant.into(),
        }),
    }
}

#[test]
fn figures_and_verdicts() {
    let e = experiment([1, 1]);
    let mut t = Tallies::new(&e);
    for i in 0..100 {
        assert!(t.record(&record("A", i % 10 != 0, 100 + i, 2_000)));
        assert!(t.record(&record("B", true, 50 + i, 1_000)));
    }
    let mut other = record("A", true, 1, 1);
    other.experiment = None;
    assert!(!t.record(&other));
    for s in [5, 4, 2, 1] {
        t.rating("A", s);
    }
    t.rating("B", 5);
    let f = t.figures(&e);
    let (a, b) = (&f.variants[0], &f.variants[1]);
    assert_eq!((a.requests, a.succeeded, b.succeeded), (100, 90, 100));
    assert_eq!(a.cost, Credits(180_000));
    assert_eq!(a.cost_per_request, Credits(1_800));
    assert_eq!((a.input_tokens, a.output_tokens), (300, 500));
    assert_eq!(
        (a.ratings, a.positive_ratings, a.rating_mean),
        (4, 2, Some(3.0))
    );
    // B: latencies 50 to 149; ranks 50 and 95. The cost interval: scipy
    // 1.17.1 `ttest_ind(b, a, equal_var=False).confidence_interval()` is
    // (-919.65, -680.35): 800 ± 119.65 of A's 1,800, 44% ± 6.6%.
    assert_eq!(b.latency_p50_ms, Some(99));
    assert_eq!(b.latency_p95_ms, Some(144));
    let verdict = |m: figures::Metric| {
        f.comparisons
            .iter()
            .find(|c| c.metric == m)
            .unwrap()
            .verdict
            .clone()
    };
    assert_eq!(
        verdict(figures::Metric::CostPerRequest),
        "B is cheaper than A by 44% ± 7% (p < 0.001)"
    );
    assert!(verdict(figures::Metric::Latency).starts_with("B is faster than A: median 99 ms"));
    assert!(
        verdict(figures::Metric::SuccessRate)
            .starts_with("B succeeds more often than A: 100.0% vs 90.0%")
    );
    assert!(
        verdict(figures::Metric::PositiveRatings)
            .starts_with("no significant difference in positive ratings")
    );
}

#[test]
fn percentiles_and_p_values_in_words() {
    assert_eq!(nearest_rank(&[], 0.5), None);
    assert_eq!(nearest_rank(&[7], 0.95), Some(7));
    assert_eq!(nearest_rank(&[1, 2, 3, 4], 0.5), Some(2));
    assert_eq!(nearest_rank(&(1..=20).collect::<Vec<_>>(), 0.95), Some(19));
    assert_eq!(p_text(0.41), "p = 0.41");
    assert_eq!(p_text(0.0031), "p = 0.003");
    assert_eq!(p_text(0.0004), "p < 0.001");
}
