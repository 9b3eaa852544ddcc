//! OneFlow's runtime: wallet actors, provider workers, the persistence
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
//! return, or in anything the web crate uses. Two things are still actix:
//!
//! - **The runtime.** [`Broker::start`] must run inside an actix `System`
//!   (the wallets and provider workers are actors on its arbiters), and
//!   request tasks are spawned with `actix_rt::spawn`, so the broker's
//!   futures run on an actix runtime. actix-web's server is one.
//! - **Two modules' internals are public.** `wallet` exposes `WalletActor`
//!   (an `actix::Actor`) and `Wallets::ask`, bounded by `actix::Message`;
//!   `provider` exposes `ProviderWorker` (an `actix::Actor`). The web crate
//!   uses neither: only `wallet::IdemKey` and the call types `provider`
//!   re-exports from `adapters`, also re-exported here at the root. They
//!   stay public only while callers import them by those module paths; once
//!   they import from the root, `wallet` and `provider` can become private
//!   and the rule holds without exception.

pub mod adapters;
pub mod broker;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod persistence;
pub mod provider;
pub mod store;
mod usecase;
pub mod views;
pub mod wallet;

pub use adapters::{ChatMessage, Operation, Output};
pub use broker::Broker;
pub use error::BrokerError;
/// Analytics answers and the checked time range they take.
pub use usecase::analytics;
/// Exports: what, in which format, and the blocking encoder.
pub use usecase::export;
pub use usecase::job::{Planner, RequestJob};
pub use usecase::keys::Principal;
pub use usecase::request::Answer;
pub use usecase::stream::{StreamEvent, StreamStart};
pub use wallet::IdemKey;

/// The request types under their former path, for callers written before
/// [`RequestJob`] had its name (`web/src/routes/openai`). New code imports
/// `oneflow_actors::RequestJob`; this module goes once nothing uses it.
#[doc(hidden)]
pub mod run {
    pub use crate::usecase::job::RequestJob as Job;
    pub use crate::usecase::stream::StreamEvent;
}
