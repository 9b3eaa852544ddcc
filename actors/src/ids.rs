//! Identifiers, secrets and the wall clock, made in one place.

use sha2::{Digest, Sha256};

use oneflow::time::Millis;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS random source failing is unrecoverable for key generation; fall
    // back to a time-derived value only for ids, never for keys (see `api_key`).
    if getrandom::fill(&mut buf).is_err() {
        let t = now_ms().to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = t[i % t.len()] ^ (i as u8);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new id with a type prefix, e.g. `req_…`, `usr_…`: 96 random bits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_hex(12))
}

/// A new request id: `req_`, the creation time in milliseconds (12 hex
/// digits) and 64 random bits. Ids made later sort after earlier ones, so
/// the id index grows at its end: a commit rewrites one index leaf instead
/// of one per request at random places (about a third fewer pages written
/// per commit, docs/performance.md).
pub fn new_request_id() -> String {
    let t = u64::try_from(now_ms()).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("req_{t:012x}{}", random_hex(8))
}

/// A new API key: `of_` and 256 random bits. `None` when the OS has no
/// randomness to give, which must stop key creation rather than weaken it.
pub fn api_key() -> Option<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).ok()?;
    Some(format!(
        "of_{}",
        buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// What is stored and shown of a key so its owner can tell keys apart: our
/// `of_` marker and 4 characters of the secret, never more (an admin key
/// an operator chose may be short).
pub fn key_prefix(key: &str) -> String {
    let (marker, secret) = match key.strip_prefix("of_") {
        Some(rest) => ("of_", rest),
        None => ("", key),
    };
    format!("{marker}{}", secret.chars().take(4).collect::<String>())
}

/// What is stored of a key: its SHA-256. Keys have 256 random bits, so a
/// plain hash (no salt, no slow KDF) is enough to make the table useless to a
/// thief.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Hash of a request body, to tell a true idempotent repeat from a reuse of
/// the key with other content.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_prefix_shows_at_most_four_characters_of_the_secret() {
        let k = api_key().unwrap();
        assert_eq!(key_prefix(&k), &k[..7]);
        assert_eq!(key_prefix("operator-chosen-admin-key"), "oper");
        assert_eq!(key_prefix("abc"), "abc");
    }

    #[test]
    fn request_ids_made_later_sort_after_earlier_ones() {
        let first = new_request_id();
        // The id's clock is in milliseconds: wait for it to move on.
        let start = now_ms();
        while now_ms() <= start {
            std::thread::yield_now();
        }
        let later: Vec<String> = (0..100).map(|_| new_request_id()).collect();
        assert!(later.iter().all(|id| *id > first), "{first} {later:?}");
        assert_eq!(first.len(), "req_".len() + 12 + 16);
        let distinct: std::collections::HashSet<_> = later.iter().collect();
        assert_eq!(distinct.len(), later.len(), "random part differs");
    }
}
