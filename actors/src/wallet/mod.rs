//! One `WalletActor` per user owns that user's balance, holds, budgets and
//! in-flight idempotency keys. Every money change for the user passes
//! through its mailbox one at a time, and the arithmetic runs synchronously
//! inside the handler, so no interleaving can overspend.
//!
//! Callers use [`Wallets`] (`handle.rs`), which starts actors on first use
//! (spread over several arbiters), restarts them if they stopped, and keeps
//! actix types out of the web crate. The messages are in `messages.rs`, the
//! actor and its handlers in `actor.rs`, its idempotency keys in
//! `idempotency.rs`.

mod actor;
mod handle;
mod idempotency;
mod messages;

pub use handle::{WalletSettings, Wallets};
pub use messages::{Finish, IdemKey, Reserve, Reserved, Retarget, Settlement, TopUp, WalletError};
