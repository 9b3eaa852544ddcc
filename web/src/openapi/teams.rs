//! The routes of teams. One doc-only function per route, never called:
//! its attributes describe the route; the handler is in `routes/teams.rs`.
//! Who may do what inside a team is in docs/auth.md.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::budget::BudgetConfig;
use oneflow::records::RequestRecord;
use oneflow_actors::views::{CreatedKey, Page, TeamView, WalletView};
use utoipa::ToSchema;

use super::schema::ErrorBody;
use oneflow_actors::accounts::CreatedInvitation;

use super::schema::CreditsAdded;
use crate::routes::teams::{MemberRole, NewTeam, NewTeamInvitation, NewTeamKey, TeamCredits};

// `json!` around the list, in routes/teams.rs.
#[derive(ToSchema)]
pub struct TeamList {
    /// The caller's teams (an admin: every team, at most 1000).
    pub teams: Vec<TeamView>,
}

/// Paging of a team's requests.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TeamRequestPage {
    /// 1 to 1000; default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (`<created_at>.<id>`).
    #[param(pattern = r"^[0-9]{1,18}\.")]
    pub cursor: Option<String>,
}

#[utoipa::path(post, path = "/api/teams", tag = "teams",
    request_body = NewTeam,
    responses(
        (status = 201, description = "Created, with the caller as its team_admin; its wallet starts empty", body = TeamView),
        (status = 400, description = "A name that is empty or over 200 characters", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 409, description = "The caller belongs to 100 teams already", body = ErrorBody),
    ))]
pub fn create_team() {}

#[utoipa::path(get, path = "/api/teams", tag = "teams",
    responses(
        (status = 200, description = "The caller's teams (an admin: every team)", body = TeamList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn list_teams() {}

#[utoipa::path(get, path = "/api/teams/{id}", tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    responses(
        (status = 200, description = "The team and its members' roles", body = TeamView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such team of the caller's", body = ErrorBody),
    ))]
pub fn get_team() {}

#[utoipa::path(put, path = "/api/teams/{id}/members/{user_id}", tag = "teams",
    params(
        ("id" = String, Path, description = "The team's id"),
        ("user_id" = String, Path, description = "The user to add, or whose role to change"),
    ),
    request_body = MemberRole,
    responses(
        (status = 200, description = "The team now; a member whose role narrowed loses the team keys the new role may not have", body = TeamView),
        (status = 400, description = "Not a team role", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The caller is not the team's team_admin", body = ErrorBody),
        (status = 404, description = "No such team of the caller's, or no such user", body = ErrorBody),
        (status = 409, description = "The last team_admin would go, the team has 1000 members, or the team changed meanwhile (retry)", body = ErrorBody),
    ))]
pub fn set_team_member() {}

#[utoipa::path(delete, path = "/api/teams/{id}/members/{user_id}", tag = "teams",
    params(
        ("id" = String, Path, description = "The team's id"),
        ("user_id" = String, Path, description = "The member to remove"),
    ),
    responses(
        (status = 200, description = "The team now; the member's team keys are revoked, their requests stay the team's", body = TeamView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The caller is not the team's team_admin", body = ErrorBody),
        (status = 404, description = "No such team of the caller's, or no such member", body = ErrorBody),
        (status = 409, description = "The last team_admin would go, or the team changed meanwhile (retry)", body = ErrorBody),
    ))]
pub fn remove_team_member() {}

#[utoipa::path(post, path = "/api/teams/{id}/keys", tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    request_body = NewTeamKey,
    responses(
        (status = 201, description = "A key that spends from the team's wallet as its member; `api_key` is shown this once", body = CreatedKey),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "A role above the member's in the team or the calling credential's, or another member's key asked by someone not the team_admin", body = ErrorBody),
        (status = 404, description = "No such team of the caller's", body = ErrorBody),
        (status = 409, description = "`user_id` names someone who is not a member of the team", body = ErrorBody),
        (status = 422, description = "`invalid_key_scope`: as for `POST /api/keys`", body = ErrorBody),
    ))]
pub fn create_team_key() {}

#[utoipa::path(post, path = "/api/teams/{id}/invitations", tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    request_body = NewTeamInvitation,
    responses(
        (status = 201, description = "Created; `token` is shown this once and registers one account (`POST /api/auth/register`, open registration or not), which joins the team with `team_role`", body = CreatedInvitation),
        (status = 400, description = "Bad body, a bad e-mail address or `expires_in_hours` out of 1..=720", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not the team's team_admin (nor an admin), or a credential whose role does not manage", body = ErrorBody),
        (status = 404, description = "No such team of the caller's", body = ErrorBody),
    ))]
pub fn invite_to_team() {}

#[utoipa::path(post, path = "/api/teams/{id}/credits", tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    request_body = TeamCredits,
    responses(
        (status = 200, description = "Added to the team's wallet and committed; the ledger entry's note names who added them", body = CreditsAdded),
        (status = 400, description = "Amount not positive, too precise or out of range, or a note over 500 characters", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The deployment lets only administrators add credits (`auth.team_top_ups` off), the caller is a plain member or viewer of the team, or the credential's role does not top up", body = ErrorBody),
        (status = 404, description = "No such team of the caller's", body = ErrorBody),
    ))]
pub fn top_up_team() {}

#[utoipa::path(get, path = "/api/teams/{id}/wallet", tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    responses(
        (status = 200, description = "The team's balance, holds, budget and each window's spending", body = WalletView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such team of the caller's", body = ErrorBody),
    ))]
pub fn team_wallet() {}

#[utoipa::path(put, path = "/api/teams/{id}/budget", tag = "teams",
    params(("id" = String, Path, description = "The team's id")),
    request_body(content = BudgetConfig, description = "The team's whole budget: its caps, and each member's in `spenders` (by user id); limits left out are removed"),
    responses(
        (status = 200, description = "The team's wallet with the budget now in force", body = WalletView),
        (status = 400, description = "Negative limit, unknown provider, or caps that are not objects", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The caller is not the team's team_admin, or raises a cap an admin set", body = ErrorBody),
        (status = 404, description = "No such team of the caller's", body = ErrorBody),
    ))]
pub fn set_team_budget() {}

#[utoipa::path(get, path = "/api/teams/{id}/requests", tag = "teams",
    params(("id" = String, Path, description = "The team's id"), TeamRequestPage),
    responses(
        (status = 200, description = "A page of the team's requests, newest first: all of them for its team_admin, viewers and billing members, a member's own for a member (a member's page may hold fewer than `limit`; follow `next_cursor`)", body = Page<RequestRecord>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such team of the caller's", body = ErrorBody),
    ))]
pub fn team_requests() {}
