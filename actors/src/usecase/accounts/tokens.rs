//! Access tokens: JWTs signed with HS256, which any node holding the key
//! checks without a store read of the token. Only HS256 is taken: a token
//! naming any other algorithm (`none` included) is refused before its
//! signature is looked at, so no token can choose how it is checked.
//!
//! The key is `auth.jwt_secret` when set; otherwise 32 random bytes made
//! at the first start and kept in the document store (kind `secret`, id
//! `jwt`), which every node and every restart read, so a token made by one
//! is good on all.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::store::{DocWrite, Store};
use crate::views::Role;

/// Seconds of clock difference between nodes a token's `exp` and `iat`
/// are allowed: small, since an access token lives 15 minutes.
pub(crate) const LEEWAY_SECS: u64 = 30;

const SECRET_KIND: &str = "secret";
const SECRET_ID: &str = "jwt";

/// The signing key, both ways.
pub(crate) struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The key as stored when it was made here.
#[derive(Serialize, Deserialize)]
struct StoredSecret {
    /// 32 bytes, hex.
    hex: String,
}

impl Keys {
    fn from_bytes(secret: &[u8]) -> Keys {
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// The configured secret, or the one in the store, made and kept there
    /// if there is none yet. Two nodes making one at once: the first write
    /// wins and the other reads it.
    pub(crate) fn load(configured: Option<&str>, store: &dyn Store) -> Result<Keys, BrokerError> {
        if let Some(s) = configured {
            return Ok(Keys::from_bytes(s.as_bytes()));
        }
        for _ in 0..2 {
            if let Some(doc) = store.doc(SECRET_KIND, SECRET_ID)? {
                let stored: StoredSecret = doc.decode()?;
                let bytes = from_hex(&stored.hex).ok_or_else(|| {
                    BrokerError::Unavailable("the stored signing key is not hex".into())
                })?;
                return Ok(Keys::from_bytes(&bytes));
            }
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|_| {
                BrokerError::Unavailable("no randomness available for a signing key".into())
            })?;
            let stored = StoredSecret {
                hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            };
            if store.write_docs(vec![DocWrite::create(SECRET_KIND, SECRET_ID, &stored)?])? {
                return Ok(Keys::from_bytes(&bytes));
            }
        }
        Err(BrokerError::Unavailable(
            "the signing key could be neither made nor read".into(),
        ))
    }

    /// A signed access token for `claims`.
    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, BrokerError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| BrokerError::Unavailable(format!("signing a token: {e}")))
    }

    /// The claims of a good token: HS256, signed with this key, not
    /// expired; `None` for anything else.
    pub(crate) fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "iat", "sub"]);
        v.validate_exp = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .ok()?
            .claims;
        // Issued in the future (past the leeway): not one of ours.
        let now = super::now_secs();
        (claims.iat <= now + LEEWAY_SECS as i64).then_some(claims)
    }
}

/// What an access token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The user's id.
    pub(crate) sub: String,
    /// The user's role when the token was made (the stored role decides).
    pub(crate) role: Role,
    /// Seconds since the Unix epoch.
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    /// The token's own id, for logs and a later deny list.
    pub(crate) jti: String,
}

/// Whether `token` has a JWT's shape: three base64url parts, split by two
/// dots. Cheap, so an API key (which never has a dot) goes its own way at
/// once.
pub fn looks_like_jwt(token: &str) -> bool {
    token.len() <= MAX_JWT_BYTES
        && token.bytes().filter(|b| *b == b'.').count() == 2
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Longest token looked at: ours are about 300 bytes.
const MAX_JWT_BYTES: usize = 4096;

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64, exp: i64) -> Claims {
        Claims {
            sub: "usr_1".into(),
            role: Role::Member,
            iat,
            exp,
            jti: "j".into(),
        }
    }

    #[test]
    fn only_good_hs256_tokens_pass() {
        let k = Keys::from_bytes(&[7u8; 32]);
        let now = super::super::now_secs();
        let good = k.sign(&claims(now, now + 900)).unwrap();
        assert!(looks_like_jwt(&good));
        assert_eq!(k.verify(&good), Some(claims(now, now + 900)));
        // Another key's, an expired one, one from the future.
        let other = Keys::from_bytes(&[8u8; 32]);
        assert_eq!(other.verify(&good), None);
        let expired = k.sign(&claims(now - 1000, now - 100)).unwrap();
        assert_eq!(k.verify(&expired), None);
        let future = k.sign(&claims(now + 600, now + 1500)).unwrap();
        assert_eq!(k.verify(&future), None);
        // `alg: none` with the good token's claims and no signature.
        let body = good.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert_eq!(k.verify(&none), None);
        // HS512 with the right key: still refused.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(now, now + 900),
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap();
        assert_eq!(k.verify(&hs512), None);
    }

    #[test]
    fn api_keys_do_not_look_like_tokens() {
        assert!(!looks_like_jwt("of_0123456789abcdef"));
        assert!(!looks_like_jwt("test-admin-key-0123456789"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(looks_like_jwt("a.b.c"));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
