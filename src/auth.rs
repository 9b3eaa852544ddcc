//! Sign-in with an e-mail and a password: its settings (`[auth]`) and the
//! rules a password must meet. Pure, like the rest of the domain: hashing,
//! tokens and the store are the runtime's (`oneflow-actors`,
//! `usecase/accounts.rs`); `docs/auth.md` tells the whole story.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// Shortest password, in characters: length is what makes a password
/// costly to guess, more than any rule of character classes.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password, in characters: enough for any passphrase or manager,
/// short enough that hashing one costs what hashing any other does.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Shortest `jwt_secret`, in bytes: HS256's key should be at least as long
/// as its 256-bit output.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// `[auth]`: who may register, and how long sign-in tokens live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Anyone may register with `POST /api/auth/register`. Off by default:
    /// then a registration needs an invitation an admin made.
    pub open_registration: bool,
    /// The key access tokens are signed with (HS256), at least 32 bytes;
    /// every node of a deployment must have the same. Unset: 32 random
    /// bytes made at first start and kept in the store, which every node
    /// and every restart read. Never written out (`GET /api/config` must
    /// not show it), so set it from the file or `ONEFLOW__AUTH__JWT_SECRET`.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<String>,
    /// Seconds an access token is good for: short, because nothing can
    /// revoke one before it expires (a refresh token can be revoked).
    pub access_ttl_secs: u64,
    /// Seconds a refresh token is good for; each refresh makes a new one.
    pub refresh_ttl_secs: u64,
    /// A team's admins and billing members may add credits to the team's
    /// wallet (`POST /api/teams/{id}/credits`): for deployments where the
    /// money for a team's credit is settled outside OneFlow (an internal
    /// charge-back, an invoice paid) by people the operator trusts with
    /// it. Off by default: only administrators add credits.
    pub team_top_ups: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            open_registration: false,
            jwt_secret: None,
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 86_400,
            team_top_ups: false,
        }
    }
}

impl AuthConfig {
    /// Checks what serde cannot; names the bad key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(s) = &self.jwt_secret
            && s.len() < MIN_JWT_SECRET_BYTES
        {
            return Err((
                "auth.jwt_secret",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        if !(60..=86_400).contains(&self.access_ttl_secs) {
            return Err((
                "auth.access_ttl_secs",
                "must be between 60 and 86400 (a day)".into(),
            ));
        }
        if !(self.access_ttl_secs..=366 * 86_400).contains(&self.refresh_ttl_secs) {
            return Err((
                "auth.refresh_ttl_secs",
                "must be at least auth.access_ttl_secs and at most 31622400 (366 days)".into(),
            ));
        }
        Ok(())
    }
}

/// Why a password is refused; the message says how to pick a better one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_PASSWORD_CHARS} characters long")]
    TooLong,
    #[error(
        "the password is one of the 10,000 most common passwords, which are guessed first; choose another"
    )]
    Common,
}

/// The 10,000 most common passwords, most common first, one a line: the
/// first 10,000 lines of the frequency-ordered list Django 5.1 ships as
/// `django/contrib/auth/common-passwords.txt.gz` (itself drawn from
/// leaked-password corpora). Data only: no code of Django's is used.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// The list as a set, built on first use (about 10,000 short strings).
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect());

/// Whether `password` is on the list, ignoring case (the list is lower
/// case; "Password123" is guessed as early as "password123").
pub fn is_common(password: &str) -> bool {
    COMMON.contains(password.to_lowercase().as_str())
}

/// Whether `password` may be used: its length in characters, then the
/// list. Composition rules (a digit, a symbol) are left out on purpose:
/// they push people to predictable patterns without making guessing
/// harder (NIST SP 800-63B, 5.1.1.2).
pub fn check_password(password: &str) -> Result<(), WeakPassword> {
    // Counting stops past the maximum: a huge body costs no more than that.
    let chars = password.chars().take(MAX_PASSWORD_CHARS + 1).count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(WeakPassword::TooLong);
    }
    if is_common(password) {
        return Err(WeakPassword::Common);
    }
    Ok(())
}

/// An e-mail address as accounts are known by it: trimmed and lower case,
/// so `Ada@Example.com` and `ada@example.com ` are one account.
pub fn account_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_ten_thousand_most_common() {
        assert_eq!(COMMON_PASSWORDS.lines().count(), 10_000);
        assert_eq!(COMMON_PASSWORDS.lines().next(), Some("123456"));
        assert!(COMMON.len() > 9_900, "{}", COMMON.len());
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert_eq!(check_password("short"), Err(WeakPassword::TooShort));
        assert_eq!(check_password("elevenchars"), Err(WeakPassword::TooShort));
        // Twelve characters, more bytes: long enough.
        assert_eq!(check_password("ééééééééééé!"), Ok(()));
        assert_eq!(check_password("correct horse battery"), Ok(()));
        assert_eq!(check_password(&"x".repeat(1024)), Ok(()));
        assert_eq!(
            check_password(&"x".repeat(1025)),
            Err(WeakPassword::TooLong)
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert!(is_common("password"));
        assert_eq!(check_password("qwerty123456"), Err(WeakPassword::Common));
        assert_eq!(check_password("QWERTY123456"), Err(WeakPassword::Common));
        assert_eq!(check_password("1q2w3e4r5t6y"), Err(WeakPassword::Common));
        assert!(!is_common("a tune of moss and copper"));
    }

    #[test]
    fn messages_say_why() {
        assert!(WeakPassword::TooShort.to_string().contains("12"));
        assert!(WeakPassword::Common.to_string().contains("common"));
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(AuthConfig::default().validate(), Ok(()));
        let short = AuthConfig {
            jwt_secret: Some("x".repeat(31)),
            ..AuthConfig::default()
        };
        assert_eq!(short.validate().map_err(|e| e.0), Err("auth.jwt_secret"));
        let ok = AuthConfig {
            jwt_secret: Some("x".repeat(32)),
            ..AuthConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let backwards = AuthConfig {
            access_ttl_secs: 900,
            refresh_ttl_secs: 600,
            ..AuthConfig::default()
        };
        assert_eq!(
            backwards.validate().map_err(|e| e.0),
            Err("auth.refresh_ttl_secs")
        );
    }

    #[test]
    fn the_secret_is_never_written_out() {
        let c = AuthConfig {
            jwt_secret: Some("s".repeat(40)),
            ..AuthConfig::default()
        };
        let text = serde_json::to_string(&c).unwrap_or_default();
        assert!(!text.contains("sss"), "{text}");
    }

    #[test]
    fn account_emails_ignore_case_and_spaces() {
        assert_eq!(account_email(" Ada@Example.COM "), "ada@example.com");
    }
}
