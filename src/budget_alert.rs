//! What a budget alert e-mail says: which window of whose budget reached
//! what share of its limit, with the figures. Pure, like `report`, so the
//! words and numbers are tested without an SMTP server.
//!
//! Which percentages are mailed is `[email] budget_alerts`; of those a
//! window has reached, only the highest is mailed (a request that takes a
//! window from 40 % to 100 % sends one message, not two), and the lower
//! ones count as told.

use crate::Credits;
use crate::report::credits6;
use crate::time::{Millis, Window, rfc3339};

/// One window's crossing, as mailed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetAlert {
    /// The wallet's owner: a user's name, or a team's.
    pub owner_name: String,
    pub owner_id: String,
    pub is_team: bool,
    pub window: Window,
    pub percent: u8,
    pub limit: Credits,
    pub spent: Credits,
    pub resets_at: Millis,
}

/// Of `percents`, those `spent` has reached of `limit`, lowest first
/// (none for a limit of zero or less: nothing can be a share of it).
pub fn reached(percents: &[u8], spent: Credits, limit: Credits) -> Vec<u8> {
    if limit.micros() <= 0 {
        return Vec::new();
    }
    let mut r: Vec<u8> = percents
        .iter()
        .copied()
        .filter(|p| i128::from(spent.micros()) * 100 >= i128::from(limit.micros()) * i128::from(*p))
        .collect();
    r.sort_unstable();
    r.dedup();
    r
}

impl BudgetAlert {
    fn whose(&self) -> String {
        if self.is_team {
            format!("team {}'s", self.owner_name)
        } else {
            "your".into()
        }
    }

    /// [`Self::whose`] opening a sentence.
    fn whose_capitalised(&self) -> String {
        let whose = self.whose();
        match whose.get(..1) {
            Some(first) => first.to_uppercase() + &whose[1..],
            None => whose,
        }
    }

    pub fn subject(&self) -> String {
        format!(
            "OneFlow: {} {} budget is {}% used",
            self.whose_capitalised(),
            self.window.name(),
            self.percent
        )
    }

    pub fn text(&self) -> String {
        let remaining = Credits(self.limit.0.saturating_sub(self.spent.0).max(0));
        format!(
            "OneFlow budget alert for {} ({})\n\n\
             {} {} budget has reached {}% of its limit.\n\n\
             limit: {}\nspent: {}\nremaining: {}\nresets at: {}\n\n\
             Requests that would go over the limit are refused until then.\n",
            self.owner_name,
            self.owner_id,
            self.whose_capitalised(),
            self.window.name(),
            self.percent,
            credits6(self.limit),
            credits6(self.spent),
            credits6(remaining),
            rfc3339(self.resets_at),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: i64) -> Credits {
        Credits::from_credits(n)
    }

    #[test]
    fn reached_is_exact_at_the_line() {
        let p = [100, 80, 80];
        assert_eq!(reached(&p, Credits(7_999_999), c(10)), Vec::<u8>::new());
        assert_eq!(reached(&p, c(8), c(10)), vec![80]);
        assert_eq!(reached(&p, c(10), c(10)), vec![80, 100]);
        assert_eq!(reached(&p, c(12), c(10)), vec![80, 100]);
        assert!(reached(&p, c(5), Credits::ZERO).is_empty());
    }

    #[test]
    fn the_message_names_the_window_and_the_figures() {
        let a = BudgetAlert {
            owner_name: "Research".into(),
            owner_id: "team_1".into(),
            is_team: true,
            window: Window::Daily,
            percent: 80,
            limit: c(10),
            spent: Credits(8_500_000),
            resets_at: 86_400_000,
        };
        assert_eq!(
            a.subject(),
            "OneFlow: Team Research's daily budget is 80% used"
        );
        let t = a.text();
        assert!(t.contains("limit: 10.000000\n"), "{t}");
        assert!(t.contains("spent: 8.500000\n"), "{t}");
        assert!(t.contains("remaining: 1.500000\n"), "{t}");
        assert!(t.contains("resets at: 1970-01-02T00:00:00.000Z"), "{t}");
        assert!(
            t.contains("Team Research's daily budget has reached 80%"),
            "{t}"
        );
        let mine = BudgetAlert {
            is_team: false,
            ..a
        };
        assert_eq!(mine.subject(), "OneFlow: Your daily budget is 80% used");
    }
}
