//! OneFlow's runtime: wallet actors, provider workers, the redb persistence
//! thread and the request use case. Callers use [`broker::Broker`] and the
//! handle types; no actix type crosses this crate's API.

pub mod adapters;
pub mod analytics;
pub mod broker;
pub mod dispatch;
pub mod error;
pub mod export;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod persistence;
pub mod preferences;
pub mod provider;
pub mod run;
pub mod store;
pub mod views;
pub mod wallet;

pub use broker::{Broker, Principal};
pub use error::BrokerError;
