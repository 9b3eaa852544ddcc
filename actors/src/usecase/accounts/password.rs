//! Password hashes: Argon2id with the crate's default parameters (19 MiB,
//! 2 passes, 1 lane: OWASP's first recommendation), kept as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so the parameters travel
//! with each hash and can be raised later without breaking old ones.
//!
//! Hashing takes tens of milliseconds of CPU and 19 MiB by design, so it
//! runs on the blocking pool, never on an HTTP worker's thread, and only
//! [`HASHING_AT_ONCE`] at a time: a burst of sign-ins waits its turn
//! (at most [`HASH_WAIT`]) instead of taking the machine's memory.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::BrokerError;

/// Hashes computed at once by one broker (one node).
pub(crate) const HASHING_AT_ONCE: usize = 4;
/// How long a sign-in waits for a hashing slot before it is told to retry.
const HASH_WAIT: Duration = Duration::from_secs(10);

/// The slots of [`HASHING_AT_ONCE`].
pub(crate) struct Hashing(tokio::sync::Semaphore);

impl Default for Hashing {
    fn default() -> Self {
        Hashing(tokio::sync::Semaphore::new(HASHING_AT_ONCE))
    }
}

impl Hashing {
    /// Runs `f` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        let _slot = tokio::time::timeout(HASH_WAIT, self.0.acquire())
            .await
            .map_err(|_| BrokerError::Busy)?
            .map_err(|_| BrokerError::Busy)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("password task failed: {e}")))?
    }

    /// The PHC string of a new hash of `password`, with a fresh salt.
    pub(crate) async fn hash(&self, password: String) -> Result<String, BrokerError> {
        self.run(move || hash_now(&password)).await
    }

    /// Whether `password` matches `phc`; with `None` (no such account),
    /// a hash of the same cost is checked anyway and `false` returned, so
    /// an unknown address takes as long as a known one.
    pub(crate) async fn verify(
        &self,
        phc: Option<String>,
        password: String,
    ) -> Result<bool, BrokerError> {
        self.run(move || match phc {
            Some(phc) => Ok(verify_now(&phc, &password)),
            None => {
                let _ = verify_now(dummy()?, &password);
                Ok(false)
            }
        })
        .await
    }
}

fn hash_now(password: &str) -> Result<String, BrokerError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|_| BrokerError::Unavailable("no randomness available for a salt".into()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| BrokerError::Unavailable(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| BrokerError::Unavailable(format!("password hash: {e}")))
}

/// A stored hash that does not parse matches nothing.
fn verify_now(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash of a random password, made once per process, for addresses with
/// no account.
fn dummy() -> Result<&'static str, BrokerError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(d) = DUMMY.get() {
        return Ok(d);
    }
    let made = hash_now(&crate::ids::random_hex(16))?;
    Ok(DUMMY.get_or_init(|| made))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_and_checks_only_its_password() {
        let h = hash_now("a tune of moss and copper").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_now(&h, "a tune of moss and copper"));
        assert!(!verify_now(&h, "a tune of moss and copper "));
        assert!(!verify_now("not a hash", "x"));
        // Salted: the same password hashes differently each time.
        assert_ne!(h, hash_now("a tune of moss and copper").unwrap());
    }
}
