//! Each user's money in memory: balance, holds, budgets and in-flight
//! idempotency keys, in one cell per user behind its own lock. Every money
//! change for the user runs its arithmetic under that lock, one at a time,
//! and sends its writes to the persistence queue before letting go, so no
//! interleaving can overspend and the user's writes reach the store in the
//! order they were made.
//!
//! Callers use [`Wallets`] (`handle.rs`), which loads a cell on first use,
//! drops idle ones, and waits for commits outside the lock. The cell and
//! the synchronous step of each operation are in `cell.rs`, its
//! idempotency keys in `idempotency.rs`, the requests and answers in
//! `messages.rs`.

mod cell;
mod handle;
mod idempotency;
mod messages;

pub use handle::{WalletSettings, Wallets};
pub use idempotency::IdemLimits;
pub use messages::{
    Finish, IdemKey, Reserve, Reserved, Retarget, Settlement, TopUp, ToppedUp, WalletError,
};
