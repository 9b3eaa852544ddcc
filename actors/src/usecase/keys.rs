//! Authentication and API keys: who a bearer token is, make a key for a user, list keys (never secrets),
//! revoke a key. A key is known by its id, derived from its stored hash, so
//! keys made before ids existed have one too and nothing new is stored.
//!
//! Revocation deletes the hash durably, then drops it from the broker's
//! cache of authenticated keys. A lookup that read the store just before
//! the delete committed could put the key back in the cache afterwards; the
//! revocation epoch lets that lookup notice and read again.

use std::sync::Arc;

use oneflow::key_scope::{KeyScope, ScopedKey};

use super::{ADMIN_ID, Services, blocking};
use crate::coordination::Notice;
use crate::error::BrokerError;
use crate::ids::{api_key, key_hash, key_prefix, now_ms};
use crate::store::{ApiKeyRecord, WriteOp};
use crate::views::{CreatedKey, KeyView, Role};

/// Who is calling, from their API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
    /// The team whose wallet this credential spends from (a team key);
    /// `None`: the user's own.
    pub team: Option<String>,
    /// What the key is limited to, if anything: shared with the cached
    /// principal, so a request's clone of it costs a reference count.
    pub scope: Option<Arc<ScopedKey>>,
    /// The public id of the API key behind it (`key_...`); `None` for a
    /// sign-in session. Recorded with each request it sends.
    pub key_id: Option<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The public id of the key with this hash: 64 bits of the hash, enough to
/// tell a handful of keys apart and useless for finding the secret.
pub(crate) fn key_id(hash: &[u8; 32]) -> String {
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("key_{hex}")
}

pub(crate) fn view_of(hash: &[u8; 32], r: ApiKeyRecord) -> KeyView {
    KeyView {
        id: key_id(hash),
        user_id: r.user_id,
        role: r.role,
        prefix: r.prefix,
        created_at: r.created_at,
        team: r.team,
        models: r.scope.models,
        providers: r.scope.providers,
        expires_at: r.scope.expires_at.map(oneflow::time::rfc3339),
        budget: r.scope.budget,
    }
}

/// Drops from this node's cache the keys other nodes revoke, as their
/// notices arrive, for as long as the services live.
pub(crate) fn forget_revoked(s: &std::sync::Arc<Services>) {
    let Some(c) = &s.coord else { return };
    let mut notices = c.subscribe();
    let services = std::sync::Arc::downgrade(s);
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let notice = match notices.recv().await {
                Ok(n) => n,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            };
            let Some(s) = services.upgrade() else { break };
            if let Notice::KeyRevoked { hash_hex } = notice {
                s.keys.retain(|h, _| {
                    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
                    hex != hash_hex
                });
            }
        }
    });
}

/// The principal behind a bearer token, if it is a known key; an expired
/// key is refused (401, `key_expired`), from the cache as from the store,
/// so a cached principal outlives its key's expiry by no request.
pub(crate) async fn authenticate(
    s: &Services,
    token: &str,
) -> Result<Option<Principal>, BrokerError> {
    let hash = key_hash(token);
    let cached = s.keys.get(&hash).and_then(|e| {
        let (p, at) = e.value();
        s.fresh(*at).then(|| p.clone())
    });
    let found = match cached {
        Some(p) => Some(p),
        None => lookup_key(s, hash).await?,
    };
    if let Some(k) = found.as_ref().and_then(|p| p.scope.as_ref()) {
        if k.scope.expired(now_ms()) {
            return Err(BrokerError::KeyExpired);
        }
    }
    Ok(found)
}

/// Reads a key from the store and caches it. Shared with other lookups,
/// exclusive of revocations (`Services::key_lookups`): a revocation waits
/// for reads already begun, whose inserts it then removes, and later reads
/// follow its commit.
async fn lookup_key(s: &Services, hash: [u8; 32]) -> Result<Option<Principal>, BrokerError> {
    let _shared = s.key_lookups.read().await;
    let store = s.store.clone();
    let Some(rec) = blocking(move || store.api_key(&hash)).await? else {
        // Revoked through another node since it was cached here.
        s.keys.remove(&hash);
        return Ok(None);
    };
    // Unscoped keys (most) carry no scope at all: nothing to allocate
    // or check per request.
    let scope = (!rec.scope.is_empty()).then(|| {
        Arc::new(ScopedKey {
            id: key_id(&hash),
            scope: rec.scope,
        })
    });
    let p = Principal {
        user_id: rec.user_id,
        role: rec.role,
        team: rec.team,
        scope,
        key_id: Some(key_id(&hash)),
    };
    s.keys.insert(hash, (p.clone(), std::time::Instant::now()));
    Ok(Some(p))
}

/// Makes a new key for `user_id`, committed before the answer. Its role
/// is `role`, or the user's own; it may do no more than the user, nor
/// than the credential (`by`) that asks for it: a member can make a
/// read-only key for a dashboard, never an admin key. `scope` limits it
/// further (`scopes::validate`).
pub(crate) async fn create(
    s: &Services,
    user_id: &str,
    role: Option<Role>,
    by: Role,
    scope: KeyScope,
) -> Result<CreatedKey, BrokerError> {
    let store = s.store.clone();
    let id = user_id.to_string();
    let user = blocking(move || store.user(&id))
        .await?
        .ok_or(BrokerError::NotFound("user"))?;
    let role = role.unwrap_or(user.role);
    if role == Role::TeamAdmin {
        return Err(BrokerError::BadInput(
            "team_admin is a role within a team, not one an account's own key can have".into(),
        ));
    }
    if !user.role.may_grant(role) || !by.may_grant(role) {
        let can: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| *r != Role::TeamAdmin && user.role.may_grant(*r) && by.may_grant(*r))
            .map(Role::name)
            .collect();
        return Err(BrokerError::Forbidden(format!(
            "a key for this user, made with this credential, may have the role {}; not {}",
            can.join(", "),
            role.name()
        )));
    }
    store_key(s, user.id, role, None, scope).await
}

/// Makes and stores a key whose role and owner were checked by the caller
/// (an account's key, a team's): its scope is checked here, the secret is
/// made, and only its hash is committed before the answer.
pub(crate) async fn store_key(
    s: &Services,
    user_id: String,
    role: Role,
    team: Option<String>,
    scope: KeyScope,
) -> Result<CreatedKey, BrokerError> {
    super::scopes::validate(s, &scope)?;
    let secret = api_key()
        .ok_or_else(|| BrokerError::Unavailable("no randomness available for a key".into()))?;
    let hash = key_hash(&secret);
    let record = ApiKeyRecord {
        user_id,
        role,
        prefix: key_prefix(&secret),
        created_at: now_ms(),
        team,
        scope,
    };
    let _serial = s.key_writes.lock().await;
    s.persist
        .write(vec![WriteOp::PutKey {
            hash,
            record: record.clone(),
        }])
        .await
        .map_err(BrokerError::Store)?;
    Ok(CreatedKey {
        key: view_of(&hash, record),
        api_key: secret,
    })
}

/// Keys of one user, or of everyone with `None`, oldest first.
pub(crate) async fn list(s: &Services, user_id: Option<&str>) -> Result<Vec<KeyView>, BrokerError> {
    let store = s.store.clone();
    let all = blocking(move || store.api_keys()).await?;
    let mut keys: Vec<KeyView> = all
        .into_iter()
        .filter(|(_, r)| user_id.is_none_or(|u| r.user_id == u))
        .map(|(h, r)| view_of(&h, r))
        .collect();
    keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(keys)
}

/// Revokes a key: durably first, then from the cache, so the key stops
/// working before the answer. A user may revoke only their own keys (any
/// other id is "not found"); the last admin key cannot be revoked, or
/// nobody could manage the broker.
pub(crate) async fn revoke(
    s: &Services,
    caller: &Principal,
    id: &str,
) -> Result<KeyView, BrokerError> {
    let _serial = s.key_writes.lock().await;
    let store = s.store.clone();
    let all = blocking(move || store.api_keys()).await?;
    let admin_keys = all.iter().filter(|(_, r)| r.role == Role::Admin).count();
    let (hash, record) = all
        .into_iter()
        .find(|(h, r)| key_id(h) == id && (caller.is_admin() || r.user_id == caller.user_id))
        .ok_or(BrokerError::NotFound("key"))?;
    if record.role == Role::Admin && admin_keys <= 1 {
        return Err(BrokerError::Conflict(format!(
            "`{id}` is the last admin key; make another for `{ADMIN_ID}` before revoking it"
        )));
    }
    {
        let _exclusive = s.key_lookups.write().await;
        s.persist
            .write(vec![WriteOp::DeleteKey { hash }])
            .await
            .map_err(BrokerError::Store)?;
        s.keys.remove(&hash);
    }
    // The other nodes would see it within SHARED_CACHE_TTL anyway; this makes
    // it at once. A notice lost with Redis costs only that wait.
    if let Some(c) = &s.coord {
        let hash_hex = hash.iter().map(|b| format!("{b:02x}")).collect();
        if let Err(e) = c.publish(Notice::KeyRevoked { hash_hex }).await {
            eprintln!("oneflow: could not tell the other nodes of a revoked key: {e}");
        }
    }
    let key = view_of(&hash, record);
    super::webhooks::alerts::key_revoked(s, &key.user_id, &key.id, &key.prefix).await;
    Ok(key)
}
