//! The sums kept per bucket, how they merge, and their compact bytes.

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::records::{RequestRecord, RequestStatus};

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
