//! Criterion benches of the pure domain's hot path: what every request costs
//! before and after the provider call (route + quote, hold, settle), without
//! actors, storage or HTTP. Run: `cargo bench -p oneflow --bench domain`.

// A bench that cannot set up its fixtures should fail loudly; the workspace
// denies unwrap/expect for production code, not for measurement harnesses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use oneflow::Credits;
use oneflow::config::{ProviderConfig, default_providers};
use oneflow::ledger::Wallet;
use oneflow::pricing::Usage;
use oneflow::request::AiRequest;
use oneflow::routing::{Health, Strategy, Weights, choose};

/// A fixed clock: budgets reset on calendar boundaries, so a constant time
/// keeps every iteration in the same window (no window roll-over noise).
const NOW_MS: i64 = 1_700_000_000_000;

/// The same request the load bench sends to the server.
fn text_request() -> AiRequest {
    AiRequest {
        model: "gpt".into(),
        prompt: "hello world".into(),
        max_tokens: Some(4),
        size: None,
        n: None,
        seconds: None,
        provider: None,
        region: None,
        max_price: None,
        strategy: None,
    }
}

/// A wallet with enough money that millions of iterations never run dry
/// (each iteration charges 4 credits).
fn rich_wallet() -> Wallet {
    let mut w = Wallet::new("usr_bench");
    w.top_up(Credits::from_credits(1_000_000_000_000), None, NOW_MS)
        .unwrap();
    w
}

/// Route + quote: rank all four default providers (only `gpt` serves the
/// model, so the others are filtered out, as in production) and plan the
/// winner.
fn bench_quote(c: &mut Criterion) {
    let providers = default_providers();
    let live: Vec<(&ProviderConfig, Health)> =
        providers.iter().map(|p| (p, Health::default())).collect();
    let req = text_request();
    let weights = Weights::default();
    c.bench_function("quote (route + plan)", |b| {
        b.iter(|| {
            let route =
                choose(black_box(&req), black_box(&live), Strategy::Cost, &weights).unwrap();
            black_box(route.ranking[0].plan.quote)
        })
    });
}

/// The whole per-request domain path: route + quote, hold the quote, price
/// the (simulated) real usage, settle. Wallet state is reused across
/// iterations, so the hold map and spend windows behave as on a live wallet.
fn bench_request_path(c: &mut Criterion) {
    let providers = default_providers();
    let live: Vec<(&ProviderConfig, Health)> =
        providers.iter().map(|p| (p, Health::default())).collect();
    let req = text_request();
    let mut wallet = rich_wallet();
    let weights = Weights::default();
    // What the simulated text provider reports: the prompt's words in, all
    // `max_tokens` out.
    let usage = Usage {
        input_tokens: 2,
        output_tokens: 4,
        ..Usage::default()
    };
    c.bench_function("request path (route + plan + hold + cost + settle)", |b| {
        b.iter(|| {
            let route =
                choose(black_box(&req), black_box(&live), Strategy::Cost, &weights).unwrap();
            let plan = &route.ranking[0].plan;
            let (hold, _entry) = wallet
                .hold("req_bench", &plan.provider, plan.quote, NOW_MS)
                .unwrap();
            let provider = live
                .iter()
                .find(|(p, _)| p.name == plan.provider)
                .unwrap()
                .0;
            let cost = provider.rates.cost(&usage, plan.size.as_deref()).unwrap();
            black_box(wallet.settle(hold.id, cost, NOW_MS).unwrap())
        })
    });
    // The ledger invariant must still hold after the run, or the figure
    // measured something other than correct bookkeeping.
    wallet.check().unwrap();
}

/// Hold + settle alone: the wallet's share of a request.
fn bench_hold_settle(c: &mut Criterion) {
    let mut wallet = rich_wallet();
    let quote = Credits::from_credits(4);
    c.bench_function("hold + settle", |b| {
        b.iter(|| {
            let (hold, _entry) = wallet
                .hold("req_bench", "gpt", black_box(quote), NOW_MS)
                .unwrap();
            black_box(wallet.settle(hold.id, quote, NOW_MS).unwrap())
        })
    });
    wallet.check().unwrap();
}

/// Amounts arrive as decimal text on every money-moving API call.
fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("Credits::parse");
    for text in ["1000000000", "12.345678", "1e2", "0.0000001"] {
        g.bench_function(text, |b| {
            b.iter(|| black_box(Credits::parse(black_box(text))))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    // Short runs: these are nanosecond-scale functions, so a few seconds give
    // tight intervals while keeping `cargo bench` quick on a 2-core machine.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = domain;
    config = config();
    targets = bench_quote, bench_request_path, bench_hold_settle, bench_parse
}
criterion_main!(domain);
