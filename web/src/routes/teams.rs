//! Teams (`docs/auth.md`): `POST/GET /api/teams`, `GET /api/teams/{id}`,
//! members and their roles, team keys, the team's wallet and budget, and
//! its requests. What a caller may do in a team is the team's business
//! (`usecase/teams.rs`); the credential's own role is checked here first.

use actix_web::{HttpResponse, delete, get, post, put, web};
use serde::Deserialize;

use oneflow::access::Role;
use oneflow::budget::BudgetConfig;

use crate::access::{Manager, Reader, TopUpper};
use crate::error::ApiError;
use crate::routes::Object;
use crate::routes::history::PageQuery;
use crate::state::AppState;

/// A new team; its first member, the caller, is its `team_admin`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "research"}))]
pub struct NewTeam {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

/// The roles a member may have in a team.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    TeamAdmin,
    Member,
    Viewer,
    Billing,
}

impl From<TeamRole> for Role {
    fn from(r: TeamRole) -> Role {
        match r {
            TeamRole::TeamAdmin => Role::TeamAdmin,
            TeamRole::Member => Role::Member,
            TeamRole::Viewer => Role::Viewer,
            TeamRole::Billing => Role::Billing,
        }
    }
}

/// A member's role in the team.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "member"}))]
pub struct MemberRole {
    pub role: TeamRole,
}

/// A key that spends from the team's wallet.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "member"}))]
pub struct NewTeamKey {
    /// Whose key (default: the caller); another member's is the team
    /// admin's to make.
    pub user_id: Option<String>,
    /// At most the member's role in the team (default: that role).
    pub role: Option<TeamRole>,
    /// As for `POST /api/keys`: the only models the key may use.
    pub models: Option<Vec<String>>,
    /// As for `POST /api/keys`: the only providers it may be routed to.
    pub providers: Option<Vec<String>>,
    /// As for `POST /api/keys`: an RFC 3339 date-time in the future.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The key's own caps, inside the team's and the member's.
    pub budget: Option<oneflow::budget::SpenderBudget>,
    /// Whether its requests use the response cache (docs/cache.md).
    pub cache: Option<oneflow::cache::CacheMode>,
}

#[post("/api/teams")]
pub async fn create(
    s: web::Data<AppState>,
    c: Manager,
    body: Object<NewTeam>,
) -> Result<HttpResponse, ApiError> {
    let team = s.broker.create_team(&c.0, body.into_inner().name).await?;
    Ok(HttpResponse::Created().json(team))
}

#[get("/api/teams")]
pub async fn list(s: web::Data<AppState>, c: Reader) -> Result<HttpResponse, ApiError> {
    let teams = s.broker.teams(&c.0).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "teams": teams })))
}

#[get("/api/teams/{id}")]
pub async fn get_one(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.team(&c.0, &id).await?))
}

#[put("/api/teams/{id}/members/{user_id}")]
pub async fn set_member(
    s: web::Data<AppState>,
    c: Manager,
    path: web::Path<(String, String)>,
    body: Object<MemberRole>,
) -> Result<HttpResponse, ApiError> {
    let (id, user_id) = path.into_inner();
    let team = s
        .broker
        .set_team_member(&c.0, &id, &user_id, body.role.into())
        .await?;
    Ok(HttpResponse::Ok().json(team))
}

#[delete("/api/teams/{id}/members/{user_id}")]
pub async fn remove_member(
    s: web::Data<AppState>,
    c: Manager,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, user_id) = path.into_inner();
    let team = s.broker.remove_team_member(&c.0, &id, &user_id).await?;
    Ok(HttpResponse::Ok().json(team))
}

#[post("/api/teams/{id}/keys")]
pub async fn create_key(
    s: web::Data<AppState>,
    c: Manager,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let b: NewTeamKey = crate::routes::keys::key_body(body.into_inner())?;
    let mut scope = crate::routes::keys::scope_of(b.models, b.providers, b.expires_at, b.budget)?;
    scope.cache = b.cache;
    let role = b.role.map(Into::into);
    let key = s
        .broker
        .create_team_key(&c.0, &id, b.user_id.as_deref(), role, scope)
        .await?;
    Ok(HttpResponse::Created().json(key))
}

/// An invitation into the team: whoever registers with it joins the team
/// with `role`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "grace@example.com", "role": "member"}))]
pub struct NewTeamInvitation {
    /// The only address the invitation registers; any address if absent.
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = r"^[\x21-\x3F\x41-\x7E]+@[\x21-\x3F\x41-\x7E]+$"
    )]
    pub email: Option<String>,
    /// Hours it stays good; default 72.
    #[schema(minimum = 1, maximum = 720)]
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    pub expires_in_hours: Option<u32>,
    /// The new member's role in the team (default: member).
    pub role: Option<TeamRole>,
}

#[post("/api/teams/{id}/invitations")]
pub async fn invite(
    s: web::Data<AppState>,
    c: Manager,
    id: web::Path<String>,
    body: Object<NewTeamInvitation>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let role = b.role.map_or(Role::Member, Into::into);
    let inv = s
        .broker
        .invite_to_team(&c.0, &id, role, b.email, b.expires_in_hours)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::CACHE_CONTROL,
            actix_web::http::header::HeaderValue::from_static("no-store"),
        ))
        .json(inv))
}

/// Credits a team admin or billing member adds to the team's wallet
/// (where the deployment allows it: `auth.team_top_ups`).
#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 25, "note": "PO 1187"}))]
pub struct TeamCredits {
    /// Greater than zero.
    pub amount: oneflow::Credits,
    /// Kept in the ledger entry, with who added the credits.
    #[schema(max_length = 500)]
    #[serde(default)]
    pub note: Option<String>,
}

#[post("/api/teams/{id}/credits")]
pub async fn top_up(
    s: web::Data<AppState>,
    c: TopUpper,
    req: actix_web::HttpRequest,
    id: web::Path<String>,
    body: Object<TeamCredits>,
) -> Result<HttpResponse, ApiError> {
    let idem = super::idempotency_key(&req, &*body)?;
    let b = body.into_inner();
    if b.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::BadRequest(
            "`note` is longer than 500 characters".into(),
        ));
    }
    let done = s
        .broker
        .top_up_team(&c.0, &id, b.amount, b.note, idem)
        .await?;
    Ok(super::credits::added(&id, b.amount, done))
}

#[get("/api/teams/{id}/wallet")]
pub async fn wallet(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.team_wallet(&c.0, &id).await?))
}

#[put("/api/teams/{id}/budget")]
pub async fn set_budget(
    s: web::Data<AppState>,
    c: Manager,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !crate::routes::budget::objects_all_the_way(&body) {
        return Err(ApiError::BadRequest(
            "the budget, each provider's limits and each spender's caps must be JSON objects"
                .into(),
        ));
    }
    let budget: BudgetConfig = crate::routes::typed(body)?;
    Ok(HttpResponse::Ok().json(s.broker.set_team_budget(&c.0, &id, budget).await?))
}

#[get("/api/teams/{id}/requests")]
pub async fn requests(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.user_id.is_some() {
        return Err(ApiError::BadRequest(
            "`user_id` does not apply to a team's requests".into(),
        ));
    }
    let page = s
        .broker
        .team_requests(&c.0, &id, q.cursor.as_deref(), q.limit()?)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}
