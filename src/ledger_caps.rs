//! Which caps a hold must fit, apart from the rest of the ledger: the
//! wallet's budget, each spender's caps in it, and the caps an API key
//! brings with its requests ([`ScopedKey`]). A key's caps are the key's
//! own and never change, so the wallet does not store them; it counts
//! what the key spent and holds under the key's id, like any spender's.

use crate::budget::{BudgetLimits, SpenderBudget};
use crate::key_scope::ScopedKey;
use crate::ledger::{Refusal, Wallet};
use crate::money::Credits;
use crate::time::{Millis, Window};

impl Wallet {
    /// The first budget rule that `amount` more at `provider`, spent by
    /// `spenders` through `key`, would break: the wallet's caps, then each
    /// spender's, then the key's.
    pub fn check_budget(
        &self,
        amount: Credits,
        provider: &str,
        spenders: &[String],
        key: Option<&ScopedKey>,
        now: Millis,
    ) -> Result<(), Refusal> {
        let now = now.max(self.clock);
        let b = &self.budget;
        let caps = (&b.overall(), b.per_provider.get(provider));
        self.check_caps(None, caps, amount, provider, now)?;
        for (s, sb) in spender_caps(&b.spenders, spenders, key) {
            let caps = (&sb.overall(), sb.per_provider.get(provider));
            self.check_caps(Some(s), caps, amount, provider, now)?;
        }
        Ok(())
    }

    /// Checks one set of caps (the wallet's, or one spender's): overall,
    /// and at `provider`, each counting what is spent and held in its scope.
    fn check_caps(
        &self,
        spender: Option<&str>,
        (overall, at_provider): (&BudgetLimits, Option<&BudgetLimits>),
        amount: Credits,
        provider: &str,
        now: Millis,
    ) -> Result<(), Refusal> {
        let spend = match spender {
            None => Some(&self.spend),
            Some(s) => self.spender_spend.get(s),
        };
        let scoped = [(None, Some(overall)), (Some(provider), at_provider)];
        for (scope, limits) in scoped {
            let Some(limits) = limits else { continue };
            let held = self.held_by(spender, scope);
            for w in Window::ALL {
                let Some(limit) = limits.get(w) else { continue };
                let spent = spend.map_or(Credits::ZERO, |sp| sp.spent(w, now, scope));
                if spent + held + amount > limit {
                    return Err(Refusal::BudgetExceeded {
                        window: w,
                        spender: spender.map(str::to_string),
                        provider: scope.map(str::to_string),
                        limit,
                        spent,
                        held,
                        needed: amount,
                    });
                }
            }
        }
        Ok(())
    }

    /// Moves an open hold to `provider` (a fallback after the first one
    /// failed). The overall budget already counts the hold; the new
    /// provider's own caps are checked as if the hold were new there.
    pub fn retarget(&mut self, hold_id: u64, provider: &str, now: Millis) -> Result<(), Refusal> {
        self.retarget_with(hold_id, provider, None, now)
    }

    /// [`Wallet::retarget`] for a hold made through `key`, whose caps at
    /// the new provider are checked too.
    pub fn retarget_with(
        &mut self,
        hold_id: u64,
        provider: &str,
        key: Option<&ScopedKey>,
        now: Millis,
    ) -> Result<(), Refusal> {
        let now = self.tick(now);
        let hold = self
            .holds
            .get(&hold_id)
            .ok_or(Refusal::UnknownHold(hold_id))?;
        if hold.provider == provider {
            return Ok(());
        }
        let (amount, spenders) = (hold.amount, hold.spenders.clone());
        // The overall caps already count the hold; the new provider's own
        // caps (the wallet's and each spender's) see it as new there.
        let none = BudgetLimits::default();
        let b = &self.budget;
        self.check_caps(
            None,
            (&none, b.per_provider.get(provider)),
            amount,
            provider,
            now,
        )?;
        for (s, sb) in spender_caps(&b.spenders, &spenders, key) {
            let caps = (&none, sb.per_provider.get(provider));
            self.check_caps(Some(s), caps, amount, provider, now)?;
        }
        if let Some(h) = self.holds.get_mut(&hold_id) {
            h.provider = provider.to_string();
        }
        Ok(())
    }
}

/// Each spender's caps in the wallet's budget, then the key's own.
fn spender_caps<'a>(
    in_budget: &'a std::collections::BTreeMap<String, SpenderBudget>,
    spenders: &'a [String],
    key: Option<&'a ScopedKey>,
) -> impl Iterator<Item = (&'a str, &'a SpenderBudget)> {
    let listed = spenders
        .iter()
        .filter_map(|s| in_budget.get(s).map(|b| (s.as_str(), b)));
    let own = key.and_then(|k| Some((k.id.as_str(), k.scope.budget.as_ref()?)));
    listed.chain(own)
}
