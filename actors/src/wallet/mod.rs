//! Each user's money in memory: balance, holds, budgets and in-flight
//! idempotency keys, in one cell per user behind its own lock. Every money
//! change for the user runs its arithmetic under that lock, one at a time,
//! and sends its writes to the persistence queue before letting go, so no
//! interleaving can overspend and the user's writes reach the store in the
//! order they were made.
//!
//! On a node that shares PostgreSQL with others, the row is the wallet
//! instead and a node's copy only a cache (`shared.rs`); [`Wallets`]
//! (`wallets.rs`) is the handle over either.
//!
//! A single node's callers go through [`LocalWallets`] (`handle.rs`), which loads a cell on first use,
//! drops idle ones, and waits for commits outside the lock. The cell and
//! the synchronous step of each operation are in `cell.rs`, its
//! idempotency keys in `idempotency.rs`, the requests and answers in
//! `messages.rs`.

mod cell;
mod handle;
mod idempotency;
mod lease;
mod messages;
mod shared;
mod steps;
mod wallets;

pub use handle::{LocalWallets, WalletSettings};
pub use idempotency::IdemLimits;
pub use messages::{
    Finish, IdemKey, Reserve, Reserved, Retarget, Settlement, TopUp, ToppedUp, WalletError,
};
pub use shared::SharedWallets;
pub use wallets::Wallets;
