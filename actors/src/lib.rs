//! OneFlow's runtime: wallets, provider workers, the persistence
//! thread over the store, and the use cases. Callers hold a [`Broker`] and
//! call its methods; `broker.rs` lists them all and passes each to its use
//! case in `usecase/` (one file each, over one `Services`). A request reads
//! downward: use case (`usecase/request.rs`, `stream.rs`, then `held.rs`,
//! `dispatch.rs`) -> `wallet` -> `provider` (and `adapters`) ->
//! `persistence` -> `store`; see docs/architecture.md.
//!
//! # What crosses the API
//!
//! No actix type appears in [`Broker`]'s methods, in the types they take or
//! return, or in anything the web crate uses. One thing is still actix:
//!
//! - **The runtime.** [`Broker::start`] must run inside an actix `System`
//!   (the provider workers are actors on its arbiters), and
//!   request tasks are spawned with `actix_rt::spawn`, so the broker's
//!   futures run on an actix runtime. actix-web's server is one.
//!
//! The wallets and the provider actors (`wallet`, `provider`) are private modules:
//! callers see [`IdemKey`] and the call types ([`Operation`],
//! [`Output`]) re-exported here.

pub mod adapters;
pub mod broker;
pub mod cache;
pub mod coordination;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod persistence;
mod provider;
pub mod scheduler;
pub mod store;
pub mod tokens;
mod usecase;
pub mod views;
mod wallet;

pub use adapters::{Operation, Output, Thinking};
pub use broker::Broker;
pub use error::BrokerError;
/// Analytics answers and the checked time range they take.
pub use usecase::accounts;
pub use usecase::analytics;
pub use usecase::backup::Backup;
pub use usecase::cached::CacheResult;
/// Exports: what, in which format, and the blocking encoder.
pub use usecase::export;
pub use usecase::job::{Payer, Planner, RequestJob};
pub use usecase::keys::Principal;
/// Reconciliation against provider invoices: the upload and its report.
pub use usecase::reconcile;
pub use usecase::request::Answer;
pub use usecase::stream::{StreamEvent, StreamStart};
pub use usecase::{dashboards, grouped};
pub use wallet::{IdemKey, ToppedUp};
