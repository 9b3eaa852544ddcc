//! Accounts and sign-in: `POST /api/auth/register`, `/api/auth/login`,
//! `/api/auth/refresh`, `/api/auth/logout` (no key: they are how a person
//! gets one) and `POST /api/invitations` (admins). `docs/auth.md` says
//! how they fit together; the rules are in `usecase/accounts.rs`.

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;

use oneflow_actors::BrokerError;
use oneflow_actors::accounts::TokenPair;

use crate::access::AdminCaller;
use crate::auth::{failed, throttled};
use crate::error::ApiError;
use crate::state::AppState;

// An account's address, in each body below: printable ASCII, one `@`
// with something on each side, at most 320 characters (`account_of` in
// `usecase/accounts.rs` checks the same).

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada", "email": "ada@example.com", "password": "a tune of moss and copper", "invitation": "ofi_..."}))]
pub struct Register {
    /// 1 to 200 characters, once trimmed.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// The address to sign in with; one account per address, whatever its
    /// case.
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = r"^[\x21-\x3F\x41-\x7E]+@[\x21-\x3F\x41-\x7E]+$"
    )]
    pub email: String,
    /// 12 to 1024 characters, not one of the 10,000 most common passwords
    /// (`weak_password`).
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    /// The token of an admin's invitation (`POST /api/invitations`): needed
    /// unless `auth.open_registration` is on; good once.
    #[schema(min_length = 1, max_length = 256)]
    pub invitation: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "a tune of moss and copper"}))]
pub struct Login {
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = r"^[\x21-\x3F\x41-\x7E]+@[\x21-\x3F\x41-\x7E]+$"
    )]
    pub email: String,
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "ofr_..."}))]
pub struct RefreshToken {
    /// The refresh token of a sign-in or of the last refresh.
    #[schema(min_length = 1, max_length = 256)]
    pub refresh_token: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "grace@example.com", "expires_in_hours": 48}))]
pub struct NewInvitation {
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
}

/// A token pair, never to be cached by anything between (RFC 6749, 5.1).
fn tokens(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(pair)
}

/// Counts the caller's address's failure when sign-in refused its
/// password or token, so the per-address throttle bites on both.
async fn counted<T>(
    s: &AppState,
    req: &HttpRequest,
    r: Result<T, BrokerError>,
) -> Result<T, ApiError> {
    if let Err(BrokerError::BadCredentials | BrokerError::BadToken(_)) = &r {
        failed(s, req.peer_addr().map(|a| a.ip())).await;
    }
    Ok(r?)
}

#[post("/api/auth/register")]
pub async fn register(
    s: web::Data<AppState>,
    body: super::Object<Register>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let user = s
        .broker
        .register(b.name, b.email, b.password, b.invitation)
        .await?;
    Ok(HttpResponse::Created().json(user))
}

#[post("/api/auth/login")]
pub async fn login(
    s: web::Data<AppState>,
    req: HttpRequest,
    body: super::Object<Login>,
) -> Result<HttpResponse, ApiError> {
    throttled(&s, req.peer_addr().map(|a| a.ip()))?;
    let b = body.into_inner();
    let r = s.broker.login(b.email, b.password).await;
    Ok(tokens(counted(&s, &req, r).await?))
}

#[post("/api/auth/refresh")]
pub async fn refresh(
    s: web::Data<AppState>,
    req: HttpRequest,
    body: super::Object<RefreshToken>,
) -> Result<HttpResponse, ApiError> {
    throttled(&s, req.peer_addr().map(|a| a.ip()))?;
    let r = s.broker.refresh(body.into_inner().refresh_token).await;
    Ok(tokens(counted(&s, &req, r).await?))
}

#[post("/api/auth/logout")]
pub async fn logout(
    s: web::Data<AppState>,
    req: HttpRequest,
    body: super::Object<RefreshToken>,
) -> Result<HttpResponse, ApiError> {
    throttled(&s, req.peer_addr().map(|a| a.ip()))?;
    let r = s.broker.logout(body.into_inner().refresh_token).await;
    counted(&s, &req, r).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[post("/api/invitations")]
pub async fn invite(
    s: web::Data<AppState>,
    admin: AdminCaller,
    body: super::Object<NewInvitation>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let inv = s
        .broker
        .invite(&admin.0, b.email, b.expires_in_hours)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(inv))
}
