//! Sending one e-mail over SMTP (`lettre`), shared by usage reports and
//! budget alerts, and who a wallet's mail goes to.
//!
//! A person's wallet mails its owner. A team's wallet has no address of
//! its own: its mail goes to the members who answer for its money, its
//! team admins and billing members (`teams::accountable`).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use oneflow::email::{EmailConfig, PASSWORD_ENV, TlsMode, USERNAME_ENV};

use super::{Services, blocking, teams};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::User;

/// The addresses `user`'s mail goes to, at least one: the user's own, or
/// for a team's wallet its team admins' and billing members' (those with
/// an address). 409 when there is none to send to.
pub(crate) async fn recipients(s: &Services, user: &User) -> Result<Vec<Mailbox>, BrokerError> {
    let people = if teams::is_team(&user.id) {
        let ids = teams::accountable(s, &user.id).await?;
        let store = s.store.clone();
        blocking(move || {
            let mut found = Vec::new();
            for id in ids {
                found.extend(store.user(&id)?);
            }
            Ok(found)
        })
        .await?
    } else {
        vec![user.clone()]
    };
    // In address order, each once (two members may share one).
    let mut addresses: Vec<&str> = people
        .iter()
        .map(|p| p.email.trim())
        .filter(|a| !a.is_empty())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mut to = Vec::new();
    for address in addresses {
        to.push(address.parse().map_err(|e| {
            BrokerError::Conflict(format!("the address `{address}` cannot be mailed: {e}"))
        })?);
    }
    if to.is_empty() {
        return Err(BrokerError::Conflict(format!(
            "`{}` has no e-mail address to send to",
            user.id
        )));
    }
    Ok(to)
}

/// The addresses as one header-like line, for answers and logs.
pub(crate) fn joined(to: &[Mailbox]) -> String {
    to.iter()
        .map(|m| m.email.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn random_hex() -> String {
    let mut r = [0u8; 12];
    let _ = getrandom::fill(&mut r);
    r.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the message and hands it to the SMTP server, within
/// `email.timeout_secs` for the whole exchange. Answers its Message-ID.
pub(crate) async fn send(
    cfg: &EmailConfig,
    to: Vec<Mailbox>,
    subject: String,
    body: MultiPart,
) -> Result<String, BrokerError> {
    let (Some(host), Some(from)) = (&cfg.smtp_host, &cfg.from) else {
        return Err(BrokerError::EmailNotConfigured);
    };
    let failed =
        |what: &str, e: &dyn std::fmt::Display| BrokerError::EmailFailed(format!("{what}: {e}"));
    let sender: Mailbox = from.parse().map_err(|e| failed("email.from", &e))?;
    let domain = from.rsplit_once('@').map_or("oneflow", |(_, d)| d);
    let message_id = format!("<{}.{}@{domain}>", now_ms(), random_hex());
    let mut message = Message::builder().from(sender);
    for m in to {
        message = message.to(m);
    }
    let message = message
        .subject(subject)
        .message_id(Some(message_id.clone()))
        .multipart(body)
        .map_err(|e| failed("building the message", &e))?;
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let mut smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(cfg.smtp_port)
        .timeout(Some(timeout))
        .hello_name(ClientId::Domain(domain.to_string()));
    let tls = |host: &str| TlsParameters::new(host.to_string()).map_err(|e| failed("TLS", &e));
    smtp = match cfg.tls {
        // Required: never fall back to sending in the clear.
        TlsMode::Starttls => smtp.tls(Tls::Required(tls(host)?)),
        TlsMode::Tls => smtp.tls(Tls::Wrapper(tls(host)?)),
        TlsMode::None => smtp.tls(Tls::None),
    };
    if let (Ok(u), Ok(p)) = (std::env::var(USERNAME_ENV), std::env::var(PASSWORD_ENV)) {
        smtp = smtp.credentials(Credentials::new(u, p));
    }
    let mailer = smtp.build();
    match tokio::time::timeout(timeout, mailer.send(message)).await {
        Err(_) => Err(BrokerError::EmailFailed(format!(
            "the SMTP server at {host}:{} did not finish within {}s",
            cfg.smtp_port, cfg.timeout_secs
        ))),
        Ok(Err(e)) => Err(failed(&format!("SMTP server {host}:{}", cfg.smtp_port), &e)),
        Ok(Ok(_)) => Ok(message_id),
    }
}
