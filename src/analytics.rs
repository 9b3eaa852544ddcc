//! Analytics rollups: the sums kept per (bucket start, user, provider) at
//! write time, how they merge, how they are stored compactly, how a time
//! range is covered by as few of them as possible, and the figures (success
//! rate, latency percentiles, burn-down) read from them.
//!
//! Pure: the runtime applies these in the same transaction as the request
//! record, so rollups agree with the ledger exactly and survive crashes.
//! Reading a range costs a number of rollup rows bounded by the range and
//! the number of providers, never by the number of requests stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::records::{RequestRecord, RequestStatus};
use crate::time::{MS_PER_DAY, MS_PER_HOUR, Millis};

pub const MS_PER_MINUTE: i64 = 60_000;

/// The width of a rollup row. Each finished request adds to one row of
/// each width, so any range can be answered at any of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::Minute, Bucket::Hour, Bucket::Day];

    pub fn ms(self) -> Millis {
        match self {
            Bucket::Minute => MS_PER_MINUTE,
            Bucket::Hour => MS_PER_HOUR,
            Bucket::Day => MS_PER_DAY,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Start of the bucket containing `at` (UTC; days start at midnight).
    pub fn floor(self, at: Millis) -> Millis {
        at.div_euclid(self.ms()) * self.ms()
    }

    /// The first bucket boundary at or after `at`.
    pub fn ceil(self, at: Millis) -> Millis {
        let f = self.floor(at);
        if f == at {
            at
        } else {
            f.saturating_add(self.ms())
        }
    }
}

/// Upper bounds (inclusive, ms) of the latency histogram: whole
/// milliseconds to 9, then ten steps a decade (1, 1.2, 1.5, 2, 2.5, 3, 4,
/// 5, 6, 8) from 10 ms to 100 s, so neighbouring bounds differ by at most a
/// third and a percentile read from merged histograms is within that of the
/// truth. One more counter holds anything slower.
pub const LATENCY_BOUNDS_MS: [u64; 50] = latency_bounds();

const fn latency_bounds() -> [u64; 50] {
    const STEPS: [u64; 10] = [10, 12, 15, 20, 25, 30, 40, 50, 60, 80];
    let mut out = [0u64; 50];
    let mut i = 0;
    while i < 9 {
        out[i] = i as u64 + 1;
        i += 1;
    }
    let mut scale = 1u64;
    while i < 49 {
        out[i] = STEPS[(i - 9) % 10] * scale;
        i += 1;
        if (i - 9) % 10 == 0 {
            scale *= 10;
        }
    }
    out[49] = 100_000;
    out
}

/// Counters of the latency histogram: one per bound, one for slower.
pub const LATENCY_SLOTS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The histogram slot of a latency.
pub fn latency_slot(ms: u64) -> usize {
    LATENCY_BOUNDS_MS.partition_point(|b| *b < ms)
}

/// The range of latencies one slot holds: (exclusive lower, inclusive upper).
/// The overflow slot's upper end is open (`u64::MAX`).
pub fn slot_range(slot: usize) -> (u64, u64) {
    let lower = if slot == 0 {
        0
    } else {
        LATENCY_BOUNDS_MS[slot - 1]
    };
    let upper = LATENCY_BOUNDS_MS.get(slot).copied().unwrap_or(u64::MAX);
    (lower, upper)
}

/// Sums over the requests of one user (or all users) at one provider in
/// one bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    pub count: u64,
    pub successes: u64,
    /// What was charged: the sum of the requests' charge entries.
    pub cost: Credits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms_sum: u64,
    /// The slowest request, which bounds the percentile estimates.
    pub latency_ms_max: u64,
    /// `LATENCY_SLOTS` counters.
    pub latency: Vec<u64>,
}

impl Default for Rollup {
    fn default() -> Rollup {
        Rollup {
            count: 0,
            successes: 0,
            cost: Credits::ZERO,
            input_tokens: 0,
            output_tokens: 0,
            latency_ms_sum: 0,
            latency_ms_max: 0,
            latency: vec![0; LATENCY_SLOTS],
        }
    }
}

/// A stored rollup that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable rollup: {0}")]
pub struct DecodeError(&'static str);

impl Rollup {
    /// The contribution of one finished request.
    pub fn of(r: &RequestRecord) -> Rollup {
        let mut out = Rollup {
            count: 1,
            successes: u64::from(r.status == RequestStatus::Succeeded),
            cost: r.cost,
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
            latency_ms_sum: r.latency_ms,
            latency_ms_max: r.latency_ms,
            ..Rollup::default()
        };
        out.latency[latency_slot(r.latency_ms)] = 1;
        out
    }

    /// Adds `o` in. Saturating: a counter cannot wrap into nonsense.
    pub fn merge(&mut self, o: &Rollup) {
        self.count = self.count.saturating_add(o.count);
        self.successes = self.successes.saturating_add(o.successes);
        self.cost += o.cost;
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.latency_ms_sum = self.latency_ms_sum.saturating_add(o.latency_ms_sum);
        self.latency_ms_max = self.latency_ms_max.max(o.latency_ms_max);
        if self.latency.len() < o.latency.len() {
            self.latency.resize(o.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&o.latency) {
            *a = a.saturating_add(*b);
        }
    }

    /// Estimated latency at `per_mille` (500 = median) from the histogram:
    /// linear within the slot holding that rank, never above the maximum.
    /// `None` with no requests.
    pub fn latency_quantile(&self, per_mille: u64) -> Option<u64> {
        let n = self.latency.iter().sum::<u64>();
        if n == 0 {
            return None;
        }
        let rank = (u128::from(per_mille.min(1000)) * u128::from(n)).div_ceil(1000);
        let rank = rank.max(1);
        let mut before = 0u128;
        for (slot, c) in self.latency.iter().enumerate() {
            let c = u128::from(*c);
            if c > 0 && before + c >= rank {
                let (lower, upper) = slot_range(slot);
                let upper = upper.min(self.latency_ms_max.max(lower));
                let span = u128::from(upper - lower);
                let est = u128::from(lower) + span * (rank - before) / c;
                return Some((est as u64).min(self.latency_ms_max));
            }
            before += c;
        }
        Some(self.latency_ms_max)
    }

    /// A compact binary form: a version byte, then LEB128 numbers, the
    /// histogram as (slot, count) pairs of its non-zero slots only.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.push(1);
        for v in [
            self.count,
            self.successes,
            zigzag(self.cost.0),
            self.input_tokens,
            self.output_tokens,
            self.latency_ms_sum,
            self.latency_ms_max,
        ] {
            put_varint(&mut out, v);
        }
        let nonzero: Vec<(usize, u64)> = self
            .latency
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, c)| *c > 0)
            .collect();
        put_varint(&mut out, nonzero.len() as u64);
        for (slot, c) in nonzero {
            put_varint(&mut out, slot as u64);
            put_varint(&mut out, c);
        }
        out
    }

    /// Adds a stored rollup in straight from its bytes, without building
    /// it first: what a range read does for every row, so it allocates
    /// nothing. On error `self` is partly updated and must be dropped.
    pub fn merge_bytes(&mut self, b: &[u8]) -> Result<(), DecodeError> {
        let (&version, mut rest) = b.split_first().ok_or(DecodeError("empty"))?;
        if version != 1 {
            return Err(DecodeError("unknown version"));
        }
        let mut next = || get_varint(&mut rest);
        self.count = self.count.saturating_add(next()?);
        self.successes = self.successes.saturating_add(next()?);
        self.cost += Credits(unzigzag(next()?));
        self.input_tokens = self.input_tokens.saturating_add(next()?);
        self.output_tokens = self.output_tokens.saturating_add(next()?);
        self.latency_ms_sum = self.latency_ms_sum.saturating_add(next()?);
        self.latency_ms_max = self.latency_ms_max.max(next()?);
        if self.latency.len() < LATENCY_SLOTS {
            self.latency.resize(LATENCY_SLOTS, 0);
        }
        let pairs = next()?;
        for _ in 0..pairs {
            let slot = usize::try_from(next()?).map_err(|_| DecodeError("slot"))?;
            let c = next()?;
            let cell = self.latency.get_mut(slot).ok_or(DecodeError("slot"))?;
            *cell = cell.saturating_add(c);
        }
        if !rest.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(())
    }

    pub fn from_bytes(b: &[u8]) -> Result<Rollup, DecodeError> {
        let (&version, mut rest) = b.split_first().ok_or(DecodeError("empty"))?;
        if version != 1 {
            return Err(DecodeError("unknown version"));
        }
        let mut next = || get_varint(&mut rest);
        let mut r = Rollup {
            count: next()?,
            successes: next()?,
            cost: Credits(unzigzag(next()?)),
            input_tokens: next()?,
            output_tokens: next()?,
            latency_ms_sum: next()?,
            latency_ms_max: next()?,
            ..Rollup::default()
        };
        let pairs = next()?;
        for _ in 0..pairs {
            let slot = usize::try_from(next()?).map_err(|_| DecodeError("slot"))?;
            let c = next()?;
            *r.latency.get_mut(slot).ok_or(DecodeError("slot"))? = c;
        }
        if !rest.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(r)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().ok_or(DecodeError("truncated"))?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("number too long"))
}

/// Splits `[from, to)` (both whole minutes) into at most five ranges, each
/// read from the widest rollups that fit it: minutes up to the first whole
/// hour, hours up to the first whole day, days, then hours and minutes
/// again. Returns (width, start, end) with `start < end`.
pub fn cover(from: Millis, to: Millis) -> Vec<(Bucket, Millis, Millis)> {
    let mut out = Vec::with_capacity(5);
    if from >= to {
        return out;
    }
    cover_into(&mut out, Bucket::Day, from, to);
    out
}

fn cover_into(out: &mut Vec<(Bucket, Millis, Millis)>, b: Bucket, from: Millis, to: Millis) {
    if from >= to {
        return;
    }
    let narrower = match b {
        Bucket::Day => Some(Bucket::Hour),
        Bucket::Hour => Some(Bucket::Minute),
        Bucket::Minute => None,
    };
    let Some(n) = narrower else {
        out.push((b, from, to));
        return;
    };
    let (lo, hi) = (b.ceil(from), b.floor(to));
    if lo >= hi {
        // No whole bucket of this width fits: all narrower.
        cover_into(out, n, from, to);
        return;
    }
    cover_into(out, n, from, lo);
    out.push((b, lo, hi));
    cover_into(out, n, hi, to);
}

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
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total_requests: u64,
    pub total_successes: u64,
    pub total_cost: Credits,
    pub success_rate: f64,
    pub totals: Figures,
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

/// Reads a time as milliseconds since the epoch (`1764000000000`) or as
/// RFC 3339 (`2026-11-25T13:00:00Z`, `2026-11-25T14:00:00.5+01:00`) or a
/// bare date (`2026-11-25`, midnight UTC).
pub fn parse_time(s: &str) -> Result<Millis, String> {
    let bad = || {
        format!(
            "`{s}` is not a time: give milliseconds since 1970 or RFC 3339 like 2026-11-25T13:00:00Z"
        )
    };
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| bad());
    }
    let num = |t: &str| -> Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(day), None) if y.len() == 4 && m.len() == 2 && day.len() == 2 => {
            (num(y)?, num(m)?, num(day)?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || day < 1 || day > days_in_month(y, m) {
        return Err(bad());
    }
    let days = crate::time::days_from_civil(y, m as u32, day as u32);
    let Some(rest) = rest else {
        return Ok(days * MS_PER_DAY);
    };
    let (clock, offset_ms) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-']).ok_or_else(bad)?;
        let (c, off) = (&rest[..i], &rest[i..]);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 23 || om > 59 || oh.to_string().len() > 2 {
            return Err(bad());
        }
        (c, sign * (oh * MS_PER_HOUR + om * MS_PER_MINUTE))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let (h, mi, sec) = match (t.next(), t.next(), t.next(), t.next()) {
        (Some(h), Some(mi), Some(sec), None) if h.len() == 2 && mi.len() == 2 && sec.len() == 2 => {
            (num(h)?, num(mi)?, num(sec)?)
        }
        _ => return Err(bad()),
    };
    if h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let ms = match frac {
        None => 0,
        Some(f) => {
            num(f)?;
            let f3: String = f.chars().chain("000".chars()).take(3).collect();
            num(&f3)?
        }
    };
    Ok(days * MS_PER_DAY + h * MS_PER_HOUR + mi * MS_PER_MINUTE + sec * 1000 + ms - offset_ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{Modality, Usage};
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

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1764000000000"), Ok(1_764_000_000_000));
        let d = crate::time::days_from_civil(2026, 11, 25) * MS_PER_DAY;
        assert_eq!(parse_time("2026-11-25"), Ok(d));
        assert_eq!(parse_time("2026-11-25T13:00:00Z"), Ok(d + 13 * MS_PER_HOUR));
        assert_eq!(
            parse_time("2026-11-25T14:00:00.5+01:00"),
            Ok(d + 13 * MS_PER_HOUR + 500)
        );
        assert_eq!(
            parse_time("2026-11-25T12:30:00-00:30"),
            Ok(d + 13 * MS_PER_HOUR)
        );
        for bad in [
            "",
            "x",
            "2026-13-01",
            "2026-02-30",
            "2026-11-25T25:00:00Z",
            "2026-11-25T13:00Z",
            "-5",
            "2026-11-25T13:00:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
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
}
