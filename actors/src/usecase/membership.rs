//! Who belongs to a team and what they may do for it: the team document
//! read by id, and the checks every use case of a team's makes (see
//! `teams.rs` for the teams themselves). Apart from `teams.rs` so that
//! history and jobs, which `teams.rs` builds on, can ask too.

use oneflow::access::{Permission, Role, allows_for_team};

use super::keys::Principal;
use super::{Services, blocking};
use crate::error::BrokerError;
use crate::views::TeamView;

/// The document kind of a team.
pub(crate) const TEAM: &str = "team";

/// Whether `id` names a team's wallet (team ids are `team_` and hex).
pub(crate) fn is_team(id: &str) -> bool {
    id.starts_with("team_")
}

/// The team `id` and its version; 404 for an id that is not a team's.
pub(crate) async fn load(s: &Services, id: &str) -> Result<(u64, TeamView), BrokerError> {
    if !is_team(id) || id.len() > 64 {
        return Err(BrokerError::NotFound("team"));
    }
    let (store, key) = (s.store.clone(), id.to_string());
    let doc = blocking(move || store.doc(TEAM, &key))
        .await?
        .ok_or(BrokerError::NotFound("team"))?;
    Ok((doc.version, doc.decode()?))
}

/// The team, if `who` may see it: a member of it, or an admin. Anyone
/// else learns nothing of it.
pub(crate) async fn visible(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<(u64, TeamView), BrokerError> {
    let (v, team) = load(s, id).await?;
    if who.is_admin() || team.members.contains_key(&who.user_id) {
        Ok((v, team))
    } else {
        Err(BrokerError::NotFound("team"))
    }
}

/// The team, if `who` administers it (its `team_admin`, or an admin).
pub(crate) async fn administered(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<(u64, TeamView), BrokerError> {
    let (v, team) = visible(s, who, id).await?;
    if who.is_admin() || team.members.get(&who.user_id) == Some(&Role::TeamAdmin) {
        Ok((v, team))
    } else {
        Err(BrokerError::Forbidden(
            "only the team's team_admin (or an admin) may do this".into(),
        ))
    }
}

/// `Ok` if `who` may act for the whole team `id` in what `need` names
/// (`oneflow::access::allows_for_team`: its team_admin, and its viewers
/// and billing members for what their role allows). Outsiders learn
/// nothing of the team (404); a member is told why not (403).
pub(crate) async fn act_for(
    s: &Services,
    who: &Principal,
    id: &str,
    need: Permission,
) -> Result<(), BrokerError> {
    let (_, team) = visible(s, who, id).await?;
    if who.is_admin() {
        return Ok(());
    }
    match team.members.get(&who.user_id) {
        Some(role) if allows_for_team(*role, need) => Ok(()),
        Some(role) => Err(BrokerError::Forbidden(format!(
            "your role in this team, {}, does not allow `{}` for the whole team",
            role.name(),
            need.name()
        ))),
        None => Err(BrokerError::NotFound("team")),
    }
}

/// Whether `who` may see a record or job of wallet `owner` sent by
/// `member`: their own, one they sent from a team's wallet, any of a team
/// whose figures they may read (`act_for`), anything for an admin.
pub(crate) async fn sees(s: &Services, who: &Principal, owner: &str, member: Option<&str>) -> bool {
    who.is_admin()
        || owner == who.user_id
        || member == Some(who.user_id.as_str())
        || (is_team(owner) && act_for(s, who, owner, Permission::Read).await.is_ok())
}
