//! OneFlow's domain: money, pricing, the wallet ledger, budgets, routing,
//! request records and the configuration schema.
//!
//! Pure by design: no actors, async runtime, storage or HTTP here, so every
//! rule is testable in microseconds and the runtime can be replaced.

pub mod access;
pub mod analytics;
pub mod audio;
pub mod auth;
pub mod budget;
pub mod budget_alert;
pub mod cache;
pub mod chat;
pub mod choice;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod email;
pub mod experiment;
pub mod key_scope;
pub mod ledger;
mod ledger_caps;
#[cfg(test)]
mod ledger_spenders;
pub mod money;
pub mod pricing;
pub mod provider;
pub mod reach;
pub mod reconcile;
pub mod records;
pub mod report;
pub mod request;
pub mod routing;
pub mod stats;
pub mod time;
pub mod webhook;

pub use money::Credits;
