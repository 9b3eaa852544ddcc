//! Spenders' own caps inside one wallet (a team's members, keys): tests of
//! `Wallet::hold_as`, `settle` and `retarget` with `BudgetConfig::spenders`.

use proptest::prelude::*;

use crate::budget::{BudgetLimits, SpenderBudget};
use crate::ledger::{Refusal, Wallet};
use crate::money::Credits;
use crate::time::Window;

const DAY0: i64 = 1_700_006_400_000; // a UTC midnight

fn c(n: i64) -> Credits {
    Credits::from_credits(n)
}

fn team(balance: i64) -> Wallet {
    let mut w = Wallet::new("team_1");
    w.top_up(c(balance), None, DAY0).unwrap();
    w
}

fn cap(daily: i64) -> SpenderBudget {
    SpenderBudget {
        daily: Some(c(daily)),
        ..Default::default()
    }
}

#[test]
fn each_spender_is_held_to_their_own_cap_and_the_wallet_to_its_own() {
    let mut w = team(100);
    w.budget.daily = Some(c(12));
    w.budget.spenders.insert("ann".into(), cap(5));
    w.budget.spenders.insert("bob".into(), cap(10));
    let ann = ["ann".to_string()];
    let bob = ["bob".to_string()];
    let (h1, _) = w.hold_as("r1", "p", c(4), &ann, DAY0).unwrap();
    // 4 held + 2 > 5: refused as ann's, not the wallet's.
    let err = w.hold_as("r2", "p", c(2), &ann, DAY0).unwrap_err();
    assert!(
        matches!(&err, Refusal::BudgetExceeded { spender: Some(s), window: Window::Daily, .. } if s == "ann"),
        "{err}"
    );
    assert!(err.to_string().contains("of ann"), "{err}");
    // Bob has room of his own; the wallet's 12 is what stops him.
    let (h2, _) = w.hold_as("r3", "p", c(7), &bob, DAY0).unwrap();
    let err = w.hold_as("r4", "p", c(2), &bob, DAY0).unwrap_err();
    assert!(
        matches!(&err, Refusal::BudgetExceeded { spender: None, .. }),
        "{err}"
    );
    // Settling counts the charge in the spender's window.
    w.settle(h1.id, c(3), DAY0).unwrap();
    w.settle(h2.id, c(1), DAY0).unwrap();
    assert_eq!(
        w.spender_spend["ann"].spent(Window::Daily, DAY0, None),
        c(3)
    );
    assert_eq!(
        w.spender_spend["bob"].spent(Window::Daily, DAY0, Some("p")),
        c(1)
    );
    assert!(w.hold_as("r5", "p", c(3), &ann, DAY0).is_err(), "3 + 3 > 5");
    assert!(w.hold_as("r6", "p", c(2), &ann, DAY0).is_ok(), "3 + 2 = 5");
    // A spender without caps of their own is bounded by the wallet only.
    assert!(
        w.hold_as("r7", "p", c(3), &["cy".to_string()], DAY0)
            .is_ok()
    );
    // The next day the spenders' windows are empty again.
    let next = DAY0 + 86_400_000;
    assert_eq!(
        w.spender_spend["ann"].spent(Window::Daily, next, None),
        Credits::ZERO
    );
    w.check().unwrap();
}

#[test]
fn a_fallback_keeps_to_the_spenders_caps_at_the_new_provider() {
    let mut w = team(100);
    let mut b = cap(50);
    b.per_provider.insert(
        "q".into(),
        BudgetLimits {
            daily: Some(c(3)),
            ..Default::default()
        },
    );
    w.budget.spenders.insert("ann".into(), b);
    let (h, _) = w
        .hold_as("r1", "p", c(4), &["ann".to_string()], DAY0)
        .unwrap();
    let err = w.retarget(h.id, "q", DAY0).unwrap_err();
    assert!(
        matches!(&err, Refusal::BudgetExceeded { spender: Some(_), provider: Some(p), .. } if p == "q"),
        "{err}"
    );
    w.retarget(h.id, "r", DAY0).unwrap();
}

#[test]
fn spender_caps_are_validated_and_an_admins_cannot_be_loosened() {
    let mut b = crate::budget::BudgetConfig::default();
    b.spenders.insert("ann".into(), cap(5));
    b.validate().unwrap();
    let mut looser = b.clone();
    looser.spenders.insert("ann".into(), cap(6));
    assert_eq!(
        b.loosened_by(&looser).as_deref(),
        Some("spenders.ann.daily")
    );
    let mut gone = b.clone();
    gone.spenders.clear();
    assert_eq!(b.loosened_by(&gone).as_deref(), Some("spenders.ann.daily"));
    let mut neg = b.clone();
    neg.spenders.insert("bob".into(), cap(-1));
    assert!(
        neg.validate()
            .unwrap_err()
            .to_string()
            .contains("spenders.bob.daily")
    );
}

proptest! {
    /// Whatever the order of holds, settles and releases by three spenders
    /// under their own caps and the wallet's, no window's charged-plus-held
    /// ever passes a cap, and the ledger balances.
    #[test]
    fn no_interleaving_overspends_a_spender_or_the_wallet(
        ops in proptest::collection::vec((0usize..3, 1i64..6, 0u8..3), 1..120)
    ) {
        let names = ["ann", "bob", "cy"];
        let mut w = team(1000);
        w.budget.daily = Some(c(30));
        w.budget.spenders.insert("ann".into(), cap(7));
        w.budget.spenders.insert("bob".into(), cap(11));
        let mut open: Vec<(u64, usize)> = Vec::new();
        for (i, (who, amount, action)) in ops.into_iter().enumerate() {
            match action {
                0 | 1 => {
                    let s = [names[who].to_string()];
                    if let Ok((h, _)) = w.hold_as(&format!("r{i}"), "p", c(amount), &s, DAY0) {
                        open.push((h.id, who));
                    }
                }
                _ => {
                    if let Some((id, _)) = open.pop() {
                        if amount % 2 == 0 {
                            w.settle(id, c(amount), DAY0).unwrap();
                        } else {
                            w.release(id, None, DAY0).unwrap();
                        }
                    }
                }
            }
            for (n, limit) in [("ann", 7), ("bob", 11)] {
                let spent = w.spender_spend.get(n).map_or(Credits::ZERO, |s| s.spent(Window::Daily, DAY0, None));
                let held: Credits = w.holds.values().filter(|h| h.spenders.iter().any(|x| x == n)).map(|h| h.amount).sum();
                prop_assert!(spent + held <= c(limit), "{n}: {spent} + {held}");
            }
            let total = w.spend.spent(Window::Daily, DAY0, None) + w.held();
            prop_assert!(total <= c(30));
            prop_assert!(w.check().is_ok());
        }
    }
}

#[test]
fn a_keys_own_caps_bound_its_holds_beside_the_members() {
    use crate::key_scope::{KeyScope, ScopedKey};
    let mut w = team(100);
    w.budget.spenders.insert("ann".into(), cap(10));
    let key = ScopedKey {
        id: "key_1".into(),
        scope: KeyScope {
            budget: Some(cap(4)),
            ..Default::default()
        },
    };
    let ann = ["ann".to_string()];
    let (h, _) = w
        .hold_with("r1", "p", c(3), &ann, Some(&key), DAY0)
        .unwrap();
    assert_eq!(h.spenders, ["ann", "key_1"], "the key counts as a spender");
    let err = w
        .hold_with("r2", "p", c(2), &ann, Some(&key), DAY0)
        .unwrap_err();
    assert!(
        matches!(&err, Refusal::BudgetExceeded { spender: Some(s), .. } if s == "key_1"),
        "{err}"
    );
    w.settle(h.id, c(3), DAY0).unwrap();
    assert_eq!(
        w.spender_spend["key_1"].spent(Window::Daily, DAY0, None),
        c(3)
    );
    // Without the key, ann still has her own room.
    assert!(w.hold_as("r3", "p", c(6), &ann, DAY0).is_ok());
    w.check().unwrap();
}
