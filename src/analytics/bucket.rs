//! Bucket widths and covering a time range with as few rows as possible.

use serde::{Deserialize, Serialize};

use crate::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, Millis};

/// The width of a rollup row. Each finished request adds to one row of
/// each width, so any range can be answered at any of them.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
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
