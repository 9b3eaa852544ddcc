//! The `OneFlow-Signature` header: `t=<unix seconds>,v1=<hex>` where the
//! hex is HMAC-SHA256, keyed with the webhook's secret (the whole
//! `whsec_…` text as bytes), of `"<t>.<body>"`. While a rotated secret
//! is still honoured the header carries one `v1=` per secret, newest
//! first, so a receiver holding either secret accepts the delivery.
//!
//! The timestamp is signed with the body so a captured delivery cannot be
//! replayed later than the receiver's tolerance; [`verify`] is what a
//! receiver does, written so its steps can be copied (docs/webhooks.md).

use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// The header's name.
pub const HEADER: &str = "OneFlow-Signature";
/// How old (or how far in the future) a signature may be, in seconds, by
/// default: five minutes covers clock skew and a slow network.
pub const TOLERANCE_SECS: i64 = 300;
/// Longest header [`verify`] reads: a handful of signatures, not a file.
const MAX_HEADER: usize = 2048;

/// The hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    // Any key length is accepted by HMAC, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// The header's value for a delivery signed at `t` with each of `secrets`.
pub fn header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut out = format!("t={t}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&sign(s, t, body));
    }
    out
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the header is not `t=<seconds>,v1=<hex>[,v1=<hex>…]`")]
    Malformed,
    #[error("the signature's time is outside the tolerance (replayed or clock skew)")]
    Expired,
    #[error("no v1 signature matches this secret and body")]
    Mismatch,
}

/// Checks a `OneFlow-Signature` header against `secret` and the body as
/// received (its exact bytes: parse the JSON only after this passes).
/// `now` is the receiver's clock in Unix seconds. Any one matching `v1`
/// passes; the comparison takes the same time wherever the bytes differ.
pub fn verify(
    header: &str,
    secret: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if header.len() > MAX_HEADER {
        return Err(VerifyError::Malformed);
    }
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        match k {
            "t" if t.is_none() => {
                t = Some(v.parse::<i64>().map_err(|_| VerifyError::Malformed)?);
            }
            "v1" => sigs.push(unhex(v).ok_or(VerifyError::Malformed)?),
            // Schemes this code does not know are skipped, so a later
            // `v2` does not break receivers written today.
            "t" => return Err(VerifyError::Malformed),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if sigs.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if now.abs_diff(t) > tolerance_secs.unsigned_abs() {
        return Err(VerifyError::Expired);
    }
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| VerifyError::Mismatch)?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // `verify_slice` compares in constant time; each candidate gets a
    // clone of the same keyed state.
    if sigs.iter().any(|s| mac.clone().verify_slice(s).is_ok()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
