//! Analytics rollups: the sums kept per (bucket start, user, provider) at
//! write time, how they merge, how they are stored compactly, how a time
//! range is covered by as few of them as possible, and the figures (success
//! rate, latency percentiles, burn-down) read from them.
//!
//! Pure: the runtime applies these in the same transaction as the request
//! record, so rollups agree with the ledger exactly and survive crashes.
//! Reading a range costs a number of rollup rows bounded by the range and
//! the number of providers, never by the number of requests stored.
//!
//! By concern: `bucket.rs` (widths and covering a range), `rollup.rs` (the
//! sums and their compact bytes), `figures.rs` (what is read from them),
//! `groups.rs` (series split by provider, model, key or member).

mod bucket;
mod figures;
mod groups;
mod rollup;
#[cfg(test)]
mod tests;

pub use bucket::{Bucket, cover};
pub use figures::{
    Figures, Point, SeriesBuilder, Summary, hourly_rate, runs_out_at, series, summarize,
};
pub use groups::{Group, GroupBy, GroupedBuilder, MAX_GROUPS, NONE, OTHER};
pub use rollup::{DecodeError, LATENCY_BOUNDS_MS, LATENCY_SLOTS, Rollup, latency_slot, slot_range};
