//! Budget rules: spending caps per calendar window (UTC), overall and per
//! provider, that count open holds as already spent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::time::{Millis, Window};

/// Caps for the three calendar windows (UTC); absent or null means no cap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetLimits {
    pub daily: Option<Credits>,
    pub weekly: Option<Credits>,
    pub monthly: Option<Credits>,
}

impl BudgetLimits {
    pub fn get(&self, w: Window) -> Option<Credits> {
        match w {
            Window::Daily => self.daily,
            Window::Weekly => self.weekly,
            Window::Monthly => self.monthly,
        }
    }

    fn amounts(&self) -> impl Iterator<Item = Credits> {
        [self.daily, self.weekly, self.monthly]
            .into_iter()
            .flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.amounts().next().is_none()
    }
}

/// A user's budget: overall caps and caps per provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
#[schema(example = json!({"daily": 5, "monthly": 100, "per_provider": {"image": {"daily": 2}}}))]
pub struct BudgetConfig {
    pub daily: Option<Credits>,
    pub weekly: Option<Credits>,
    pub monthly: Option<Credits>,
    /// Caps on what may be spent at one provider, by provider name.
    pub per_provider: BTreeMap<String, BudgetLimits>,
    /// Set by an administrator: the user may tighten these caps, never
    /// loosen or remove them. Written by the server from who set the
    /// budget; ignored on input.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(read_only)]
    pub set_by_admin: bool,
    /// Caps on what one spender may take from this wallet: a member of
    /// the team that owns it (by user id), or one API key (by key id).
    /// They are checked on the same hold as the wallet's own caps, so no
    /// interleaving of requests can overspend either. At most
    /// [`MAX_SPENDERS`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spenders: BTreeMap<String, SpenderBudget>,
}

/// Most spenders one wallet's budget may cap.
pub const MAX_SPENDERS: usize = 1000;

/// What a spender's id may be: 1 to 128 visible ASCII characters (user
/// and key ids are far shorter).
pub const SPENDER_ID_PATTERN: &str = "^[\\x21-\\x7E]{1,128}$";

fn spender_id_ok(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// One spender's caps inside a wallet's budget: overall and per provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SpenderBudget {
    pub daily: Option<Credits>,
    pub weekly: Option<Credits>,
    pub monthly: Option<Credits>,
    pub per_provider: BTreeMap<String, BudgetLimits>,
}

impl SpenderBudget {
    /// Refuses negative caps, as a wallet's budget does.
    pub fn validate(&self) -> Result<(), BudgetError> {
        negative("", &self.overall(), &self.per_provider)
    }

    pub fn overall(&self) -> BudgetLimits {
        BudgetLimits {
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
        }
    }
}

/// Why a budget is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("budget `{0}` must not be negative")]
    Negative(String),
    #[error("a budget may cap at most {MAX_SPENDERS} spenders")]
    TooManySpenders,
    #[error("a spender's id must be 1 to 128 visible ASCII characters")]
    BadSpender,
}

impl BudgetConfig {
    pub fn overall(&self) -> BudgetLimits {
        BudgetLimits {
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
        }
    }

    /// The first cap of `self` that `new` removes or raises, by name
    /// (`daily`, `per_provider.image.weekly`, `spenders.usr_1.daily`, ...),
    /// if any.
    pub fn loosened_by(&self, new: &BudgetConfig) -> Option<String> {
        if let Some(l) = loosened(
            "",
            (&self.overall(), &self.per_provider),
            (&new.overall(), &new.per_provider),
        ) {
            return Some(l);
        }
        for (id, old) in &self.spenders {
            let new = new.spenders.get(id).cloned().unwrap_or_default();
            let at = format!("spenders.{id}.");
            let l = loosened(
                &at,
                (&old.overall(), &old.per_provider),
                (&new.overall(), &new.per_provider),
            );
            if l.is_some() {
                return l;
            }
        }
        None
    }

    pub fn validate(&self) -> Result<(), BudgetError> {
        negative("", &self.overall(), &self.per_provider)?;
        if self.spenders.len() > MAX_SPENDERS {
            return Err(BudgetError::TooManySpenders);
        }
        for (id, b) in &self.spenders {
            if !spender_id_ok(id) {
                return Err(BudgetError::BadSpender);
            }
            negative(&format!("spenders.{id}."), &b.overall(), &b.per_provider)?;
        }
        Ok(())
    }
}

/// Caps as the checks below read them: overall, and per provider.
type Caps<'a> = (&'a BudgetLimits, &'a BTreeMap<String, BudgetLimits>);

fn windows(l: &BudgetLimits) -> [(&'static str, Option<Credits>); 3] {
    [
        ("daily", l.daily),
        ("weekly", l.weekly),
        ("monthly", l.monthly),
    ]
}

/// The first cap of `old` that `new` removes or raises, named after `at`.
fn loosened(at: &str, old: Caps, new: Caps) -> Option<String> {
    fn looser(old: Option<Credits>, new: Option<Credits>) -> bool {
        match (old, new) {
            (Some(_), None) => true,
            (Some(o), Some(n)) => n > o,
            (None, _) => false,
        }
    }
    for ((name, o), (_, n)) in windows(old.0).into_iter().zip(windows(new.0)) {
        if looser(o, n) {
            return Some(format!("{at}{name}"));
        }
    }
    for (p, o) in old.1 {
        let n = new.1.get(p).cloned().unwrap_or_default();
        for ((name, o), (_, n)) in windows(o).into_iter().zip(windows(&n)) {
            if looser(o, n) {
                return Some(format!("{at}per_provider.{p}.{name}"));
            }
        }
    }
    None
}

/// The first negative cap, named after `at`.
fn negative(
    at: &str,
    overall: &BudgetLimits,
    per_provider: &BTreeMap<String, BudgetLimits>,
) -> Result<(), BudgetError> {
    for (name, v) in windows(overall) {
        if v.is_some_and(Credits::is_negative) {
            return Err(BudgetError::Negative(format!("{at}{name}")));
        }
    }
    for (p, l) in per_provider {
        if l.amounts().any(Credits::is_negative) {
            return Err(BudgetError::Negative(format!("{at}per_provider.{p}")));
        }
    }
    Ok(())
}

/// What was charged in the current window of one kind, overall and by
/// provider. Rolls over lazily when a charge or a check falls in a later
/// window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpend {
    pub start: Millis,
    pub total: Credits,
    pub per_provider: BTreeMap<String, Credits>,
}

/// Spend in the current daily, weekly and monthly windows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub daily: WindowSpend,
    pub weekly: WindowSpend,
    pub monthly: WindowSpend,
}

impl Spend {
    fn slot(&self, w: Window) -> &WindowSpend {
        match w {
            Window::Daily => &self.daily,
            Window::Weekly => &self.weekly,
            Window::Monthly => &self.monthly,
        }
    }

    fn slot_mut(&mut self, w: Window) -> &mut WindowSpend {
        match w {
            Window::Daily => &mut self.daily,
            Window::Weekly => &mut self.weekly,
            Window::Monthly => &mut self.monthly,
        }
    }

    /// Charged so far in the window of kind `w` containing `now`, overall
    /// (`provider == None`) or at one provider.
    pub fn spent(&self, w: Window, now: Millis, provider: Option<&str>) -> Credits {
        let s = self.slot(w);
        // A window that started after `now` (a stale time) is still the
        // current one; only a window that began before `now`'s has ended.
        if s.start < w.start(now) {
            return Credits::ZERO;
        }
        match provider {
            None => s.total,
            Some(p) => s.per_provider.get(p).copied().unwrap_or_default(),
        }
    }

    /// Moves windows that start after `now`'s back to `now`'s, keeping
    /// their totals (used when a fast clock is corrected).
    pub fn rewind(&mut self, now: Millis) {
        for w in Window::ALL {
            let start = w.start(now);
            let s = self.slot_mut(w);
            if s.start > start {
                s.start = start;
            }
        }
    }

    /// Counts a charge made at `now`.
    pub fn record(&mut self, now: Millis, provider: &str, amount: Credits) {
        for w in Window::ALL {
            let start = w.start(now);
            let s = self.slot_mut(w);
            // Windows only move forward: a late charge stamped before the
            // current window counts in the current one.
            if start > s.start {
                *s = WindowSpend {
                    start,
                    ..WindowSpend::default()
                };
            }
            s.total += amount;
            *s.per_provider.entry(provider.to_string()).or_default() += amount;
        }
    }
}
