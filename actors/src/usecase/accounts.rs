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
mod tokens;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use oneflow::auth::{MAX_PASSWORD_CHARS, account_email, check_password};
use oneflow::time::Millis;

use super::Services;
use super::keys::Principal;
use super::users::new_user;
use crate::error::BrokerError;
use crate::ids::{key_hash, new_id, now_ms};
use crate::store::{Doc, DocWrite, Store, User, WriteOp};

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
}

/// A refresh token, as stored (never the token).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Refresh {
    /// The sign-in it descends from: every refresh of one sign-in shares it.
    family: String,
    user_id: String,
    expires_at: Millis,
    /// Exchanged once already: shown again, it is a stolen copy (or the
    /// original whose copy was used), and its family is revoked.
    spent: bool,
    created_at: Millis,
}

/// A sign-in and every token refreshed from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    user_id: String,
    revoked: bool,
    created_at: Millis,
    /// When its latest refresh token expires: past it, nothing of it is good.
    expires_at: Millis,
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
}

/// What a sign-in or a refresh gives.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// A JWT (HS256): send it as `Authorization: Bearer <token>` wherever
    /// an API key goes, until it expires.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds the access token is good for (`auth.access_ttl_secs`).
    pub expires_in: u64,
    /// Exchange it at `POST /api/auth/refresh` for a new pair, once.
    pub refresh_token: String,
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
    issue(s, &user, family, None, None).await
}

/// Makes a token pair for `user` in `family`: a new family (`session`
/// `None`), or the next token of one, spending `spent` (the presented
/// refresh token's id and version) in the same write. `Ok` only if the
/// write found everything as read.
async fn issue(
    s: &Services,
    user: &User,
    family: String,
    session: Option<(u64, Session)>,
    spent: Option<(String, u64, Refresh)>,
) -> Result<TokenPair, BrokerError> {
    let auth = &s.config.auth;
    let now = now_ms();
    let refresh_token = secret("ofr_")?;
    let expires_at = now + i64::try_from(auth.refresh_ttl_secs).unwrap_or(0) * 1000;
    let rec = Refresh {
        family: family.clone(),
        user_id: user.id.clone(),
        expires_at,
        spent: false,
        created_at: now,
    };
    let mut writes = vec![DocWrite::create(REFRESH, &token_id(&refresh_token), &rec)?];
    match session {
        // Replaced even when only its expiry moves: the write then fails
        // if the family was revoked since it was read.
        Some((version, mut ses)) => {
            ses.expires_at = expires_at;
            writes.push(DocWrite::replace(SESSION, &family, version, &ses)?);
        }
        None => writes.push(DocWrite::create(
            SESSION,
            &family,
            &Session {
                user_id: user.id.clone(),
                revoked: false,
                created_at: now,
                expires_at,
            },
        )?),
    }
    if let Some((id, version, mut old)) = spent {
        old.spent = true;
        writes.push(DocWrite::replace(REFRESH, &id, version, &old)?);
    }
    let store = s.store.clone();
    if !off_thread(move || Ok(store.write_docs(writes)?)).await? {
        return Err(BrokerError::BadToken("this refresh token was used already"));
    }
    let iat = now / 1000;
    let claims = tokens::Claims {
        sub: user.id.clone(),
        role: user.role,
        iat,
        exp: iat + i64::try_from(auth.access_ttl_secs).unwrap_or(0),
        jti: new_id("jwt"),
    };
    Ok(TokenPair {
        access_token: keys(s).await?.sign(&claims)?,
        token_type: "Bearer".into(),
        expires_in: auth.access_ttl_secs,
        refresh_token,
    })
}

/// A refresh token's record and version, if the token is one of ours.
fn read_refresh(
    store: &dyn Store,
    token: &str,
) -> Result<Option<(String, u64, Refresh)>, BrokerError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Ok(None);
    }
    let id = token_id(token);
    let Some(doc) = store.doc(REFRESH, &id)? else {
        return Ok(None);
    };
    Ok(Some((id, doc.version, doc.decode()?)))
}

/// Exchanges a refresh token for a new pair, once. Shown again once spent,
/// the token revokes its whole family: one of the two holders is a thief,
/// and neither can be told from the other.
pub(crate) async fn refresh(s: &Services, token: String) -> Result<TokenPair, BrokerError> {
    let store = s.store.clone();
    let now = now_ms();
    let found = off_thread(move || {
        let Some((id, version, rec)) = read_refresh(&*store, &token)? else {
            return Ok(None);
        };
        let session = store.doc(SESSION, &rec.family)?;
        let user = store.user(&rec.user_id)?;
        Ok(Some((id, version, rec, session, user)))
    })
    .await?;
    let Some((id, version, rec, session, user)) = found else {
        return Err(BrokerError::BadToken("unknown refresh token"));
    };
    if rec.spent {
        revoke(s, rec.family).await?;
        return Err(BrokerError::BadToken(
            "this refresh token was used already; every token of its sign-in is now revoked",
        ));
    }
    let session = match session {
        Some(d) => Some((d.version, d.decode::<Session>()?)),
        None => None,
    };
    let (Some((sv, ses)), Some(user)) = (session, user) else {
        return Err(BrokerError::BadToken("this sign-in has ended"));
    };
    if ses.revoked {
        return Err(BrokerError::BadToken("this sign-in was revoked"));
    }
    if rec.expires_at <= now {
        return Err(BrokerError::BadToken("this refresh token has expired"));
    }
    let family = rec.family.clone();
    match issue(
        s,
        &user,
        family.clone(),
        Some((sv, ses)),
        Some((id, version, rec)),
    )
    .await
    {
        // Spent meanwhile by someone else: as if shown again.
        Err(BrokerError::BadToken(_)) => {
            revoke(s, family).await?;
            Err(BrokerError::BadToken(
                "this refresh token was used already; every token of its sign-in is now revoked",
            ))
        }
        other => other,
    }
}

/// Signs out: revokes the family of a refresh token (spent or not).
pub(crate) async fn logout(s: &Services, token: String) -> Result<(), BrokerError> {
    let store = s.store.clone();
    let found = off_thread(move || read_refresh(&*store, &token)).await?;
    let Some((_, _, rec)) = found else {
        return Err(BrokerError::BadToken("unknown refresh token"));
    };
    revoke(s, rec.family).await
}

/// Marks a family revoked: none of its refresh tokens is good any more.
/// (Its access tokens stand until they expire, minutes at most.)
async fn revoke(s: &Services, family: String) -> Result<(), BrokerError> {
    let store = s.store.clone();
    off_thread(move || {
        for _ in 0..TRIES {
            let Some(doc) = store.doc(SESSION, &family)? else {
                return Ok(());
            };
            let mut ses: Session = doc.decode()?;
            if ses.revoked {
                return Ok(());
            }
            ses.revoked = true;
            let write = DocWrite::replace(SESSION, &family, doc.version, &ses)?;
            if store.write_docs(vec![write])? {
                return Ok(());
            }
        }
        Err(BrokerError::Busy)
    })
    .await
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
    }))
}

/// Removes what can no longer be used: expired or spent refresh tokens,
/// ended sessions, used or expired invitations, lockouts past their
/// window. At most `limit` documents of each kind are looked at a run.
pub(crate) fn purge(store: &dyn Store, now: Millis, limit: usize) -> Result<usize, BrokerError> {
    let mut removed = 0;
    let dead: [(&str, &dyn Fn(&Doc) -> Result<bool, BrokerError>); 4] = [
        (REFRESH, &|d| {
            let r: Refresh = d.decode()?;
            Ok(r.expires_at <= now)
        }),
        (SESSION, &|d| {
            let r: Session = d.decode()?;
            Ok(r.expires_at <= now)
        }),
        (INVITATION, &|d| {
            let r: Invitation = d.decode()?;
            Ok(r.expires_at <= now || r.used_at.is_some_and(|t| now - t > 86_400_000))
        }),
        (lockout::KIND, &|d| {
            let r: lockout::Failures = d.decode()?;
            Ok(r.stale(now))
        }),
    ];
    for (kind, is_dead) in dead {
        let mut after: Option<String> = None;
        let mut seen = 0;
        while seen < limit {
            let page = store.docs(kind, "", after.as_deref(), 500.min(limit - seen))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen += page.len();
            let mut writes = Vec::new();
            for (id, doc) in &page {
                // A document that no longer decodes is kept for a person
                // to look at, not removed unseen.
                if is_dead(doc).unwrap_or(false) {
                    writes.push(DocWrite::delete(kind, id, doc.version));
                }
            }
            // One stale version (changed since read) fails the batch; then
            // each is tried alone, so one busy document keeps no others.
            if !writes.is_empty() && !store.write_docs(writes.clone())? {
                for w in writes {
                    if store.write_docs(vec![w])? {
                        removed += 1;
                    }
                }
            } else {
                removed += writes.len();
            }
        }
    }
    Ok(removed)
}

/// How often [`purge`] runs, and how many documents of each kind one run
/// looks at: enough to keep pace with sign-ins, small enough that a run
/// never holds the store's writer for long.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
const PURGE_LIMIT: usize = 10_000;

/// Starts the hourly [`purge`] on the scheduler.
pub(crate) fn schedule_purge(s: &std::sync::Arc<Services>) {
    let store = s.store.clone();
    s.scheduler
        .every("accounts-purge", PURGE_EVERY, PURGE_EVERY, move || {
            let store = store.clone();
            async move {
                off_thread(move || purge(&*store, now_ms(), PURGE_LIMIT))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
}
