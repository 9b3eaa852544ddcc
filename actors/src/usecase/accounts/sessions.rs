//! Sign-ins as families of refresh tokens: each sign-in starts a family
//! (a `session` document), each refresh spends its token and adds the
//! next, in one compare-and-set write with the family, so a token is spent
//! once and a revoked family gets no new token. A spent token shown again
//! revokes its family: one of its two holders is a thief, and neither can
//! be told from the other.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use oneflow::time::Millis;

use super::{MAX_TOKEN_BYTES, REFRESH, SESSION, TRIES, keys, off_thread, secret, token_id, tokens};
use crate::error::BrokerError;
use crate::ids::{new_id, now_ms};
use crate::store::{DocWrite, Store, User};
use crate::usecase::Services;

/// A refresh token, as stored (never the token).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Refresh {
    /// The sign-in it descends from: every refresh of one sign-in shares it.
    pub(super) family: String,
    pub(super) user_id: String,
    pub(super) expires_at: Millis,
    /// Exchanged once already: shown again, it is a stolen copy (or the
    /// original whose copy was used), and its family is revoked.
    pub(super) spent: bool,
    pub(super) created_at: Millis,
}

/// A sign-in and every token refreshed from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Session {
    user_id: String,
    revoked: bool,
    created_at: Millis,
    /// When its latest refresh token expires: past it, nothing of it is good.
    pub(super) expires_at: Millis,
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

/// Makes a token pair for `user` in `family`: a new family (`session`
/// `None`), or the next token of one, spending `spent` (the presented
/// refresh token's id and version) in the same write. `Ok` only if the
/// write found everything as read.
pub(super) async fn issue(
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
