//! Usage reports by e-mail: one user's report over a period, sent now
//! (`POST /api/reports/send-now`) or by the scheduler's `email-reports`
//! task for the last closed day or week.
//!
//! The figures are the rollups' (`Store::summary` and `Store::series`, the
//! reads `GET /api/analytics` answers from), so they equal the ledger; the
//! CSV attachment is `GET /api/export/requests`' own writer over the same
//! range. What the report says is the domain's (`oneflow::report`).
//!
//! Once across nodes and restarts: before a scheduled report is sent, its
//! mark `report-sent/<user>/<period start>/<daily|weekly>` is created with expected
//! version 0, so of two nodes (or two runs) only one sends. A send that
//! fails turns its mark to `failed` and a later run claims it again (by
//! version), up to [`MAX_ATTEMPTS`] sends in all; then it is given up. A
//! graceful stop waits for the send under way ([`drain`]); a process
//! that dies between the mark and the send leaves it `sending`,
//! which is never retried: a report may be lost, never sent twice by us
//! (an SMTP server that takes the message but whose answer is lost to a
//! timeout is the one way to a second copy, on the retry).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use serde::{Deserialize, Serialize};

use oneflow::Credits;
use oneflow::analytics::Bucket;
use oneflow::email::{Period, Reports, due};
use oneflow::report::Report;
use oneflow::time::{Millis, rfc3339};

use super::export::{ExportKind, ExportQuery, Format, export_blocking};
use super::{ADMIN_ID, Services, blocking, mail};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::{DocWrite, User};

/// The document kind of the scheduler's marks.
pub const MARK_KIND: &str = "report-sent";
/// Sends of one scheduled report before it is given up.
pub const MAX_ATTEMPTS: u32 = 3;
/// The largest CSV attached: past it the rows stop (and the report says
/// so), keeping the message well under common SMTP size limits once
/// base64 has grown it by a third.
pub const MAX_CSV_BYTES: usize = 5 << 20;
/// Reports being sent at once, over send-now and the scheduler: each
/// holds a connection to the SMTP server and a CSV in memory.
const MAX_SENDING: usize = 4;
/// The chart's Content-ID, referenced from the HTML as `cid:`.
pub const CHART_CID: &str = "chart@oneflow";

/// The slots of reports being sent (`MAX_SENDING`), and the gate a
/// graceful stop closes: a scheduled report holds it shared from its claim
/// to its last mark, so a stop waits for the one under way (bounded by
/// `email.timeout_secs`) instead of leaving its mark `sending` for ever.
#[derive(Clone)]
pub(crate) struct Sending {
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    /// True once closed: no new claim.
    closed: Arc<tokio::sync::RwLock<bool>>,
}

impl Default for Sending {
    fn default() -> Self {
        Sending {
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_SENDING)),
            closed: Arc::default(),
        }
    }
}

/// Waits for the scheduled report being sent, if any, and lets no other
/// start. Called by the broker's graceful stop.
pub(crate) async fn drain(s: &Services) {
    *s.reports.closed.write().await = true;
}

/// What was sent.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SentReport {
    /// The user whose report it is.
    pub user_id: String,
    /// The addresses it went to, comma-separated: the user's own; for a
    /// team, its team admins' and billing members'.
    pub sent_to: String,
    /// The message's `Message-ID` header, angle brackets included.
    pub message_id: String,
    /// The period covered, `[from, to)` in milliseconds since the epoch
    /// (widened to whole hours or days).
    #[schema(value_type = i64)]
    pub from: Millis,
    #[schema(value_type = i64)]
    pub to: Millis,
    pub requests: u64,
    pub spend: Credits,
}

/// A scheduled report's mark (see the module's comment).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Mark {
    /// `sending`, `sent`, `failed` or `skipped` (nothing to report).
    state: String,
    attempts: u32,
    at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Sends `user_id`'s report over `period` now.
pub(crate) async fn send_now(
    s: &Services,
    user_id: &str,
    period: Period,
) -> Result<SentReport, BrokerError> {
    if !s.config.email.enabled() {
        return Err(BrokerError::EmailNotConfigured);
    }
    let store = s.store.clone();
    let uid = user_id.to_string();
    let user = blocking(move || store.user(&uid))
        .await?
        .ok_or(BrokerError::NotFound("user"))?;
    let _slot = s
        .reports
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| BrokerError::Busy)?;
    let (report, csv) = gather(s, &user, period).await?;
    deliver(s, &user, &report, csv).await
}

/// The report and its CSV, read in one blocking task.
async fn gather(s: &Services, user: &User, period: Period) -> Result<(Report, Bytes), BrokerError> {
    let store = s.store.clone();
    let (uid, name) = (user.id.clone(), user.name.clone());
    blocking(move || {
        let summary = store.summary(&uid, Some((period.from, period.to)))?;
        let bucket = if period.hourly() {
            Bucket::Hour
        } else {
            Bucket::Day
        };
        let series = store.series(&uid, bucket, period.from, period.to, None)?;
        let mut report = Report::new(&uid, &name, period, &summary, &series);
        let q = ExportQuery {
            kind: ExportKind::Requests,
            format: Format::Csv,
            user_id: Some(uid.clone()),
            from: period.from,
            to: period.to,
        };
        let mut csv = Vec::new();
        let mut truncated = false;
        let rows = export_blocking(&*store, &q, |chunk| {
            // Chunks end on whole rows: a cut one is left out whole.
            if csv.len() + chunk.len() > MAX_CSV_BYTES {
                truncated = true;
                return false;
            }
            csv.extend_from_slice(&chunk);
            true
        })?;
        report.csv_truncated = truncated;
        report.csv_rows = if truncated { records(&csv) } else { rows };
        Ok((report, Bytes::from(csv)))
    })
    .await
}

/// Rows in CSV text, header excluded: line ends outside quotes.
fn records(csv: &[u8]) -> u64 {
    let mut quoted = false;
    let mut n = 0u64;
    for w in csv.windows(2) {
        if w[0] == b'"' {
            quoted = !quoted;
        } else if !quoted && w == b"\r\n" {
            n += 1;
        }
    }
    n.saturating_sub(1)
}

/// Builds the report's message (text, HTML with the chart inline, the
/// CSV attached) and sends it to `user`'s recipients (`mail::recipients`).
async fn deliver(
    s: &Services,
    user: &User,
    report: &Report,
    csv: Bytes,
) -> Result<SentReport, BrokerError> {
    if !s.config.email.enabled() {
        return Err(BrokerError::EmailNotConfigured);
    }
    let to = mail::recipients(s, user).await?;
    let sent_to = mail::joined(&to);
    let failed = |e: &dyn std::fmt::Display| BrokerError::EmailFailed(format!("content type: {e}"));
    let svg = ContentType::parse("image/svg+xml").map_err(|e| failed(&e))?;
    let text_csv = ContentType::parse("text/csv; charset=utf-8").map_err(|e| failed(&e))?;
    let body = MultiPart::mixed()
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(report.text()))
                .multipart(
                    MultiPart::related()
                        .singlepart(SinglePart::html(report.html(CHART_CID)))
                        .singlepart(
                            Attachment::new_inline(CHART_CID.to_string()).body(report.svg(), svg),
                        ),
                ),
        )
        .singlepart(Attachment::new(report.csv_name()).body(csv.to_vec(), text_csv));
    let message_id = mail::send(&s.config.email, to, report.subject(), body).await?;
    Ok(SentReport {
        user_id: user.id.clone(),
        sent_to,
        message_id,
        from: report.period.from,
        to: report.period.to,
        requests: report.requests,
        spend: report.spend,
    })
}

/// Starts the scheduler's `email-reports` task when `[email]` asks for
/// reports.
pub(crate) fn schedule(services: &Arc<Services>) {
    let e = &services.config.email;
    if !e.enabled() || e.reports == oneflow::email::Reports::Off {
        return;
    }
    let every = Duration::from_secs(e.check_every_secs);
    super::every(services, "email-reports", every, |s| async move {
        run_due(&s).await
    });
}

/// One run of the `email-reports` task: each user's report for the period
/// due now, if not sent yet, at most `email.max_per_run` of them. The
/// built-in admin gets none. Errors name how many sends failed.
pub(crate) async fn run_due(s: &Services) -> Result<(), String> {
    let cfg = &s.config.email;
    let Some(period) = due(cfg.reports, cfg.send_hour_utc, now_ms()) else {
        return Ok(());
    };
    let kind = match cfg.reports {
        Reports::Off => return Ok(()),
        Reports::Daily => "daily",
        Reports::Weekly => "weekly",
    };
    let store = s.store.clone();
    let mut users = blocking(move || store.users())
        .await
        .map_err(|e| e.to_string())?;
    users.sort_by(|a, b| a.id.cmp(&b.id));
    let (mut sent, mut worked, mut failures) = (0usize, 0usize, Vec::new());
    for user in users.iter().filter(|u| u.id != ADMIN_ID) {
        if worked >= cfg.max_per_run {
            break;
        }
        match one(s, user, period, kind).await {
            Ok(Some(true)) => {
                sent += 1;
                worked += 1;
            }
            Ok(Some(false)) => worked += 1,
            Ok(None) => {}
            Err(e) => {
                worked += 1;
                failures.push(format!("{}: {e}", user.id));
            }
        }
    }
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} of {} reports for {} failed (sent {sent}); first: {first}",
            failures.len(),
            worked,
            rfc3339(period.from)
        )),
    }
}

/// One user's scheduled report: `None` if it was done before (or is
/// another node's), `Some(true)` sent, `Some(false)` skipped as empty.
async fn one(
    s: &Services,
    user: &User,
    period: Period,
    kind: &str,
) -> Result<Option<bool>, BrokerError> {
    // The kind too: a week and a day can start on the same Monday.
    let id = format!("{}/{}/{kind}", user.id, rfc3339(period.from));
    let store = s.store.clone();
    let key = id.clone();
    let existing = blocking(move || store.doc(MARK_KIND, &key)).await?;
    let (expected, attempts) = match &existing {
        None => (0, 0),
        Some(doc) => {
            let mark: Mark = doc.decode()?;
            if mark.state != "failed" || mark.attempts >= MAX_ATTEMPTS {
                return Ok(None);
            }
            (doc.version, mark.attempts)
        }
    };
    // Held (shared) until the last mark is written; see `Sending`.
    let gate = s.reports.closed.clone().read_owned().await;
    if *gate {
        return Ok(None);
    }
    let permit = s
        .reports
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| BrokerError::Unavailable("report slots closed".into()))?;
    let (report, csv) = gather(s, user, period).await?;
    let empty = report.requests == 0 && !s.config.email.send_empty;
    let mark = |state: &str, attempts, message_id: Option<String>, error: Option<String>| Mark {
        state: state.into(),
        attempts,
        at: now_ms(),
        message_id,
        error,
    };
    let claim = if empty {
        mark("skipped", attempts, None, None)
    } else {
        mark("sending", attempts + 1, None, None)
    };
    if !write(s, DocWrite::replace(MARK_KIND, &id, expected, &claim)?).await? {
        // Another node (or run) took it first.
        return Ok(None);
    }
    if empty {
        return Ok(Some(false));
    }
    let outcome = deliver(s, user, &report, csv).await;
    drop(permit);
    // The claim's version is one past what it replaced (1 for a new mark).
    let claimed = expected + 1;
    let after = match &outcome {
        Ok(r) => mark("sent", attempts + 1, Some(r.message_id.clone()), None),
        Err(e) => mark("failed", attempts + 1, None, Some(e.to_string())),
    };
    // Best effort: a mark left `sending` is never sent again, which is
    // what must hold; only a retry of a failure would be lost.
    let _ = write(s, DocWrite::replace(MARK_KIND, &id, claimed, &after)?).await;
    drop(gate);
    outcome.map(|_| Some(true))
}

async fn write(s: &Services, w: DocWrite) -> Result<bool, BrokerError> {
    let store = s.store.clone();
    blocking(move || store.write_docs(vec![w])).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_counted_outside_quotes() {
        assert_eq!(records(b"a,b\r\n1,2\r\n"), 1);
        assert_eq!(records(b"a,b\r\n1,\"x\r\ny\"\r\n3,4\r\n"), 2);
        assert_eq!(records(b"a,b\r\n"), 0);
    }
}
