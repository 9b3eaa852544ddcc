//! What a wallet is asked to do, and what it answers.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use oneflow::Credits;
use oneflow::key_scope::ScopedKey;
use oneflow::ledger::{LedgerEntry, Refusal};
use oneflow::pricing::Modality;
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use crate::store::{IdempotencyRecord, StoreError};

/// An idempotency key and the hash of the body it came with.
#[derive(Clone, Debug)]
pub struct IdemKey {
    pub key: String,
    pub body_hash: [u8; 32],
    /// The stored record, read before the message was sent so the wallet's
    /// lock need not be held across a store read (see `WalletCell::claim`).
    pub prefetched: Option<Prefetched>,
}

impl IdemKey {
    pub fn new(key: String, body_hash: [u8; 32]) -> IdemKey {
        IdemKey {
            key,
            body_hash,
            prefetched: None,
        }
    }
}

/// A store read of an idempotency key, and when it began.
#[derive(Clone, Debug)]
pub struct Prefetched {
    pub record: Option<IdempotencyRecord>,
    pub read_at: Instant,
}

/// Reserve money for a request (and claim its idempotency key).
#[derive(Clone, Debug)]
pub struct Reserve {
    pub request_id: String,
    pub provider: String,
    pub amount: Credits,
    /// Whose own caps inside the wallet bound this hold too.
    pub spenders: Vec<String>,
    /// The API key it came through, whose own caps bound it too.
    pub key: Option<Arc<ScopedKey>>,
    pub idem: Option<IdemKey>,
    /// What to record if the broker dies before the request finishes.
    pub model: String,
    pub modality: Modality,
    pub prompt_preview: String,
    pub now: Millis,
}

/// What a reservation gave.
#[derive(Debug)]
pub enum Reserved {
    /// Money is held; the request may go to the provider.
    Held { hold_id: u64 },
    /// The key already finished: here is its first answer.
    Replay(Arc<IdempotencyRecord>),
    /// The key is in flight in another request: wait for its answer.
    Wait(oneshot::Receiver<Arc<IdempotencyRecord>>),
}

/// What becomes of a held request's money: charged (a settle) or given
/// back (a release). Not the request's outcome, which is a
/// `RequestOutcome`.
#[derive(Clone, Debug)]
pub enum Settlement {
    /// Charge the real cost (capped at the hold), free the rest.
    Charge(Credits),
    /// Return the whole hold.
    Release(String),
}

/// Close a hold and store the request, its ledger entries and rollups in
/// one commit; answered after the commit.
#[derive(Clone, Debug)]
pub struct Finish {
    pub hold_id: u64,
    pub settlement: Settlement,
    pub record: Box<RequestRecord>,
    /// The key and the answer to remember for it; the wallet sets the
    /// outcome's `cost`, `balance` and `available` and the record's time
    /// before storing it.
    pub idem: Option<(String, IdempotencyRecord)>,
    pub now: Millis,
}

/// The wallet's figures after a [`Finish`]: what was charged and what is
/// left, for the request's outcome.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub charged: Credits,
    pub balance: Credits,
    pub available: Credits,
}

/// Add credits; answered after the commit.
#[derive(Clone, Debug)]
pub struct TopUp {
    pub amount: Credits,
    pub note: Option<String>,
    pub now: Millis,
    /// A retried top-up with the same key and body credits once.
    pub idem: Option<IdemKey>,
}

/// A top-up's ledger entry, and whether it is the replay of an earlier
/// top-up with the same Idempotency-Key.
#[derive(Clone, Debug)]
pub struct ToppedUp {
    pub entry: LedgerEntry,
    pub replayed: bool,
}

/// Move an open hold to a fallback provider, checking that provider's own
/// budget. In memory only: a crash releases every open hold anyway, and the
/// settle that follows stores the wallet with the spend where it belongs.
#[derive(Clone, Debug)]
pub struct Retarget {
    pub hold_id: u64,
    pub provider: String,
    /// The key the hold was made through: its caps at the new provider.
    pub key: Option<Arc<ScopedKey>>,
    pub now: Millis,
}

/// Why a wallet operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("the broker is overloaded; retry shortly")]
    Busy,
    /// The user already has `wallets.max_in_flight` requests holding money.
    #[error("too many of your requests are in flight at once; retry when one has finished")]
    TooManyInFlight,
    #[error("no such user")]
    UnknownUser,
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("wallet unavailable: {0}")]
    Unavailable(String),
}
