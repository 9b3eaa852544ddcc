//! A user's wallet as the API shows it (balance, holds, budget windows) and
//! setting its budgets. The wallet applies and enforces them; this is
//! only the asking.

use oneflow::budget::BudgetConfig;

use super::Services;
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::views::WalletView;

/// The user's wallet now.
pub(crate) async fn wallet(s: &Services, user_id: &str) -> Result<WalletView, BrokerError> {
    Ok(s.wallets.view(user_id, now_ms()).await?)
}

/// Replaces the user's budgets (after checking them and the providers they
/// name) and answers the wallet as it is then. A budget an admin set may
/// be tightened by its user, not loosened; what an admin sets is marked.
pub(crate) async fn set(
    s: &Services,
    user_id: &str,
    mut budget: BudgetConfig,
    by_admin: bool,
) -> Result<WalletView, BrokerError> {
    budget.validate()?;
    if !by_admin {
        let current = wallet(s, user_id).await?.budget;
        if current.set_by_admin {
            if let Some(cap) = current.loosened_by(&budget) {
                return Err(BrokerError::Forbidden(format!(
                    "an administrator set this budget: `{cap}` may be lowered, not raised or removed"
                )));
            }
        }
        budget.set_by_admin = current.set_by_admin;
    } else {
        budget.set_by_admin = true;
    }
    for p in budget.per_provider.keys() {
        if s.provider(p).is_err() {
            return Err(BrokerError::BadInput(format!(
                "unknown provider `{p}` in per_provider"
            )));
        }
    }
    s.wallets.set_budget(user_id, budget).await?;
    wallet(s, user_id).await
}
