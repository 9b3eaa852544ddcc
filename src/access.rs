//! Who may do what: the roles a credential (an API key, a sign-in token)
//! carries, the permissions routes require, and [`allows`], the one
//! function every route's check goes through. `docs/auth.md` shows the
//! same table; `tests/e2e/access.rs` calls every documented route with a
//! credential of each role and holds the server to that table.

use serde::{Deserialize, Serialize};

/// What a credential may do, from most to least.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, on every account.
    Admin,
    /// A team's members, keys and budgets (with teams); spends and reads
    /// like a member.
    TeamAdmin,
    /// Spends and sees their own figures; manages their own keys, budget
    /// and routing. Records made before roles had more names say `user`.
    #[serde(alias = "user")]
    Member,
    /// Reads figures (analytics, history, status); never spends or
    /// changes anything.
    Viewer,
    /// Reads figures and exports them; never spends.
    Billing,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::TeamAdmin,
        Role::Member,
        Role::Viewer,
        Role::Billing,
    ];

    /// The name the API and `docs/auth.md` use.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TeamAdmin => "team_admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::Billing => "billing",
        }
    }

    /// Whether a credential of this role may make a key of role `other`
    /// for the same account: only one that can do no more than it can.
    pub fn may_grant(self, other: Role) -> bool {
        // A team admin's rights in a team are above a member's, though
        // their permissions on routes are the same.
        if other == Role::TeamAdmin && !matches!(self, Role::Admin | Role::TeamAdmin) {
            return false;
        }
        self.covers(other)
    }

    /// Whether this role has every route permission `other` has.
    pub fn covers(self, other: Role) -> bool {
        Permission::ALL
            .iter()
            .all(|p| !allows(other, *p) || allows(self, *p))
    }
}

/// What a route requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Anyone, signed in or not (health, the dashboard's page, sign-in).
    Public,
    /// Read one's own figures: status, history, analytics, budget, keys.
    Read,
    /// Send requests that are charged (and quote them).
    Spend,
    /// Change one's own settings: keys, budget, routing, webhooks.
    Manage,
    /// Export one's own records.
    Export,
    /// Add credits to a team's wallet, where the deployment allows it
    /// (`auth.team_top_ups`) and the role in the team does: a billing
    /// credential's part beside exports.
    TopUp,
    /// Act on every account: users, credits, configuration, invitations.
    Administer,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::Public,
        Permission::Read,
        Permission::Spend,
        Permission::Manage,
        Permission::Export,
        Permission::TopUp,
        Permission::Administer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::Public => "public",
            Permission::Read => "read",
            Permission::Spend => "spend",
            Permission::Manage => "manage",
            Permission::Export => "export",
            Permission::TopUp => "top_up",
            Permission::Administer => "administer",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Whether someone whose role *in a team* is `role` may do what `p`
/// names for the whole team: read its figures, export them, manage its
/// webhooks and reports. A plain member may not: a member's figures are
/// their own, shown to them through the team's own routes.
pub const fn allows_for_team(role: Role, p: Permission) -> bool {
    !matches!(role, Role::Member) && allows(role, p)
}

/// Whether a credential of `role` may do what `p` names.
pub const fn allows(role: Role, p: Permission) -> bool {
    use Permission as P;
    match (role, p) {
        (_, P::Public) | (Role::Admin, _) => true,
        (_, P::Administer) => false,
        (Role::TeamAdmin | Role::Member, _) => true,
        (Role::Viewer, P::Read) => true,
        (Role::Billing, P::Read | P::Export | P::TopUp) => true,
        (Role::Viewer | Role::Billing, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let row = |r: Role| {
            Permission::ALL
                .iter()
                .map(|p| if allows(r, *p) { 'y' } else { '-' })
                .collect::<String>()
        };
        // public, read, spend, manage, export, administer
        assert_eq!(row(Role::Admin), "yyyyyyy");
        assert_eq!(row(Role::TeamAdmin), "yyyyyy-");
        assert_eq!(row(Role::Member), "yyyyyy-");
        assert_eq!(row(Role::Viewer), "yy-----");
        assert_eq!(row(Role::Billing), "yy--yy-");
    }

    #[test]
    fn in_a_team_only_the_admin_viewers_and_billing_act_for_the_whole_team() {
        let row = |r: Role| {
            Permission::ALL
                .iter()
                .map(|p| if allows_for_team(r, *p) { 'y' } else { '-' })
                .collect::<String>()
        };
        assert_eq!(row(Role::TeamAdmin), "yyyyyy-");
        assert_eq!(row(Role::Member), "-------");
        assert_eq!(row(Role::Viewer), "yy-----");
        assert_eq!(row(Role::Billing), "yy--yy-");
    }

    #[test]
    fn a_key_never_gets_more_than_its_maker() {
        assert!(Role::Member.may_grant(Role::Viewer));
        assert!(Role::Member.may_grant(Role::Billing));
        assert!(Role::Member.may_grant(Role::Member));
        assert!(!Role::Member.may_grant(Role::Admin));
        assert!(!Role::Viewer.may_grant(Role::Billing), "billing exports");
        assert!(!Role::Billing.may_grant(Role::Member));
        assert!(Role::Admin.may_grant(Role::Admin));
    }

    #[test]
    fn old_records_read_user_as_member() {
        let r: Role = serde_json::from_str("\"user\"").unwrap();
        assert_eq!(r, Role::Member);
        assert_eq!(
            serde_json::to_string(&Role::TeamAdmin).unwrap(),
            "\"team_admin\""
        );
        for r in Role::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.name())
            );
        }
    }
}
