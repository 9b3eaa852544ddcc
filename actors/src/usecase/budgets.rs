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
/// name) and answers the wallet as it is then.
pub(crate) async fn set(
    s: &Services,
    user_id: &str,
    budget: BudgetConfig,
) -> Result<WalletView, BrokerError> {
    budget.validate()?;
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
