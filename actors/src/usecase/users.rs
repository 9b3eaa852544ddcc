//! Users: creating one (with a key and an opening balance), listing them,
//! adding credits, and the admin user every start makes sure of.

use oneflow::Credits;
use oneflow::time::Millis;

use super::{ADMIN_ID, Services, blocking};
use crate::error::BrokerError;
use crate::ids::{api_key, key_hash, key_prefix, new_id, now_ms};
use crate::store::{ApiKeyRecord, Store, User, WriteOp};
use crate::views::{CreatedUser, Role};
use crate::wallet::{IdemKey, TopUp, ToppedUp};

/// Creates a user with a key and, if given, an opening balance. The user
/// and key are committed before the balance, and both before the answer.
pub(crate) async fn create(
    s: &Services,
    name: String,
    email: String,
    initial_balance: Credits,
) -> Result<CreatedUser, BrokerError> {
    let user = new_user(name, email)?;
    if initial_balance.is_negative() {
        return Err(BrokerError::BadInput(
            "`initial_balance` must not be negative".into(),
        ));
    }
    let now = user.created_at;
    let key = api_key()
        .ok_or_else(|| BrokerError::Unavailable("no randomness available for a key".into()))?;
    let record = ApiKeyRecord {
        user_id: user.id.clone(),
        role: Role::Member,
        prefix: key_prefix(&key),
        created_at: now,
        team: None,
        scope: Default::default(),
    };
    s.persist
        .write(vec![
            WriteOp::PutUser(user.clone()),
            WriteOp::PutKey {
                hash: key_hash(&key),
                record,
            },
        ])
        .await
        .map_err(BrokerError::Store)?;
    let balance = if initial_balance > Credits::ZERO {
        let top = TopUp {
            amount: initial_balance,
            note: Some("initial balance".into()),
            now,
            idem: None,
        };
        s.wallets.top_up(&user.id, top).await?.entry.balance_after
    } else {
        Credits::ZERO
    };
    Ok(CreatedUser {
        id: user.id,
        name: user.name,
        email: user.email,
        role: user.role,
        api_key: key,
        balance,
        created_at: now,
    })
}

/// A new user record of role `user`, from a name and an e-mail address as
/// given (trimmed, then checked): what an admin's `POST /api/users` and a
/// registration (`accounts.rs`) both make. Nothing is written.
pub(crate) fn new_user(name: String, email: String) -> Result<User, BrokerError> {
    let name = name.trim().to_string();
    let email = email.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(BrokerError::BadInput(
            "`name` must be 1 to 200 characters".into(),
        ));
    }
    if email.chars().count() > 320
        || !email.contains('@')
        || email.starts_with('@')
        || email.ends_with('@')
    {
        return Err(BrokerError::BadInput(
            "`email` must be an email address".into(),
        ));
    }
    Ok(User {
        id: new_id("usr"),
        name,
        email,
        role: Role::Member,
        created_at: now_ms(),
        strategy: None,
    })
}

/// Every user.
/// Every user; the accounts that hold teams' wallets are not users.
pub(crate) async fn list(s: &Services) -> Result<Vec<User>, BrokerError> {
    let store = s.store.clone();
    let mut all = blocking(move || store.users()).await?;
    all.retain(|u| !super::teams::is_team(&u.id));
    Ok(all)
}

/// The user with this id, or "not found".
pub(crate) async fn require(s: &Services, user_id: &str) -> Result<User, BrokerError> {
    let store = s.store.clone();
    let id = user_id.to_string();
    blocking(move || store.user(&id))
        .await?
        .ok_or(BrokerError::NotFound("user"))
}

/// Adds credits to a user's wallet (committed before the answer), once
/// per Idempotency-Key. A top-up's key is kept with the wallet it credits,
/// apart from that user's own request keys.
pub(crate) async fn add_credits(
    s: &Services,
    user_id: &str,
    amount: Credits,
    note: Option<String>,
    idem: Option<IdemKey>,
) -> Result<ToppedUp, BrokerError> {
    if amount <= Credits::ZERO {
        return Err(BrokerError::BadInput(
            "`amount` must be greater than zero".into(),
        ));
    }
    // A team's wallet is an account's too (`teams.rs`).
    require(s, user_id).await?;
    let top = TopUp {
        amount,
        note,
        now: now_ms(),
        idem: idem.map(|k| IdemKey::new(format!("credits-add:{}", k.key), k.body_hash)),
    };
    Ok(s.wallets.top_up(user_id, top).await?)
}

/// Makes sure an admin user and key exist, before anything else runs. With
/// `given`, that key is (re)registered; otherwise, on first start, a new
/// key is made and returned (to print once).
pub(crate) fn ensure_admin(
    store: &dyn Store,
    given: Option<&str>,
    now: Millis,
) -> Result<Option<String>, BrokerError> {
    let admin = User {
        id: ADMIN_ID.into(),
        name: "admin".into(),
        email: "admin@localhost".into(),
        role: Role::Admin,
        created_at: now,
        strategy: None,
    };
    let mut ops = Vec::new();
    if store.user(ADMIN_ID)?.is_none() {
        ops.push(WriteOp::PutUser(admin));
    }
    let mut made = None;
    let key = match given {
        Some(k) if k.len() < 16 => {
            return Err(BrokerError::BadInput(
                "ONEFLOW_ADMIN_KEY must be at least 16 characters".into(),
            ));
        }
        Some(k) => Some(k.to_string()),
        None if store.has_admin_key()? => None,
        None => {
            let k = api_key().ok_or_else(|| {
                BrokerError::Unavailable("no randomness available for a key".into())
            })?;
            made = Some(k.clone());
            Some(k)
        }
    };
    if let Some(k) = key {
        let hash = key_hash(&k);
        if store.api_key(&hash)?.is_none() {
            let prefix = key_prefix(&k);
            ops.push(WriteOp::PutKey {
                hash,
                record: ApiKeyRecord {
                    user_id: ADMIN_ID.into(),
                    role: Role::Admin,
                    prefix,
                    created_at: now,
                    team: None,
                    scope: Default::default(),
                },
            });
        }
    }
    if !ops.is_empty() {
        store.commit(ops)?;
    }
    Ok(made)
}
