//! Every way a broker operation can fail, and, in one table
//! ([`BrokerError::class`]), what each failure is to the outside: the
//! stable code the HTTP API answers with, the request counter is labelled
//! with and the logs write; the HTTP status; and whether it is a fault of
//! the broker or a provider rather than a refusal. The web layer, the
//! metrics and the logs read these; none works them out again.

use std::sync::Arc;

use oneflow::budget::BudgetError;
use oneflow::ledger::Refusal;
use oneflow::records::RequestStatus;
use oneflow::request::RequestError;

use crate::metrics;
use crate::store::StoreError;
use crate::views::{ErrorCode, RequestOutcome};
use crate::wallet::WalletError;

/// Every way a broker operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("the broker is busy; retry shortly")]
    Busy,
    #[error(transparent)]
    TooManyInFlight(WalletError),
    #[error("too many exports are running; retry when one has finished")]
    TooManyExports,
    #[error("too many jobs are running; retry when one has finished")]
    TooManyJobs,
    /// A job asked of a model that answers at once (not video).
    #[error("model `{0}` answers at once, not as a job: send it to /api/request")]
    NotAJob(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this (an admin's decision stands).
    #[error("{0}")]
    Forbidden(String),
    /// A request its API key's scope does not allow (a model, a provider).
    #[error("{0}")]
    OutOfScope(String),
    /// A new key's scope naming what does not exist, twice, too much, or
    /// an expiry already past: each part well formed, so not a 400.
    #[error("{0}")]
    BadScope(String),
    /// An API key past its `expires_at`.
    #[error("this API key has expired; make a new one")]
    KeyExpired,
    #[error("{0}")]
    Conflict(String),
    /// A dashboard body whose fields are each well formed but name an
    /// unknown metric, grouping, window or chart, or break a bound.
    #[error("{0}")]
    InvalidDashboard(String),
    /// A range too wide for the answer asked of it (too many points, or
    /// too many requests to split by a record's field).
    #[error("{0}")]
    RangeTooLarge(String),
    /// A registration for an e-mail address that has an account.
    #[error("an account with this e-mail address exists; sign in instead")]
    EmailTaken,
    /// A password the rules refuse (`oneflow::auth::check_password`).
    #[error(transparent)]
    WeakPassword(#[from] oneflow::auth::WeakPassword),
    /// Registration needs an invitation (`auth.open_registration` is off).
    #[error("registration is by invitation: send the `invitation` an administrator gave you")]
    RegistrationClosed,
    /// An invitation that is unknown, used, expired or for another address.
    #[error("{0}")]
    BadInvitation(&'static str),
    /// A sign-in with a wrong e-mail address or password (which of the two
    /// is not said).
    #[error("wrong e-mail address or password")]
    BadCredentials,
    /// A sign-in token that is unknown, expired, spent or revoked.
    #[error("{0}")]
    BadToken(&'static str),
    /// Too many wrong passwords for one account; the seconds until its
    /// window passes.
    #[error("too many wrong passwords for this account; retry after the time in Retry-After")]
    AccountLocked(u64),
    /// An idempotent replay whose first answer was too large to keep
    /// (`idempotency.max_answer_bytes`): it ran and was charged once.
    #[error(
        "request {0} already ran with this Idempotency-Key and was charged once; its answer was too large to keep for replays (see its record in the history)"
    )]
    AnswerNotKept(String),
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("{0}")]
    Unavailable(String),
    /// No `[email]` SMTP server is configured (`usecase/reports.rs`).
    #[error("no SMTP server is configured: set [email] smtp_host and from")]
    EmailNotConfigured,
    /// The SMTP server refused the message, did not answer, or took
    /// longer than `email.timeout_secs`.
    #[error("the report was not sent: {0}")]
    EmailFailed(String),
    /// Every try of every provider failed (the hold was released).
    #[error("{message}")]
    Upstream {
        code: ErrorCode,
        message: String,
        retry_after: Option<u64>,
    },
}

impl From<WalletError> for BrokerError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::Refused(r) => BrokerError::Refused(r),
            WalletError::IdempotencyMismatch => BrokerError::IdempotencyMismatch,
            WalletError::Busy => BrokerError::Busy,
            e @ WalletError::TooManyInFlight => BrokerError::TooManyInFlight(e),
            WalletError::UnknownUser => BrokerError::NotFound("user"),
            WalletError::Store(s) => BrokerError::Store(s),
            WalletError::Unavailable(s) => BrokerError::Unavailable(s),
        }
    }
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        BrokerError::Store(Arc::new(e))
    }
}

impl From<BudgetError> for BrokerError {
    fn from(e: BudgetError) -> Self {
        BrokerError::BadInput(e.to_string())
    }
}

/// What an error is to the outside (see [`BrokerError::class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    pub code: &'static str,
    pub status: u16,
    pub fault: bool,
}

const fn refused(code: &'static str, status: u16) -> Class {
    Class {
        code,
        status,
        fault: false,
    }
}

const fn fault(code: &'static str, status: u16) -> Class {
    Class {
        code,
        status,
        fault: true,
    }
}

impl BrokerError {
    /// The one table of codes and statuses. 5xx only for our own faults and
    /// the providers'; 429 when the providers are over their limits.
    pub fn class(&self) -> Class {
        match self {
            BrokerError::Invalid(r) => match r {
                RequestError::UnknownModel(_) => refused("unknown_model", 400),
                // Every circuit open: nothing was held; retry shortly.
                RequestError::NoProviderAvailable(_) => refused("no_provider_available", 503),
                // No provider can serve it within its constraints.
                RequestError::OverMaxPrice { .. } => refused("over_max_price", 422),
                RequestError::NoProviderInRegion { .. } => refused("no_provider_in_region", 422),
                // A well-formed request whose named provider cannot serve
                // its model: like the two above, it names what it wants.
                RequestError::UnknownProvider(_) => refused("provider_not_serving", 422),
                _ => refused("invalid_request", 400),
            },
            BrokerError::BadInput(_) => refused("invalid_request", 400),
            BrokerError::Refused(r) => match r {
                Refusal::InsufficientBalance { .. } => refused("insufficient_credits", 402),
                Refusal::BudgetExceeded { .. } => refused("budget_exceeded", 402),
                Refusal::NotPositive | Refusal::WouldOverdraw => refused("invalid_request", 400),
                // Well formed, but the balance would pass the largest one
                // held: it depends on the wallet, not on the request.
                Refusal::TooLarge => refused("balance_too_large", 422),
                Refusal::UnknownHold(_) => fault("internal", 500),
            },
            BrokerError::IdempotencyMismatch => refused("idempotency_key_reused", 422),
            BrokerError::Busy => refused("overloaded", 503),
            // The caller's own load, not the broker's: 429, like a rate limit.
            BrokerError::TooManyInFlight(_) => refused("too_many_in_flight", 429),
            BrokerError::TooManyExports => refused("too_many_exports", 429),
            BrokerError::TooManyJobs => refused("too_many_jobs", 429),
            BrokerError::NotAJob(_) => refused("not_a_job", 422),
            BrokerError::NotFound(_) => refused("not_found", 404),
            BrokerError::Forbidden(_) => refused("forbidden", 403),
            BrokerError::OutOfScope(_) => refused("outside_key_scope", 403),
            BrokerError::BadScope(_) => refused("invalid_key_scope", 422),
            BrokerError::KeyExpired => refused("key_expired", 401),
            BrokerError::Conflict(_) => refused("conflict", 409),
            BrokerError::InvalidDashboard(_) => refused("invalid_dashboard", 422),
            BrokerError::RangeTooLarge(_) => refused("invalid_range", 422),
            BrokerError::EmailTaken => refused("email_taken", 409),
            BrokerError::WeakPassword(_) => refused("weak_password", 400),
            BrokerError::RegistrationClosed => refused("registration_closed", 403),
            BrokerError::BadInvitation(_) => refused("invalid_invitation", 403),
            BrokerError::BadCredentials => refused("invalid_credentials", 401),
            BrokerError::BadToken(_) => refused("invalid_token", 401),
            BrokerError::AccountLocked(_) => refused("account_locked", 429),
            BrokerError::AnswerNotKept(_) => refused("idempotency_answer_not_kept", 409),
            BrokerError::Store(_) => fault("internal", 500),
            BrokerError::Unavailable(_) => fault("unavailable", 503),
            // A state of the server's configuration, not of the request:
            // 409, as retrying the same request cannot help until it changes.
            BrokerError::EmailNotConfigured => refused("email_not_configured", 409),
            BrokerError::EmailFailed(_) => fault("email_failed", 502),
            BrokerError::Upstream { code, .. } => fault(
                code.as_str(),
                match code {
                    ErrorCode::ProviderOverloaded => 429,
                    ErrorCode::ProviderUnavailable => 503,
                    ErrorCode::ProviderTimeout => 504,
                    _ => 502,
                },
            ),
        }
    }

    /// The error's stable code: the one the HTTP API answers with (in
    /// `{"error": {"code"}}`), the request counter's `code` label and the
    /// logs use.
    pub fn code(&self) -> &'static str {
        self.class().code
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> u16 {
        self.class().status
    }

    /// Whether the broker or a provider failed (rather than the request
    /// being refused): the counter's `status` label, `error` or `refused`.
    pub fn is_fault(&self) -> bool {
        self.class().fault
    }

    /// Seconds to wait before retrying, where retrying helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            BrokerError::Invalid(RequestError::NoProviderAvailable(_))
            | BrokerError::Busy
            | BrokerError::TooManyInFlight(_)
            | BrokerError::TooManyExports
            | BrokerError::TooManyJobs => Some(1),
            BrokerError::Upstream { retry_after, .. } => *retry_after,
            BrokerError::AccountLocked(secs) => Some(*secs),
            _ => None,
        }
    }

    /// The error a failed request's outcome is answered with (its hold was
    /// released); `None` if the request succeeded.
    pub fn from_outcome(o: &RequestOutcome) -> Option<BrokerError> {
        (o.status == RequestStatus::Failed).then(|| BrokerError::Upstream {
            code: o.error_code.unwrap_or(ErrorCode::ProviderError),
            message: o.error.clone().unwrap_or_default(),
            retry_after: o.retry_after_secs,
        })
    }
}

/// How the request counter labels an error: its [`BrokerError::code`].
impl From<&BrokerError> for metrics::Failure {
    fn from(e: &BrokerError) -> Self {
        match e {
            // Counted when the released request is recorded.
            BrokerError::Upstream { .. } => metrics::Failure::AtSettle,
            e => metrics::Failure::Count {
                status: if e.is_fault() { "error" } else { "refused" },
                code: e.code(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use oneflow::Credits;
    use oneflow::pricing::Usage;

    use super::*;

    fn outcome(status: RequestStatus, error_code: Option<ErrorCode>) -> RequestOutcome {
        RequestOutcome {
            request_id: "req_1".into(),
            status,
            response: None,
            model: "m".into(),
            provider: "p".into(),
            usage: Usage::default(),
            quote: Credits::from_credits(1),
            cost: Credits::ZERO,
            balance: Credits::ZERO,
            available: Credits::ZERO,
            route: String::new(),
            error_code,
            error: Some("slow".into()),
            retry_after_secs: Some(3),
            latency_ms: 1,
            created_at: 1,
            usage_anomaly: false,
        }
    }

    /// A failed request is answered with the status of its provider
    /// failure, its code and its retry hint; a good one is no error.
    #[test]
    fn a_failed_outcome_answers_with_the_status_of_its_code() {
        let statuses = [
            (ErrorCode::ProviderOverloaded, 429),
            (ErrorCode::ProviderUnavailable, 503),
            (ErrorCode::ProviderTimeout, 504),
            (ErrorCode::ProviderError, 502),
        ];
        for (code, status) in statuses {
            let e = BrokerError::from_outcome(&outcome(RequestStatus::Failed, Some(code)))
                .expect("failed");
            assert_eq!((e.code(), e.status()), (code.as_str(), status));
            assert_eq!(e.retry_after(), Some(3));
            assert_eq!(e.to_string(), "slow");
            assert!(e.is_fault());
        }
        let ok = outcome(RequestStatus::Succeeded, None);
        assert!(BrokerError::from_outcome(&ok).is_none());
    }

    /// The refusals a client can fix are 4xx, the broker's own trouble
    /// 5xx, and an overloaded broker asks for a retry.
    #[test]
    fn each_error_has_its_status() {
        let cases = [
            (
                BrokerError::Invalid(RequestError::UnknownModel("m".into())),
                400,
            ),
            (BrokerError::Invalid(RequestError::EmptyPrompt), 400),
            (
                BrokerError::Invalid(RequestError::OverMaxPrice {
                    max: Credits::ZERO,
                    cheapest: Credits::from_credits(1),
                }),
                422,
            ),
            (
                BrokerError::Invalid(RequestError::NoProviderAvailable("m".into())),
                503,
            ),
            (BrokerError::Refused(Refusal::NotPositive), 400),
            (BrokerError::Refused(Refusal::UnknownHold(1)), 500),
            (BrokerError::IdempotencyMismatch, 422),
            (BrokerError::Busy, 503),
            (
                BrokerError::TooManyInFlight(WalletError::TooManyInFlight),
                429,
            ),
            (BrokerError::TooManyExports, 429),
            (BrokerError::NotFound("user"), 404),
            (BrokerError::Forbidden("x".into()), 403),
            (BrokerError::Conflict("x".into()), 409),
            (BrokerError::EmailTaken, 409),
            (
                BrokerError::WeakPassword(oneflow::auth::WeakPassword::Common),
                400,
            ),
            (BrokerError::RegistrationClosed, 403),
            (BrokerError::BadInvitation("x"), 403),
            (BrokerError::BadCredentials, 401),
            (BrokerError::BadToken("x"), 401),
            (BrokerError::AnswerNotKept("req_1".into()), 409),
            (BrokerError::Store(Arc::new(StoreError::Closed)), 500),
            (BrokerError::Unavailable("x".into()), 503),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            assert_eq!(
                e.retry_after().is_some(),
                matches!(
                    e,
                    BrokerError::Busy
                        | BrokerError::TooManyInFlight(_)
                        | BrokerError::TooManyExports
                        | BrokerError::Invalid(RequestError::NoProviderAvailable(_))
                ),
                "{e:?}"
            );
        }
    }
}
