//! [`Wallets`]: the one handle the use cases hold, on either kind of store:
//! a single node's wallets, whose memory is the authority and whose writes
//! ride the persistence thread's group commits ([`LocalWallets`]), or the
//! wallets of nodes sharing PostgreSQL, whose rows are the authority
//! ([`SharedWallets`]). Both keep the same promises: no overspend, every
//! change committed before it is answered, one run per idempotency key.

use oneflow::budget::BudgetConfig;
use oneflow::time::Millis;

use crate::views::WalletView;

use super::handle::LocalWallets;
use super::messages::*;
use super::shared::SharedWallets;

#[derive(Clone)]
pub enum Wallets {
    Local(LocalWallets),
    Shared(SharedWallets),
}

impl Wallets {
    /// Lets go of every wallet in memory; a shared node also gives up its
    /// lease.
    pub async fn stop(&self) {
        match self {
            Wallets::Local(w) => w.stop().await,
            Wallets::Shared(w) => w.stop().await,
        }
    }

    /// Wallets in memory now.
    pub fn alive(&self) -> usize {
        match self {
            Wallets::Local(w) => w.alive(),
            Wallets::Shared(w) => w.alive(),
        }
    }

    pub async fn reserve(&self, user_id: &str, m: Reserve) -> Result<Reserved, WalletError> {
        match self {
            Wallets::Local(w) => w.reserve(user_id, m).await,
            Wallets::Shared(w) => w.reserve(user_id, m).await,
        }
    }

    pub async fn finish(&self, user_id: &str, m: Finish) -> Result<Finished, WalletError> {
        match self {
            Wallets::Local(w) => w.finish(user_id, m).await,
            Wallets::Shared(w) => w.finish(user_id, m).await,
        }
    }

    pub async fn top_up(&self, user_id: &str, m: TopUp) -> Result<ToppedUp, WalletError> {
        match self {
            Wallets::Local(w) => w.top_up(user_id, m).await,
            Wallets::Shared(w) => w.top_up(user_id, m).await,
        }
    }

    pub async fn set_budget(&self, user_id: &str, b: BudgetConfig) -> Result<(), WalletError> {
        match self {
            Wallets::Local(w) => w.set_budget(user_id, b).await,
            Wallets::Shared(w) => w.set_budget(user_id, b).await,
        }
    }

    pub async fn retarget(&self, user_id: &str, m: Retarget) -> Result<(), WalletError> {
        match self {
            Wallets::Local(w) => w.retarget(user_id, m).await,
            Wallets::Shared(w) => w.retarget(user_id, m).await,
        }
    }

    pub async fn view(&self, user_id: &str, now: Millis) -> Result<WalletView, WalletError> {
        match self {
            Wallets::Local(w) => w.view(user_id, now).await,
            Wallets::Shared(w) => w.view(user_id, now).await,
        }
    }
}
