//! The response cache's series (docs/cache.md, docs/metrics.md).

use ::metrics::{counter, describe_counter};

/// Requests that asked the cache, by `model` and `result` (`hit`, `miss`,
/// `bypass`): the hit ratio per model is hits over hits plus misses.
pub const CACHE_REQUESTS: &str = "oneflow_cache_requests_total";
/// Calls to the cache's Redis that failed or timed out (each answered as a
/// miss, or not stored), by `op` (`get`, `put`).
pub const CACHE_ERRORS: &str = "oneflow_cache_errors_total";
/// Answers stored in the cache, and answers not stored because they were
/// larger than `[cache] max_entry_bytes`, by `result` (`stored`,
/// `too_large`).
pub const CACHE_FILLS: &str = "oneflow_cache_fills_total";

pub(super) fn describe() {
    describe_counter!(
        CACHE_REQUESTS,
        "Requests that asked the response cache, by model and result (hit, miss, bypass)."
    );
    describe_counter!(
        CACHE_ERRORS,
        "Response cache calls to Redis that failed (answered as a miss), by op."
    );
    describe_counter!(
        CACHE_FILLS,
        "Answers offered to the response cache, by result (stored, too_large)."
    );
}

/// One request's dealing with the cache.
pub fn cache_request(model: &str, result: &'static str) {
    counter!(CACHE_REQUESTS, "model" => model.to_string(), "result" => result).increment(1);
}

/// A Redis call of the cache failed.
pub fn cache_error(op: &'static str) {
    counter!(CACHE_ERRORS, "op" => op).increment(1);
}

/// An answer was offered to the cache.
pub fn cache_fill(result: &'static str) {
    counter!(CACHE_FILLS, "result" => result).increment(1);
}

/// Shows the cache's series at zero before anything happened, so every
/// node's `/metrics` lists them (described) and `rate()` starts at zero.
/// The request counter shows under `model="other"` (the label of models
/// no provider serves), which no real model's ratio includes.
pub(super) fn show_empty() {
    counter!(CACHE_REQUESTS, "model" => "other", "result" => "hit").increment(0);
    for result in ["stored", "too_large"] {
        counter!(CACHE_FILLS, "result" => result).increment(0);
    }
    for op in ["get", "put"] {
        counter!(CACHE_ERRORS, "op" => op).increment(0);
    }
}
