//! Accounts: registering with an e-mail address and a password (open, or
//! by an admin's invitation), signing in for a pair of tokens, refreshing
//! and signing out; and the access token as a way to authenticate, beside
//! API keys. `docs/auth.md` tells the story; this file is its code.
//!
//! Everything here is kept as documents (`store/docs.rs`), whose
//! compare-and-set writes make each one-time thing happen once across
//! HTTP workers and nodes: an address is registered once (the credential
//! is created at version 0), an invitation used once, a refresh token
//! spent once. Secrets are never stored: a password as its Argon2id hash
//! (`password.rs`), an invitation and a refresh token as their SHA-256
//! (each has 256 random bits, so a plain hash is enough).
//!
//! | kind | id | what |
//! |---|---|---|
//! | `credential` | the address, lower case | user id, password hash |
//! | `invitation` | SHA-256 of the token, hex | bound address, expiry, use |
//! | `refresh` | SHA-256 of the token, hex | family, user, expiry, spent |
//! | `session` | the family's id | user, revoked, latest expiry |
//! | `lockout` | the address, lower case | recent wrong passwords (`lockout.rs`) |
//! | `secret` | `jwt` | the signing key, when not configured (`tokens.rs`) |

mod lockout;
mod password;
mod purge;
mod sessions;
mod tokens;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use oneflow::access::Role;
use oneflow::auth::{MAX_PASSWORD_CHARS, account_email, check_password};
use oneflow::time::Millis;

use super::keys::Principal;
use super::users::new_user;
use super::{Services, teams};
use crate::error::BrokerError;
use crate::ids::{key_hash, new_id, now_ms};
use crate::store::{DocWrite, Store, User, WriteOp};

pub(crate) use purge::schedule_purge;
pub use sessions::TokenPair;
pub(crate) use sessions::{logout, refresh};
pub use tokens::looks_like_jwt;

const CREDENTIAL: &str = "credential";
const INVITATION: &str = "invitation";
const REFRESH: &str = "refresh";
const SESSION: &str = "session";

/// Longest e-mail address, in bytes: it is a document id (at most 512).
const MAX_EMAIL_BYTES: usize = 320;
/// Longest refresh token or invitation looked up: ours are 68 characters.
const MAX_TOKEN_BYTES: usize = 256;
/// Hours an invitation lasts unless told, and at most.
pub const DEFAULT_INVITATION_HOURS: u32 = 72;
pub const MAX_INVITATION_HOURS: u32 = 720;
/// Compare-and-set tries when revoking a family that changes meanwhile.
const TRIES: usize = 8;

/// What accounts keep in memory: the signing key, read or made on first
/// use, and the slots of password hashing.
#[derive(Default)]
pub(crate) struct State {
    keys: tokio::sync::OnceCell<tokens::Keys>,
    hashing: password::Hashing,
}

/// A registered account's password, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Credential {
    user_id: String,
    /// Argon2id, as a PHC string.
    password_hash: String,
    created_at: Millis,
}

/// An invitation, as stored (never its token).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Invitation {
    /// The only address it registers, lower case; `None`: any.
    email: Option<String>,
    expires_at: Millis,
    created_by: String,
    created_at: Millis,
    /// When it was used; an invitation is used once.
    used_at: Option<Millis>,
    /// The team the new account joins, and its role there (a team
    /// admin's invitation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team: Option<Seat>,
}

/// A place in a team an invitation gives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Seat {
    pub team: String,
    pub role: Role,
}

/// A new invitation; its token is shown this once.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreatedInvitation {
    /// Send it as `invitation` to `POST /api/auth/register`; good once.
    pub token: String,
    /// The only address it registers, if bound to one (lower case).
    pub email: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub expires_at: Millis,
    /// The team the new account joins, for a team's invitation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Its role in that team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_role: Option<Role>,
}

/// Seconds since the Unix epoch, as JWTs count time.
fn now_secs() -> i64 {
    now_ms() / 1000
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new secret token: `prefix` and 256 random bits.
fn secret(prefix: &str) -> Result<String, BrokerError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|_| BrokerError::Unavailable("no randomness available for a token".into()))?;
    Ok(format!("{prefix}{}", hex(&buf)))
}

/// The id a secret token's document is kept under.
fn token_id(token: &str) -> String {
    hex(&key_hash(token))
}

/// Runs store work on the blocking pool (redb reads and writes block).
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Unavailable(format!("storage task failed: {e}")))?
}

/// An address checked as accounts need it, on top of the user record's
/// rules (`users::new_user`): printable ASCII with one `@` inside it, at
/// most 320 bytes (it is a document id, and a sign-in name that looks like
/// another in a different script is a trap). Lower case: one account per
/// address, whatever the case it is typed in.
fn account_of(email: &str) -> Result<String, BrokerError> {
    let account = account_email(email);
    let ats = account.bytes().filter(|b| *b == b'@').count();
    if account.len() > MAX_EMAIL_BYTES
        || ats != 1
        || account.starts_with('@')
        || account.ends_with('@')
        || !account.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(BrokerError::BadInput(format!(
            "`email` must be an address of printable ASCII with one `@` inside it, at most \
             {MAX_EMAIL_BYTES} characters"
        )));
    }
    Ok(account)
}

/// The signing key, read (or made) once per broker, on the blocking pool.
async fn keys(s: &Services) -> Result<&tokens::Keys, BrokerError> {
    s.accounts
        .keys
        .get_or_try_init(|| {
            let store = s.store.clone();
            let configured = s.config.auth.jwt_secret.clone();
            off_thread(move || tokens::Keys::load(configured.as_deref(), &*store))
        })
        .await
}

/// Makes an invitation (admins), bound to `email` if given, good for
/// `hours` (default 72, at most 720).
pub(crate) async fn invite(
    s: &Services,
    caller: &Principal,
    email: Option<String>,
    hours: Option<u32>,
    team: Option<Seat>,
) -> Result<CreatedInvitation, BrokerError> {
    let hours = hours.unwrap_or(DEFAULT_INVITATION_HOURS);
    if !(1..=MAX_INVITATION_HOURS).contains(&hours) {
        return Err(BrokerError::BadInput(format!(
            "`expires_in_hours` must be between 1 and {MAX_INVITATION_HOURS}"
        )));
    }
    let email = match email {
        Some(e) => {
            // The same rules a registration's address meets.
            new_user("-".into(), e.clone())?;
            Some(account_of(&e)?)
        }
        None => None,
    };
    let token = secret("ofi_")?;
    let now = now_ms();
    let inv = Invitation {
        email: email.clone(),
        expires_at: now + i64::from(hours) * 3_600_000,
        created_by: caller.user_id.clone(),
        created_at: now,
        used_at: None,
        team: team.clone(),
    };
    let write = DocWrite::create(INVITATION, &token_id(&token), &inv)?;
    let store = s.store.clone();
    if !off_thread(move || Ok(store.write_docs(vec![write])?)).await? {
        return Err(BrokerError::Unavailable(
            "an invitation id was taken".into(),
        ));
    }
    Ok(CreatedInvitation {
        token,
        email,
        expires_at: inv.expires_at,
        team_role: team.as_ref().map(|t| t.role),
        team: team.map(|t| t.team),
    })
}

/// Registers an account: a user of role `user` with no credits (as an
/// admin's `POST /api/users` makes, without an API key) and its password.
/// The credential and the invitation's use are one compare-and-set write,
/// so of two registrations of one address, or with one invitation, one
/// wins; the user record follows it.
pub(crate) async fn register(
    s: &Services,
    name: String,
    email: String,
    password: String,
    invitation: Option<String>,
) -> Result<User, BrokerError> {
    let user = new_user(name, email)?;
    let account = account_of(&user.email)?;
    check_password(&password)?;
    if !s.config.auth.open_registration && invitation.is_none() {
        return Err(BrokerError::RegistrationClosed);
    }
    let store = s.store.clone();
    let (acc, token) = (account.clone(), invitation.clone());
    let found = off_thread(move || {
        let taken = store.doc(CREDENTIAL, &acc)?.is_some();
        let inv = match &token {
            Some(t) => Some(usable_invitation(&*store, t, &acc)?),
            None => None,
        };
        Ok((taken, inv))
    })
    .await?;
    let (taken, inv) = found;
    if taken {
        return Err(BrokerError::EmailTaken);
    }
    let password_hash = s.accounts.hashing.hash(password).await?;
    let now = now_ms();
    let cred = Credential {
        user_id: user.id.clone(),
        password_hash,
        created_at: now,
    };
    let mut writes = vec![DocWrite::create(CREDENTIAL, &account, &cred)?];
    let seat = inv.as_ref().and_then(|(_, i)| i.team.clone());
    if let (Some(token), Some((version, mut inv))) = (&invitation, inv) {
        inv.used_at = Some(now);
        writes.push(DocWrite::replace(
            INVITATION,
            &token_id(token),
            version,
            &inv,
        )?);
    }
    let store = s.store.clone();
    let acc = account.clone();
    let tok = invitation.clone();
    off_thread(move || {
        if store.write_docs(writes)? {
            return Ok(());
        }
        // Someone else was first: with this address, or with the invitation.
        if store.doc(CREDENTIAL, &acc)?.is_some() {
            return Err(BrokerError::EmailTaken);
        }
        match tok {
            Some(t) => usable_invitation(&*store, &t, &acc).and(Err(BrokerError::Busy)),
            None => Err(BrokerError::Busy),
        }
    })
    .await?;
    if let Err(e) = s.persist.write(vec![WriteOp::PutUser(user.clone())]).await {
        // Without its user the credential would hold the address for
        // nobody: give it back (the invitation stays used).
        let store = s.store.clone();
        let _ = off_thread(move || {
            if let Some(d) = store.doc(CREDENTIAL, &account)? {
                store.write_docs(vec![DocWrite::delete(CREDENTIAL, &account, d.version)])?;
            }
            Ok(())
        })
        .await;
        return Err(BrokerError::Store(e));
    }
    if let Some(seat) = seat {
        // The account exists whatever happens here; a team gone since, or
        // a full one, leaves it outside, as a team admin could later.
        if let Err(e) = teams::join(s, &seat.team, &user.id, seat.role).await {
            eprintln!("oneflow: {} could not join {}: {e}", user.id, seat.team);
        }
    }
    Ok(user)
}

/// The invitation behind `token`, with its version, if it can register
/// `account` now.
fn usable_invitation(
    store: &dyn Store,
    token: &str,
    account: &str,
) -> Result<(u64, Invitation), BrokerError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(BrokerError::BadInvitation("unknown invitation"));
    }
    let doc = store
        .doc(INVITATION, &token_id(token))?
        .ok_or(BrokerError::BadInvitation("unknown invitation"))?;
    let inv: Invitation = doc.decode()?;
    if inv.used_at.is_some() {
        return Err(BrokerError::BadInvitation(
            "this invitation was used already",
        ));
    }
    if inv.expires_at <= now_ms() {
        return Err(BrokerError::BadInvitation("this invitation has expired"));
    }
    if inv.email.as_deref().is_some_and(|e| e != account) {
        return Err(BrokerError::BadInvitation(
            "this invitation is for another e-mail address",
        ));
    }
    Ok((doc.version, inv))
}

/// Signs in: a new token pair for the right password, unless the account
/// is locked (`lockout.rs`).
pub(crate) async fn login(
    s: &Services,
    email: String,
    password: String,
) -> Result<TokenPair, BrokerError> {
    if password.is_empty() || password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(BrokerError::BadInput(format!(
            "`password` must be 1 to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let account = account_of(&email)?;
    let store = s.store.clone();
    let acc = account.clone();
    let now = now_ms();
    let (failures, cred) = off_thread(move || {
        let failures = lockout::read(&*store, &acc)?;
        let cred = match store.doc(CREDENTIAL, &acc)? {
            Some(d) => Some(d.decode::<Credential>()?),
            None => None,
        };
        Ok((failures, cred))
    })
    .await?;
    if let Some(secs) = failures.locked_for(now) {
        return Err(BrokerError::AccountLocked(secs));
    }
    let phc = cred.as_ref().map(|c| c.password_hash.clone());
    let good = s.accounts.hashing.verify(phc, password).await?;
    let store = s.store.clone();
    let acc = account.clone();
    let Some(cred) = cred.filter(|_| good) else {
        off_thread(move || lockout::fail(&*store, &acc, now_ms())).await?;
        return Err(BrokerError::BadCredentials);
    };
    let user_id = cred.user_id.clone();
    let user = off_thread(move || {
        if !failures.at.is_empty() {
            lockout::clear(&*store, &acc)?;
        }
        Ok(store.user(&user_id)?)
    })
    .await?
    .ok_or(BrokerError::BadCredentials)?;
    let family = new_id("ses");
    sessions::issue(s, &user, family, None, None).await
}

/// The principal behind an access token: its user as stored now (a user
/// no longer there: none), if the token is good.
pub(crate) async fn authenticate(
    s: &Services,
    token: &str,
) -> Result<Option<Principal>, BrokerError> {
    let Some(claims) = keys(s).await?.verify(token) else {
        return Ok(None);
    };
    let store = s.store.clone();
    let user = off_thread(move || Ok(store.user(&claims.sub)?)).await?;
    Ok(user.map(|u| Principal {
        user_id: u.id,
        role: u.role,
        team: None,
        scope: None,
        key_id: None,
    }))
}
