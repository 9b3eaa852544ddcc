//! Exports of requests, ledger entries and analytics rows, as CSV, a JSON
//! array or NDJSON, of any size in flat memory.
//!
//! One blocking task reads the store in key order inside one read
//! transaction (a consistent snapshot; redb readers never block the writer),
//! encodes rows into chunks of about 64 KiB and hands each chunk to a sink.
//! [`start`] makes that sink a bounded channel, so a slow client
//! slows the reader instead of growing a buffer.

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use oneflow::analytics::{Bucket, Figures, Rollup};
use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;
use oneflow::time::{Millis, rfc3339};

use super::Services;
use crate::error::BrokerError;
use crate::store::{Store, StoreError};

/// What to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Requests,
    Transactions,
    /// Rollup rows (bucket start x provider) of the chosen width.
    Analytics(Bucket),
}

/// How to write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    /// One JSON array.
    Json,
    /// One JSON object a line.
    Ndjson,
}

/// Whose rows (`user_id: None`: every user's) and over what time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportQuery {
    pub kind: ExportKind,
    pub format: Format,
    pub user_id: Option<String>,
    /// Rows stamped in `[from, to)`.
    pub from: Millis,
    pub to: Millis,
}

/// Chunk size handed to the sink.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for a slow client: memory is bounded by this times CHUNK.
const QUEUE: usize = 8;

/// One analytics row as exported.
#[derive(Serialize)]
struct BucketRow<'a> {
    start: Millis,
    provider: &'a str,
    #[serde(flatten)]
    figures: Figures,
}

/// One CSV cell. Text that a spreadsheet would run as a formula (it
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return, and is not
/// a number) gets a leading `'`: prompts and notes are users' text, and an
/// export is opened by someone else.
fn csv_field(out: &mut Vec<u8>, v: &str) {
    let formula = v.starts_with(['=', '+', '-', '@', '\t', '\r']) && v.parse::<f64>().is_err();
    let neutral;
    let v = if formula {
        neutral = format!("'{v}");
        neutral.as_str()
    } else {
        v
    };
    if v.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(v.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(v.as_bytes());
    }
}

pub(crate) fn csv_line(out: &mut Vec<u8>, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(out, f);
    }
    out.extend_from_slice(b"\r\n");
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn lower<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

const REQUEST_COLUMNS: &[&str] = &[
    "id",
    "user_id",
    "created_at",
    "created_at_utc",
    "model",
    "modality",
    "provider",
    "status",
    "quote",
    "cost",
    "shortfall",
    "input_tokens",
    "output_tokens",
    "images",
    "seconds",
    "latency_ms",
    "attempts",
    "error",
];

const ENTRY_COLUMNS: &[&str] = &[
    "user_id",
    "seq",
    "at",
    "at_utc",
    "kind",
    "amount",
    "balance_after",
    "available_after",
    "hold_id",
    "request_id",
    "note",
];

const BUCKET_COLUMNS: &[&str] = &[
    "start",
    "start_utc",
    "provider",
    "requests",
    "successes",
    "failures",
    "cost",
    "input_tokens",
    "output_tokens",
    "mean_latency_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
];

/// Writes rows in one format, with the header or brackets around them.
struct Writer {
    format: Format,
    rows: u64,
    buf: Vec<u8>,
}

impl Writer {
    fn begin(&mut self, columns: &[&str]) {
        match self.format {
            Format::Csv => csv_line(&mut self.buf, columns),
            Format::Json => self.buf.push(b'['),
            Format::Ndjson => {}
        }
    }

    fn json<T: Serialize>(&mut self, v: &T) -> Result<(), StoreError> {
        if self.format == Format::Json && self.rows > 0 {
            self.buf.push(b',');
        }
        serde_json::to_writer(&mut self.buf, v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if self.format == Format::Ndjson {
            self.buf.push(b'\n');
        }
        Ok(())
    }

    fn request(&mut self, r: &RequestRecord) -> Result<(), StoreError> {
        if self.format == Format::Csv {
            let f = [
                r.id.clone(),
                r.user_id.clone(),
                r.created_at.to_string(),
                rfc3339(r.created_at),
                r.model.clone(),
                lower(&r.modality),
                r.provider.clone(),
                lower(&r.status),
                r.quote.to_string(),
                r.cost.to_string(),
                r.shortfall.to_string(),
                r.usage.input_tokens.to_string(),
                r.usage.output_tokens.to_string(),
                r.usage.images.to_string(),
                r.usage.seconds.to_string(),
                r.latency_ms.to_string(),
                r.attempts.len().to_string(),
                opt(r.error.as_ref()),
            ];
            csv_line(&mut self.buf, &f.each_ref().map(String::as_str));
        } else {
            self.json(r)?;
        }
        self.rows += 1;
        Ok(())
    }

    fn entry(&mut self, e: &LedgerEntry) -> Result<(), StoreError> {
        if self.format == Format::Csv {
            let f = [
                e.user_id.clone(),
                e.seq.to_string(),
                e.at.to_string(),
                rfc3339(e.at),
                lower(&e.kind),
                e.amount.to_string(),
                e.balance_after.to_string(),
                e.available_after.to_string(),
                opt(e.hold_id),
                opt(e.request_id.as_ref()),
                opt(e.note.as_ref()),
            ];
            csv_line(&mut self.buf, &f.each_ref().map(String::as_str));
        } else {
            self.json(e)?;
        }
        self.rows += 1;
        Ok(())
    }

    fn bucket(&mut self, start: Millis, provider: &str, r: &Rollup) -> Result<(), StoreError> {
        let figures = Figures::of(r);
        if self.format == Format::Csv {
            let f = [
                start.to_string(),
                rfc3339(start),
                provider.to_string(),
                figures.requests.to_string(),
                figures.successes.to_string(),
                figures.failures.to_string(),
                figures.cost.to_string(),
                figures.input_tokens.to_string(),
                figures.output_tokens.to_string(),
                figures.mean_latency_ms.to_string(),
                opt(figures.latency_p50_ms),
                opt(figures.latency_p95_ms),
                opt(figures.latency_p99_ms),
            ];
            csv_line(&mut self.buf, &f.each_ref().map(String::as_str));
        } else {
            self.json(&BucketRow {
                start,
                provider,
                figures,
            })?;
        }
        self.rows += 1;
        Ok(())
    }

    fn end(&mut self) {
        if self.format == Format::Json {
            self.buf.push(b']');
        }
    }

    /// Hands the buffer to the sink once it is a chunk; false: stop.
    fn flush(&mut self, sink: &mut impl FnMut(Bytes) -> bool, force: bool) -> bool {
        if self.buf.is_empty() || (!force && self.buf.len() < CHUNK) {
            return true;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 4096));
        sink(Bytes::from(chunk))
    }
}

/// Reads the rows of `q` and hands them, encoded, to `sink` in chunks,
/// until done or `sink` returns false (the reader went away). Blocking.
/// Returns the rows written.
pub fn export_blocking(
    store: &dyn Store,
    q: &ExportQuery,
    mut sink: impl FnMut(Bytes) -> bool,
) -> Result<u64, StoreError> {
    let mut w = Writer {
        format: q.format,
        rows: 0,
        buf: Vec::with_capacity(CHUNK + 4096),
    };
    let (from, to) = (q.from.max(0), q.to.max(0));
    match q.kind {
        ExportKind::Requests => {
            w.begin(REQUEST_COLUMNS);
            let mut stopped = false;
            store.each_request(q.user_id.as_deref(), from, to, &mut |r| {
                w.request(&r)?;
                stopped = !w.flush(&mut sink, false);
                Ok(!stopped)
            })?;
            if stopped {
                return Ok(w.rows);
            }
        }
        ExportKind::Transactions => {
            w.begin(ENTRY_COLUMNS);
            let mut stopped = false;
            store.each_entry(q.user_id.as_deref(), &mut |e| {
                if e.at < from || e.at >= to {
                    return Ok(true);
                }
                w.entry(&e)?;
                stopped = !w.flush(&mut sink, false);
                Ok(!stopped)
            })?;
            if stopped {
                return Ok(w.rows);
            }
        }
        ExportKind::Analytics(b) => {
            w.begin(BUCKET_COLUMNS);
            let scope = q.user_id.as_deref().unwrap_or("");
            let mut failed = None;
            let mut stopped = false;
            store.each_rollup(scope, b, from, to, &mut |start, provider, r| {
                if let Err(e) = w.bucket(start, provider, &r) {
                    failed = Some(e);
                    return false;
                }
                stopped = !w.flush(&mut sink, false);
                !stopped
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if stopped {
                return Ok(w.rows);
            }
        }
    }
    w.end();
    w.flush(&mut sink, true);
    Ok(w.rows)
}

/// Exports running now, by caller: each holds a blocking-pool thread and a
/// read transaction while it runs, so their number is bounded.
pub(crate) type Running =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// One running export, counted until dropped.
struct Slot {
    running: Running,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.running.lock() {
            if let Some(n) = m.get_mut(&self.caller) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.caller);
                }
            }
        }
    }
}

fn take_slot(s: &Services, caller: &str) -> Result<Slot, BrokerError> {
    let server = &s.config.server;
    let mut m = s
        .exports
        .lock()
        .map_err(|_| BrokerError::Unavailable("export slots lost to a panic".into()))?;
    let total: usize = m.values().sum();
    let mine = m.get(caller).copied().unwrap_or(0);
    if total >= server.max_exports || mine >= server.max_exports_per_user {
        return Err(BrokerError::TooManyExports);
    }
    *m.entry(caller.to_string()).or_default() += 1;
    Ok(Slot {
        running: s.exports.clone(),
        caller: caller.to_string(),
    })
}

/// Starts an export in a blocking task; chunks arrive on the returned
/// channel. An `Err` item means the export broke off (the body should
/// end abnormally so the client sees it incomplete). Refused with
/// [`BrokerError::TooManyExports`] past `server.max_exports` running, or
/// `server.max_exports_per_user` for this caller. A client that takes no
/// chunk for `server.client_stall_secs` ends its export, so no thread
/// waits on a client for longer.
pub(crate) fn start(
    s: &Services,
    caller: &str,
    q: ExportQuery,
) -> Result<mpsc::Receiver<Result<Bytes, String>>, BrokerError> {
    let slot = take_slot(s, caller)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let store = s.store.clone();
    let stall = std::time::Duration::from_secs(s.config.server.client_stall_secs);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let send = |item| {
            rt.block_on(tokio::time::timeout(stall, tx.send(item)))
                .is_ok_and(|sent| sent.is_ok())
        };
        let result = export_blocking(&*store, &q, |chunk| send(Ok(chunk)));
        if let Err(e) = result {
            let _ = send(Err(e.to_string()));
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: &str) -> String {
        let mut out = Vec::new();
        csv_field(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn cells_a_spreadsheet_would_run_as_formulas_are_neutralised() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(cell("+1+cmd"), "'+1+cmd");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("-2+3"), "'-2+3");
        assert_eq!(cell("\tx"), "'\tx");
        // Numbers stay numbers; ordinary text is untouched.
        assert_eq!(cell("-1.5"), "-1.5");
        assert_eq!(cell("+3"), "+3");
        assert_eq!(cell("hello, world"), "\"hello, world\"");
    }
}
