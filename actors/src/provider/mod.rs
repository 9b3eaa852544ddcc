//! One worker per configured provider: a `governor` rate limit, a
//! concurrency cap, a bounded queue that answers "overloaded" with a
//! retry-after when full, and rolling health figures that routing reads.
//!
//! Callers admit themselves (`admission.rs`) and get a [`Permit`] per call,
//! held until the call or stream ends; calls run in the caller's task
//! through the provider's [`Adapter`]. The actor (`worker.rs`) only times
//! the queue's wake-ups. Each provider also has a circuit breaker and
//! health figures (`stats.rs`) that routing reads; [`ProviderHandle`]
//! (`handle.rs`) is what the rest of the crate holds.

mod admission;
mod handle;
#[cfg(test)]
mod shared_tests;
mod stats;
mod worker;

pub use crate::adapters::{
    Adapter, CallError, CallRequest, Chunk, Content, JobProgress, Operation, Output, Thinking,
};
pub use handle::ProviderHandle;
pub use worker::Permit;
