//! Teams: a wallet that several users spend from, each with a role in the
//! team (`team_admin`, `member`, `viewer`, `billing`) and, if the team's
//! admin sets one, caps of their own inside the team's budget.
//!
//! A team is a document (`store/docs.rs`, kind `team`) holding its members
//! and their roles, with one index document per membership
//! (`team-member`, `<user>/<team>`) so a user's teams are one prefix read.
//! Changes are compare-and-set on the team's version, so two admins
//! editing at once never lose each other's change. The team's money is an
//! ordinary wallet under the team's id: holds, settles, budgets and their
//! exact admission are the wallet's own. A member spends through a team
//! key (`POST /api/teams/{id}/keys`): its requests are held on the team's
//! wallet as that member's (`Payer`), so the member's own caps bound them
//! too, and their records say which member sent them.

use std::collections::BTreeMap;

use oneflow::access::{Permission, Role};
use oneflow::budget::{BudgetConfig, MAX_SPENDERS};
use oneflow::key_scope::KeyScope;
use oneflow::records::RequestRecord;

use super::keys::Principal;
use super::membership::{TEAM, administered, load, visible};
pub(crate) use super::membership::{act_for, is_team};
use super::{Services, blocking, budgets, users};
use crate::error::BrokerError;
use crate::ids::{new_id, now_ms};
use crate::store::{DocWrite, User, WriteOp};
use crate::views::{CreatedKey, Page, TeamView, WalletView};

const MEMBERSHIP: &str = "team-member";
/// Most teams one user may belong to (a bound on the membership reads).
const MAX_TEAMS_PER_USER: usize = 100;
/// Most teams one listing reads (admins' listing of every team).
const MAX_LISTED: usize = 1000;

fn membership_id(user_id: &str, team_id: &str) -> String {
    format!("{user_id}/{team_id}")
}

/// Writes a team's new state over version `v`, with its membership
/// index; a conflict with another change is a 409 to retry.
async fn save(
    s: &Services,
    v: u64,
    team: &TeamView,
    mut more: Vec<DocWrite>,
) -> Result<(), BrokerError> {
    let mut writes = vec![DocWrite::replace(TEAM, &team.id, v, team)?];
    writes.append(&mut more);
    let store = s.store.clone();
    if blocking(move || store.write_docs(writes)).await? {
        Ok(())
    } else {
        Err(BrokerError::Conflict(
            "the team changed meanwhile; read it again and retry".into(),
        ))
    }
}

/// Makes a team whose first member, its `team_admin`, is the caller.
pub(crate) async fn create(
    s: &Services,
    who: &Principal,
    name: String,
) -> Result<TeamView, BrokerError> {
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(BrokerError::BadInput(
            "`name` must be 1 to 200 characters".into(),
        ));
    }
    let mine = memberships(s, &who.user_id).await?;
    if mine.len() >= MAX_TEAMS_PER_USER {
        return Err(BrokerError::Conflict(format!(
            "a user may belong to at most {MAX_TEAMS_PER_USER} teams"
        )));
    }
    let team = TeamView {
        id: new_id("team"),
        name,
        created_at: now_ms(),
        members: BTreeMap::from([(who.user_id.clone(), Role::TeamAdmin)]),
    };
    // The wallet layer keeps wallets of accounts: the team's money is the
    // wallet of an account under the team's id, which no one can sign in
    // as (it has no key and no password) and listings of users leave out.
    // It is committed first: a team whose documents then failed to land is
    // an account nobody sees.
    let account = User {
        id: team.id.clone(),
        name: team.name.clone(),
        email: String::new(),
        role: Role::Member,
        created_at: team.created_at,
        strategy: None,
    };
    s.persist
        .write(vec![WriteOp::PutUser(account)])
        .await
        .map_err(BrokerError::Store)?;
    let index = DocWrite::create(
        MEMBERSHIP,
        &membership_id(&who.user_id, &team.id),
        &Role::TeamAdmin,
    )?;
    save(s, 0, &team, vec![index]).await?;
    Ok(team)
}

/// The ids of the teams `user_id` belongs to.
async fn memberships(s: &Services, user_id: &str) -> Result<Vec<String>, BrokerError> {
    let (store, prefix) = (s.store.clone(), format!("{user_id}/"));
    let docs =
        blocking(move || store.docs(MEMBERSHIP, &prefix, None, MAX_TEAMS_PER_USER + 1)).await?;
    Ok(docs
        .into_iter()
        .filter_map(|(id, _)| id.rsplit_once('/').map(|(_, t)| t.to_string()))
        .collect())
}

/// The caller's teams; every team for an admin.
pub(crate) async fn list(s: &Services, who: &Principal) -> Result<Vec<TeamView>, BrokerError> {
    if who.is_admin() {
        let store = s.store.clone();
        let docs = blocking(move || store.docs(TEAM, "", None, MAX_LISTED)).await?;
        return docs.iter().map(|(_, d)| Ok(d.decode()?)).collect();
    }
    let mut out = Vec::new();
    for id in memberships(s, &who.user_id).await? {
        if let Ok((_, t)) = load(s, &id).await {
            out.push(t);
        }
    }
    Ok(out)
}

pub(crate) async fn get(s: &Services, who: &Principal, id: &str) -> Result<TeamView, BrokerError> {
    Ok(visible(s, who, id).await?.1)
}

/// Adds a member or changes their role.
pub(crate) async fn set_member(
    s: &Services,
    who: &Principal,
    id: &str,
    user_id: &str,
    role: Role,
) -> Result<TeamView, BrokerError> {
    if role == Role::Admin {
        return Err(BrokerError::BadInput(
            "a member's role is team_admin, member, viewer or billing".into(),
        ));
    }
    let (v, mut team) = administered(s, who, id).await?;
    if is_team(user_id) {
        return Err(BrokerError::NotFound("user"));
    }
    users::require(s, user_id).await?;
    let had = team.members.insert(user_id.to_string(), role);
    if had.is_none() && team.members.len() > MAX_SPENDERS {
        return Err(BrokerError::Conflict(format!(
            "a team may have at most {MAX_SPENDERS} members"
        )));
    }
    if had == Some(Role::TeamAdmin) && role != Role::TeamAdmin && !has_admin(&team) {
        return Err(BrokerError::Conflict(
            "a team keeps at least one team_admin".into(),
        ));
    }
    let mid = membership_id(user_id, id);
    let index = match had {
        None => DocWrite::create(MEMBERSHIP, &mid, &role)?,
        Some(_) => {
            let (store, m) = (s.store.clone(), mid.clone());
            let cur = blocking(move || store.doc(MEMBERSHIP, &m)).await?;
            DocWrite::replace(MEMBERSHIP, &mid, cur.map_or(0, |d| d.version), &role)?
        }
    };
    save(s, v, &team, vec![index]).await?;
    if had.is_some_and(|old| old != role) {
        // Keys made under the old role may do no more than the new one.
        revoke_keys(s, id, user_id, |k| !role.may_grant(k)).await?;
    }
    Ok(team)
}

/// Revokes `user_id`'s keys of team `id` whose role `which` picks, each
/// through the one revocation path (durable, then out of every cache);
/// the member's own principal may revoke their keys.
async fn revoke_keys(
    s: &Services,
    id: &str,
    user_id: &str,
    which: impl Fn(Role) -> bool,
) -> Result<(), BrokerError> {
    let member = Principal {
        user_id: user_id.to_string(),
        role: Role::Member,
        team: None,
        scope: None,
        key_id: None,
    };
    for key in super::keys::list(s, Some(user_id)).await? {
        if key.team.as_deref() == Some(id) && which(key.role) {
            super::keys::revoke(s, &member, &key.id).await?;
        }
    }
    Ok(())
}

fn has_admin(team: &TeamView) -> bool {
    team.members.values().any(|r| *r == Role::TeamAdmin)
}

/// Removes a member: their keys for the team are revoked, their records
/// stay the team's.
pub(crate) async fn remove_member(
    s: &Services,
    who: &Principal,
    id: &str,
    user_id: &str,
) -> Result<TeamView, BrokerError> {
    let (v, mut team) = administered(s, who, id).await?;
    if team.members.remove(user_id).is_none() {
        return Err(BrokerError::NotFound("member"));
    }
    if !has_admin(&team) {
        return Err(BrokerError::Conflict(
            "a team keeps at least one team_admin".into(),
        ));
    }
    let mid = membership_id(user_id, id);
    let (store, m) = (s.store.clone(), mid.clone());
    let cur = blocking(move || store.doc(MEMBERSHIP, &m)).await?;
    let more = cur
        .map(|d| DocWrite::delete(MEMBERSHIP, &mid, d.version))
        .into_iter()
        .collect();
    save(s, v, &team, more).await?;
    revoke_keys(s, id, user_id, |_| true).await?;
    Ok(team)
}

/// A key that spends from the team's wallet as `user_id` (default: the
/// caller), within `scope` (its own budget is one more cap inside the
/// member's). Its role is at most the member's role in the team and, unless
/// an admin asks, the calling credential's; another member's key is the
/// team admin's to make.
pub(crate) async fn create_key(
    s: &Services,
    who: &Principal,
    id: &str,
    user_id: Option<&str>,
    role: Option<Role>,
    scope: KeyScope,
) -> Result<CreatedKey, BrokerError> {
    let target = user_id.unwrap_or(&who.user_id).to_string();
    let (_, team) = if target == who.user_id {
        visible(s, who, id).await?
    } else {
        administered(s, who, id).await?
    };
    // The team is there (the path's resource); the body names someone
    // outside it: a conflict with the team's state, not a missing team.
    let Some(member_role) = team.members.get(&target).copied() else {
        return Err(BrokerError::Conflict(format!(
            "`{target}` is not a member of this team; add them first"
        )));
    };
    let role = role.unwrap_or(member_role);
    if role == Role::Admin
        || !member_role.may_grant(role)
        || !(who.is_admin() || who.role.covers(role))
    {
        return Err(BrokerError::Forbidden(format!(
            "a key of this team for this member may be at most {}",
            member_role.name()
        )));
    }
    super::keys::store_key(s, target, role, Some(id.to_string()), scope).await
}

/// The team's wallet: balance, holds, budget and its windows; for any
/// member.
pub(crate) async fn wallet(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<WalletView, BrokerError> {
    visible(s, who, id).await?;
    budgets::wallet(s, id).await
}

/// Replaces the team's budget (its caps and each member's), for its
/// team_admin; an admin's caps may be lowered by the team admin, not
/// raised.
pub(crate) async fn set_budget(
    s: &Services,
    who: &Principal,
    id: &str,
    budget: BudgetConfig,
) -> Result<WalletView, BrokerError> {
    administered(s, who, id).await?;
    budgets::set(s, id, budget, who.is_admin()).await
}

/// A page of the team's requests: all of them for its team_admin,
/// viewers and billing, a member's own for a member.
pub(crate) async fn requests(
    s: &Services,
    who: &Principal,
    id: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<RequestRecord>, BrokerError> {
    let (_, team) = visible(s, who, id).await?;
    let sees_all = who.is_admin() || team.members.get(&who.user_id) != Some(&Role::Member);
    let mut page = super::history::requests(s, id, cursor, limit).await?;
    if !sees_all {
        // The cursor still walks the team's records, so the next page
        // goes on after what this one read, even when it shows fewer.
        page.items
            .retain(|r| r.member.as_deref() == Some(&who.user_id));
    }
    Ok(page)
}

/// The members who answer for the team's money, whom its mail goes to:
/// its team admins and billing members, by user id.
pub(crate) async fn accountable(s: &Services, id: &str) -> Result<Vec<String>, BrokerError> {
    let (_, team) = load(s, id).await?;
    Ok(team
        .members
        .into_iter()
        .filter(|(_, role)| matches!(role, Role::TeamAdmin | Role::Billing))
        .map(|(user, _)| user)
        .collect())
}

/// Checks that `who` administers team `id` and that `role` is one a
/// member can have, before an invitation into the team is made.
pub(crate) async fn may_invite(
    s: &Services,
    who: &Principal,
    id: &str,
    role: Role,
) -> Result<(), BrokerError> {
    if role == Role::Admin {
        return Err(BrokerError::BadInput(
            "a member's role is team_admin, member, viewer or billing".into(),
        ));
    }
    administered(s, who, id).await.map(|_| ())
}

/// Adds a newly registered account to team `id` with `role`, as its
/// invitation promised; a member already there keeps their role. Retried
/// over concurrent changes to the team.
pub(crate) async fn join(
    s: &Services,
    id: &str,
    user_id: &str,
    role: Role,
) -> Result<(), BrokerError> {
    const TRIES: usize = 8;
    for _ in 0..TRIES {
        let (v, mut team) = load(s, id).await?;
        if team.members.contains_key(user_id) {
            return Ok(());
        }
        if team.members.len() >= MAX_SPENDERS {
            return Err(BrokerError::Conflict(format!(
                "a team may have at most {MAX_SPENDERS} members"
            )));
        }
        team.members.insert(user_id.to_string(), role);
        let index = DocWrite::create(MEMBERSHIP, &membership_id(user_id, id), &role)?;
        match save(s, v, &team, vec![index]).await {
            Err(BrokerError::Conflict(_)) => continue,
            done => return done,
        }
    }
    Err(BrokerError::Busy)
}

/// Adds credits to the team's wallet for its team_admin or a billing
/// member, where the deployment allows it (`auth.team_top_ups`; an admin
/// may always). The ledger's top-up entry names who added them.
pub(crate) async fn top_up(
    s: &Services,
    who: &Principal,
    id: &str,
    amount: oneflow::Credits,
    note: Option<String>,
    idem: Option<crate::wallet::IdemKey>,
) -> Result<crate::wallet::ToppedUp, BrokerError> {
    if !who.is_admin() && !s.config.auth.team_top_ups {
        // Said before anything of the team is looked at: the same answer
        // for every caller, whatever teams exist.
        return Err(BrokerError::Forbidden(
            "this deployment lets only administrators add credits (auth.team_top_ups is off)"
                .into(),
        ));
    }
    act_for(s, who, id, Permission::TopUp).await?;
    let by = format!("added by {}", who.user_id);
    let note = Some(match note {
        Some(n) => format!("{n} ({by})"),
        None => by,
    });
    users::add_credits(s, id, amount, note, idem).await
}
