//! The analytics rules, on known figures and by property.

use super::*;
use crate::money::Credits;
use crate::pricing::{Modality, Usage};
use crate::records::{RequestRecord, RequestStatus};
use crate::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, Millis};
use proptest::prelude::*;

fn rec(ok: bool, cost: i64, ms: u64, tokens: u64) -> RequestRecord {
    RequestRecord {
        id: "r".into(),
        user_id: "u".into(),
        model: "m".into(),
        modality: Modality::Text,
        provider: "p".into(),
        status: if ok {
            RequestStatus::Succeeded
        } else {
            RequestStatus::Failed
        },
        prompt_preview: String::new(),
        response: None,
        usage: Usage {
            input_tokens: tokens,
            output_tokens: 2 * tokens,
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
        usage_anomaly: false,
        member: None,
        cached: false,
        experiment: None,
        key_id: None,
    }
}

#[test]
fn bounds_are_log_spaced_and_increasing() {
    assert_eq!(LATENCY_BOUNDS_MS[0], 1);
    assert_eq!(LATENCY_BOUNDS_MS[9], 10);
    assert_eq!(LATENCY_BOUNDS_MS[48], 80_000);
    assert_eq!(LATENCY_BOUNDS_MS[49], 100_000);
    for w in LATENCY_BOUNDS_MS.windows(2) {
        assert!(w[0] < w[1]);
        // No step wider than a third (after the first few integers).
        if w[0] >= 3 {
            assert!(w[1] * 3 <= w[0] * 4, "{w:?}");
        }
    }
    assert_eq!(latency_slot(0), 0);
    assert_eq!(latency_slot(1), 0);
    assert_eq!(latency_slot(2), 1);
    assert_eq!(latency_slot(11), 10);
    assert_eq!(latency_slot(80_001), 49);
    assert_eq!(latency_slot(100_001), 50);
}

#[test]
fn summary_adds_up_and_splits_by_provider() {
    let rs = [
        Rollup::of(&rec(true, 5, 3, 1)),
        Rollup::of(&rec(false, 0, 7, 1)),
        Rollup::of(&rec(true, 9, 20_000, 4)),
    ];
    let s = summarize([("a", &rs[0]), ("a", &rs[1]), ("b", &rs[2])]);
    assert_eq!(s.total_requests, 3);
    assert_eq!(s.total_successes, 2);
    assert_eq!(s.total_cost, Credits(14));
    assert_eq!(s.totals.input_tokens, 6);
    assert_eq!(s.totals.output_tokens, 12);
    let a = &s.providers["a"];
    assert_eq!((a.requests, a.successes, a.failures), (2, 1, 1));
    assert_eq!(a.success_rate, 0.5);
    assert_eq!(a.mean_latency_ms, 5.0);
    assert_eq!(s.providers["b"].latency_p99_ms, Some(20_000));
}

#[test]
fn quantiles_of_known_latencies() {
    let mut r = Rollup::default();
    for ms in 1..=100 {
        r.merge(&Rollup::of(&rec(true, 0, ms, 0)));
    }
    // True p50 = 50, p95 = 95, p99 = 99; slots are (40, 50], (80, 100].
    assert_eq!(r.latency_quantile(500), Some(50));
    let p95 = r.latency_quantile(950).unwrap();
    assert!((80..=100).contains(&p95), "{p95}");
    assert_eq!(r.latency_quantile(1000), Some(100));
    assert_eq!(Rollup::default().latency_quantile(500), None);
}

#[test]
fn cover_of_a_day_and_a_bit() {
    let day = 20_000 * MS_PER_DAY;
    let from = day - 2 * MS_PER_HOUR - 5 * MS_PER_MINUTE;
    let to = day + MS_PER_DAY + MS_PER_HOUR + 3 * MS_PER_MINUTE;
    let c = cover(from, to);
    let widths: Vec<Bucket> = c.iter().map(|x| x.0).collect();
    use Bucket::*;
    assert_eq!(widths, [Minute, Hour, Day, Hour, Minute]);
    assert_eq!(c[2], (Day, day, day + MS_PER_DAY));
}

#[test]
fn burn_down_on_known_figures() {
    // 10 credits spent in the last 24 h, 25 remain: 60 h from now.
    let now = 1_000_000;
    let at = runs_out_at(
        now,
        Credits::from_credits(25),
        Credits::from_credits(10),
        MS_PER_DAY,
    );
    assert_eq!(at, Some(now + 60 * MS_PER_HOUR));
    assert_eq!(
        runs_out_at(now, Credits(5), Credits::ZERO, MS_PER_DAY),
        None
    );
    assert_eq!(
        runs_out_at(now, Credits::ZERO, Credits(1), MS_PER_DAY),
        Some(now)
    );
    assert_eq!(
        hourly_rate(Credits::from_credits(24), MS_PER_DAY),
        Credits::from_credits(1)
    );
}

fn arb_rollup() -> impl Strategy<Value = Rollup> {
    proptest::collection::vec(
        (any::<bool>(), 0i64..1_000_000, 0u64..200_000, 0u64..10_000),
        0..20,
    )
    .prop_map(|reqs| {
        let mut r = Rollup::default();
        for (ok, cost, ms, tok) in reqs {
            r.merge(&Rollup::of(&rec(ok, cost, ms, tok)));
        }
        r
    })
}

proptest! {
    #[test]
    fn bytes_round_trip(r in arb_rollup()) {
        prop_assert_eq!(Rollup::from_bytes(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn merging_bytes_equals_merging(a in arb_rollup(), b in arb_rollup()) {
        let mut via_bytes = a.clone();
        via_bytes.merge_bytes(&b.to_bytes()).unwrap();
        let mut direct = a;
        direct.merge(&b);
        prop_assert_eq!(via_bytes, direct);
    }

    #[test]
    fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Rollup::from_bytes(&b);
    }

    /// Merging in any grouping gives the same sums: per-minute rows
    /// folded into hours equal the hour row kept directly.
    #[test]
    fn merge_is_associative_and_commutative(a in arb_rollup(), b in arb_rollup(), c in arb_rollup()) {
        let mut left = a.clone();
        left.merge(&b);
        left.merge(&c);
        let mut bc = c.clone();
        bc.merge(&b);
        let mut right = bc;
        right.merge(&a);
        prop_assert_eq!(left, right);
    }

    /// The cover partitions the range: ranges are aligned to their
    /// width, adjacent, and span exactly [from, to).
    #[test]
    fn cover_partitions(from_min in 0i64..3_000_000, len_min in 0i64..200_000) {
        let from = from_min * MS_PER_MINUTE;
        let to = from + len_min * MS_PER_MINUTE;
        let c = cover(from, to);
        prop_assert!(c.len() <= 5);
        let mut at = from;
        for (b, s, e) in &c {
            prop_assert_eq!(*s, at);
            prop_assert!(s < e);
            prop_assert_eq!(b.floor(*s), *s);
            prop_assert_eq!(b.floor(*e), *e);
            at = *e;
        }
        prop_assert_eq!(at, to);
        // At most 59 + 23 + days + 23 + 59 rows per provider.
        let rows: i64 = c.iter().map(|(b, s, e)| (e - s) / b.ms()).sum();
        prop_assert!(rows <= 2 * (59 + 23) + len_min / 1440 + 1);
    }

    /// A percentile estimate lies in the histogram slot of the true
    /// value, so it is within a third of it.
    #[test]
    fn quantile_is_in_the_true_slot(mut lat in proptest::collection::vec(0u64..200_000, 1..300), q in 1u64..=1000) {
        let mut r = Rollup::default();
        for ms in &lat {
            r.merge(&Rollup::of(&rec(true, 0, *ms, 0)));
        }
        lat.sort_unstable();
        let rank = (q as usize * lat.len()).div_ceil(1000).max(1);
        let truth = lat[rank - 1];
        let est = r.latency_quantile(q).unwrap();
        let (lo, hi) = slot_range(latency_slot(truth));
        prop_assert!(est >= lo && est <= hi.min(r.latency_ms_max), "truth {} est {} slot ({}, {}]", truth, est, lo, hi);
    }

    #[test]
    fn series_is_dense_and_sums_to_the_whole(starts in proptest::collection::vec(0i64..2880, 0..50)) {
        let rows: Vec<(Millis, Rollup)> = starts.iter().map(|m| (m * MS_PER_MINUTE, Rollup::of(&rec(true, 3, 10, 1)))).collect();
        let s = series(Bucket::Hour, 0, 2 * MS_PER_DAY, rows.iter().map(|(t, r)| (*t, r)));
        prop_assert_eq!(s.len(), 48);
        let n: u64 = s.iter().map(|p| p.figures.requests).sum();
        prop_assert_eq!(n, starts.len() as u64);
    }
}

#[test]
fn groups_add_up_to_every_request_and_fold_the_smallest() {
    let mut b = GroupedBuilder::new(Bucket::Hour, 0, 2 * MS_PER_HOUR);
    let mut all = Rollup::default();
    for i in 0..30u64 {
        let mut r = rec(i % 3 != 0, 10 + i as i64, 5 * i, i);
        r.model = format!("m{:02}", i % 25);
        r.key_id = (i % 2 == 0).then(|| "key_a".to_string());
        r.created_at = (i as Millis % 2) * MS_PER_HOUR + 7;
        b.add_request(GroupBy::Model, &r);
        all.merge(&Rollup::of(&r));
    }
    b.add_request(GroupBy::Model, &{
        let mut late = rec(true, 1, 1, 1);
        late.created_at = 2 * MS_PER_HOUR;
        late
    });
    let groups = b.finish();
    assert_eq!(groups.len(), MAX_GROUPS);
    assert_eq!(groups.last().unwrap().group, OTHER);
    // The five models with two requests come first, by name.
    assert_eq!(groups[0].group, "m00");
    assert_eq!(groups[0].totals.requests, 2);
    let mut sum = Rollup::default();
    for g in &groups {
        assert_eq!(g.points.len(), 2);
        let per_point: u64 = g.points.iter().map(|p| p.figures.requests).sum();
        assert_eq!(per_point, g.totals.requests);
        sum.count += g.totals.requests;
        sum.cost += g.totals.cost;
    }
    assert_eq!(
        sum.count, all.count,
        "the request outside the range is not counted"
    );
    assert_eq!(sum.cost, all.cost);

    let r = rec(true, 1, 1, 1);
    assert_eq!(GroupBy::Key.of(&r), NONE);
    assert_eq!(GroupBy::Member.of(&r), "u");
    for g in GroupBy::ALL {
        assert_eq!(GroupBy::parse(g.name()), Some(g));
    }
}
