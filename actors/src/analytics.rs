//! Rollup storage and the analytics the broker answers from it.
//!
//! Three tables, one per bucket width, keyed (scope, bucket start, provider)
//! where scope is a user id or "" for the sum over every user. A time range
//! of one scope is one contiguous key range, so reading it costs the rows in
//! the range (buckets x providers), never the requests behind them.
//!
//! Rows are updated in the same write transaction as the request records
//! they sum (see `store::apply_all`), so they agree with the ledger exactly
//! and a crash loses both or neither. A file written before these tables
//! existed gets them rebuilt from its records on open.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;

use oneflow::Credits;
use oneflow::analytics::{
    Bucket, Point, Rollup, SeriesBuilder, Summary, cover, hourly_rate, runs_out_at, summarize,
};
use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;
use oneflow::time::{Millis, Window};

use crate::broker::{Broker, BrokerError};
use crate::ids::now_ms;
use crate::store::{Store, StoreError};

type RollupTable = TableDefinition<'static, (&'static str, u64, &'static str), &'static [u8]>;

const MINUTES: RollupTable = TableDefinition::new("rollup_minutes");
const HOURS: RollupTable = TableDefinition::new("rollup_hours");
const DAYS: RollupTable = TableDefinition::new("rollup_days");
/// The hourly table of the first file format, replaced by the three above.
const OLD_ROLLUPS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("rollups");

/// Meta key recording which rollup layout the file holds.
pub(crate) const ROLLUP_VERSION_KEY: &str = "rollup_version";
const ROLLUP_VERSION: u64 = 2;

/// The most points one series answer may have.
pub const MAX_POINTS: i64 = 10_000;

fn table(b: Bucket) -> RollupTable {
    match b {
        Bucket::Minute => MINUTES,
        Bucket::Hour => HOURS,
        Bucket::Day => DAYS,
    }
}

fn key_time(at: Millis) -> u64 {
    u64::try_from(at).unwrap_or(0)
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Rollup changes of one batch, summed before they touch the tables so
/// each row is read and written once per commit.
#[derive(Default)]
pub(crate) struct Deltas(BTreeMap<(Bucket, String, u64, String), Rollup>);

impl Deltas {
    /// Adds one finished request to its user's and the global rows of
    /// every width.
    pub(crate) fn add(&mut self, r: &RequestRecord) {
        let delta = Rollup::of(r);
        for b in Bucket::ALL {
            let start = key_time(b.floor(r.created_at));
            for scope in [r.user_id.as_str(), ""] {
                self.0
                    .entry((b, scope.to_string(), start, r.provider.clone()))
                    .or_default()
                    .merge(&delta);
            }
        }
    }

    /// Merges the deltas into the stored rows.
    pub(crate) fn apply(self, txn: &WriteTransaction) -> Result<(), StoreError> {
        let mut tables = [
            txn.open_table(MINUTES)?,
            txn.open_table(HOURS)?,
            txn.open_table(DAYS)?,
        ];
        for ((b, scope, start, provider), delta) in self.0 {
            let t = &mut tables[b as usize];
            let key = (scope.as_str(), start, provider.as_str());
            let mut cur = match t.get(key)? {
                Some(v) => Rollup::from_bytes(v.value()).map_err(corrupt)?,
                None => Rollup::default(),
            };
            cur.merge(&delta);
            t.insert(key, cur.to_bytes().as_slice())?;
        }
        Ok(())
    }
}

/// Creates the rollup tables and, for a file written before they existed,
/// fills them from the stored requests (once; the version key records it).
/// Returns how many requests were rolled up.
pub(crate) fn ensure_rollups(txn: &WriteTransaction) -> Result<u64, StoreError> {
    for b in Bucket::ALL {
        txn.open_table(table(b))?;
    }
    let mut meta = txn.open_table(crate::store::META)?;
    let version = match meta.get(ROLLUP_VERSION_KEY)? {
        Some(v) => Some(serde_json::from_slice::<u64>(v.value()).map_err(corrupt)?),
        None => None,
    };
    if version == Some(ROLLUP_VERSION) {
        return Ok(0);
    }
    let mut deltas = Deltas::default();
    let mut n = 0u64;
    {
        let requests = txn.open_table(crate::store::REQUESTS)?;
        for row in requests.iter()? {
            let r: RequestRecord = serde_json::from_slice(row?.1.value()).map_err(corrupt)?;
            deltas.add(&r);
            n += 1;
        }
    }
    // Rebuilding over whatever rows exist would count requests twice.
    for b in Bucket::ALL {
        let mut t = txn.open_table(table(b))?;
        t.retain(|_, _| false)?;
    }
    deltas.apply(txn)?;
    txn.delete_table(OLD_ROLLUPS).map_err(StoreError::from)?;
    let v = serde_json::to_vec(&ROLLUP_VERSION).map_err(corrupt)?;
    meta.insert(ROLLUP_VERSION_KEY, v.as_slice())?;
    Ok(n)
}

/// A stored rollup row: bucket start, provider, sums.
pub type Row = (Millis, String, Rollup);

impl Store {
    /// The rows of one width and scope with `from <= start < to`, ordered
    /// by start then provider.
    pub fn rollup_rows(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.each_rollup(scope, b, from, to, |start, p, r| {
            out.push((start, p.to_string(), r));
            true
        })?;
        Ok(out)
    }

    /// Calls `f` on each row of one width and scope in `[from, to)` until it
    /// returns false.
    pub fn each_rollup(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        mut f: impl FnMut(Millis, &str, Rollup) -> bool,
    ) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        let r = self.db.begin_read()?;
        let t = r.open_table(table(b))?;
        for row in t.range((scope, key_time(from), "")..(scope, key_time(to), ""))? {
            let (k, v) = row?;
            let (_, start, provider) = k.value();
            let rollup = Rollup::from_bytes(v.value()).map_err(corrupt)?;
            if !f(start as Millis, provider, rollup) {
                break;
            }
        }
        Ok(())
    }

    /// The dense series of one scope (and, if given, one provider) over
    /// `[from, to)` on `b` boundaries, merging each stored row straight
    /// into its bucket.
    pub fn series(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        provider: Option<&str>,
    ) -> Result<Vec<Point>, StoreError> {
        let mut out = SeriesBuilder::new(b, from, to);
        if from < to {
            let r = self.db.begin_read()?;
            let t = r.open_table(table(b))?;
            for row in t.range((scope, key_time(from), "")..(scope, key_time(to), ""))? {
                let (k, v) = row?;
                let (_, start, p) = k.value();
                if provider.is_some_and(|want| want != p) {
                    continue;
                }
                if let Some(slot) = out.slot(start as Millis) {
                    slot.merge_bytes(v.value()).map_err(corrupt)?;
                }
            }
        }
        Ok(out.finish())
    }

    /// Totals and per-provider figures of one scope over `[from, to)` (whole
    /// minutes), read from the widest rows that cover it; `None` for all
    /// time.
    pub fn summary(
        &self,
        scope: &str,
        range: Option<(Millis, Millis)>,
    ) -> Result<Summary, StoreError> {
        let parts = match range {
            Some((from, to)) => cover(from, to),
            None => vec![(Bucket::Day, 0, Millis::MAX)],
        };
        let mut rows = Vec::new();
        for (b, from, to) in parts {
            rows.extend(self.rollup_rows(scope, b, from, to)?);
        }
        Ok(summarize(rows.iter().map(|(_, p, r)| (p.as_str(), r))))
    }
}

/// Analytics of one user, or of all users.
#[derive(Clone, Debug, Serialize)]
pub struct Analytics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The range the figures cover, widened to whole buckets; absent for
    /// all time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Millis>,
    #[serde(flatten)]
    pub summary: Summary,
    pub recent_requests: Vec<RequestRecord>,
    pub recent_transactions: Vec<LedgerEntry>,
}

/// A time series for charts.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub bucket: Bucket,
    pub from: Millis,
    pub to: Millis,
    pub points: Vec<Point>,
}

/// One budget (or the balance) and when it runs out at the current rate.
#[derive(Clone, Debug, Serialize)]
pub struct Projection {
    /// `daily`, `weekly` or `monthly`.
    pub window: Window,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub limit: Credits,
    /// Spent in the current calendar window (held amounts included for the
    /// overall budgets, as the wallet counts them).
    pub spent: Credits,
    pub remaining: Credits,
    pub resets_at: Millis,
    /// Spend over the rate window that counts against this budget.
    pub rate_per_hour: Credits,
    /// When `remaining` is used up at the current rate; null if the rate is
    /// zero.
    pub runs_out_at: Option<Millis>,
    /// Whether that happens before the window resets.
    pub runs_out_before_reset: bool,
}

/// Spend rate over a recent window and when money or budgets run out.
#[derive(Clone, Debug, Serialize)]
pub struct BurnDown {
    pub user_id: String,
    pub now: Millis,
    /// The rate window: `[window_start, window_end)`, whole minutes.
    pub window_start: Millis,
    pub window_end: Millis,
    pub window_spent: Credits,
    pub rate_per_hour: Credits,
    pub balance: Credits,
    pub available: Credits,
    /// When `available` is used up at the current rate; null if zero.
    pub balance_runs_out_at: Option<Millis>,
    pub budgets: Vec<Projection>,
}

/// A time range request, already checked: `[from, to)` on bucket edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub bucket: Bucket,
    pub from: Millis,
    pub to: Millis,
}

impl Range {
    /// Widens `[from, to)` to whole buckets; defaults: `to` now, `from` one
    /// day earlier (or 60 buckets for days). Errors name the bad parameter.
    pub fn new(
        bucket: Bucket,
        from: Option<Millis>,
        to: Option<Millis>,
        now: Millis,
    ) -> Result<Range, String> {
        let to = bucket.ceil(to.unwrap_or(now));
        let default_span = match bucket {
            Bucket::Day => 30 * bucket.ms(),
            _ => 24 * 3_600_000,
        };
        let from = bucket.floor(from.unwrap_or(to.saturating_sub(default_span)));
        if from < 0 || to < 0 {
            return Err("`from` and `to` must not be before 1970".into());
        }
        if from >= to {
            return Err("`from` must be before `to`".into());
        }
        if (to - from) / bucket.ms() > MAX_POINTS {
            return Err(format!(
                "the range holds more than {MAX_POINTS} {} buckets: choose a wider bucket or a shorter range",
                bucket.name()
            ));
        }
        Ok(Range { bucket, from, to })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Unavailable(format!("storage task failed: {e}")))?
        .map_err(BrokerError::from)
}

impl Broker {
    /// Totals from the rollups (never a scan of requests), with the latest
    /// requests and transactions. `user_id: None`: across all users.
    pub async fn analytics(
        &self,
        user_id: Option<&str>,
        range: Option<Range>,
        recent: usize,
    ) -> Result<Analytics, BrokerError> {
        let store = self.inner.store.clone();
        let uid = user_id.map(str::to_string);
        blocking(move || {
            let summary =
                store.summary(uid.as_deref().unwrap_or(""), range.map(|r| (r.from, r.to)))?;
            let (recent_requests, recent_transactions) = match &uid {
                Some(u) => (
                    store.requests_page(u, None, recent)?,
                    store.transactions_page(u, None, recent)?,
                ),
                None => (Vec::new(), Vec::new()),
            };
            Ok(Analytics {
                user_id: uid,
                from: range.map(|r| r.from),
                to: range.map(|r| r.to),
                summary,
                recent_requests,
                recent_transactions,
            })
        })
        .await
    }

    /// A dense series over `range`, of one provider or all.
    pub async fn analytics_series(
        &self,
        user_id: Option<&str>,
        provider: Option<&str>,
        range: Range,
    ) -> Result<Series, BrokerError> {
        let store = self.inner.store.clone();
        let uid = user_id.map(str::to_string);
        let provider = provider.map(str::to_string);
        blocking(move || {
            let points = store.series(
                uid.as_deref().unwrap_or(""),
                range.bucket,
                range.from,
                range.to,
                provider.as_deref(),
            )?;
            Ok(Series {
                user_id: uid,
                provider,
                bucket: range.bucket,
                from: range.from,
                to: range.to,
                points,
            })
        })
        .await
    }

    /// Spend over the last `window_ms` (whole minutes, the current one
    /// included) and when the balance and each budget run out at that rate.
    pub async fn burn_down(
        &self,
        user_id: &str,
        window_ms: Millis,
    ) -> Result<BurnDown, BrokerError> {
        let now = now_ms();
        let view = self.wallet(user_id).await?;
        let end = Bucket::Minute.ceil(now + 1);
        let start = end - window_ms;
        let store = self.inner.store.clone();
        let uid = user_id.to_string();
        let per_provider = view.budget.per_provider.clone();
        let (recent, provider_spend) = blocking(move || {
            let recent = store.summary(&uid, Some((start, end)))?;
            // Spend at each provider with a budget, in each calendar window.
            let mut spend = BTreeMap::new();
            for w in Window::ALL {
                if per_provider.values().all(|l| l.get(w).is_none()) {
                    continue;
                }
                let s = store.summary(&uid, Some((w.start(now), end)))?;
                spend.insert(w, s);
            }
            Ok((recent, spend))
        })
        .await?;
        let window_spent = recent.total_cost;
        let mut budgets = Vec::new();
        let project = |window: Window,
                       provider: Option<String>,
                       limit: Credits,
                       spent: Credits,
                       remaining: Credits,
                       rate_spent: Credits| {
            let resets_at = window.end(now);
            let at = runs_out_at(now, remaining, rate_spent, window_ms);
            Projection {
                window,
                provider,
                limit,
                spent,
                remaining,
                resets_at,
                rate_per_hour: hourly_rate(rate_spent, window_ms),
                runs_out_at: at,
                runs_out_before_reset: at.is_some_and(|t| t < resets_at),
            }
        };
        for w in &view.windows {
            if let (Some(limit), Some(remaining)) = (w.limit, w.remaining) {
                budgets.push(project(
                    w.window,
                    None,
                    limit,
                    w.spent + w.held,
                    remaining,
                    window_spent,
                ));
            }
        }
        for (provider, limits) in &view.budget.per_provider {
            for w in Window::ALL {
                let Some(limit) = limits.get(w) else { continue };
                let spent = provider_spend
                    .get(&w)
                    .and_then(|s| s.providers.get(provider))
                    .map(|f| f.cost)
                    .unwrap_or_default();
                let rate = recent
                    .providers
                    .get(provider)
                    .map(|f| f.cost)
                    .unwrap_or_default();
                let remaining = (limit - spent).max(Credits::ZERO);
                budgets.push(project(
                    w,
                    Some(provider.clone()),
                    limit,
                    spent,
                    remaining,
                    rate,
                ));
            }
        }
        Ok(BurnDown {
            user_id: user_id.to_string(),
            now,
            window_start: start,
            window_end: end,
            window_spent,
            rate_per_hour: hourly_rate(window_spent, window_ms),
            balance: view.balance,
            available: view.available,
            balance_runs_out_at: runs_out_at(now, view.available, window_spent, window_ms),
            budgets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WriteOp;
    use oneflow::pricing::{Modality, Usage};
    use oneflow::records::RequestStatus;

    fn request(i: u64) -> RequestRecord {
        RequestRecord {
            id: format!("r{i}"),
            user_id: format!("u{}", i % 3),
            model: "m".into(),
            modality: Modality::Text,
            provider: format!("p{}", i % 2),
            status: if i % 5 == 0 {
                RequestStatus::Failed
            } else {
                RequestStatus::Succeeded
            },
            prompt_preview: String::new(),
            response: None,
            usage: Usage {
                input_tokens: i,
                output_tokens: 2 * i,
                ..Usage::default()
            },
            quote: Credits(100),
            cost: Credits(i as i64 * 7),
            shortfall: Credits::ZERO,
            error: None,
            route: String::new(),
            created_at: 1_764_000_000_000 + i as i64 * 997_000,
            latency_ms: i * 13 % 3000,
            attempts: Vec::new(),
        }
    }

    fn all_rows(s: &Store) -> Vec<(Bucket, String, Row)> {
        let mut out = Vec::new();
        for b in Bucket::ALL {
            for scope in ["", "u0", "u1", "u2"] {
                for row in s.rollup_rows(scope, b, 0, Millis::MAX).unwrap() {
                    out.push((b, scope.to_string(), row));
                }
            }
        }
        out
    }

    /// A file from before the rollup tables (the old hourly table, no
    /// version key) gets them rebuilt from its records on open, equal to
    /// what write-time maintenance produces, and only once.
    #[test]
    fn an_old_file_gets_its_rollups_rebuilt_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let s = Store::open(&path).unwrap();
        for chunk in (0..500u64).collect::<Vec<_>>().chunks(64) {
            s.commit(
                chunk
                    .iter()
                    .map(|i| WriteOp::PutRequest(Box::new(request(*i)))),
            )
            .unwrap();
        }
        let kept = all_rows(&s);
        assert_eq!(
            s.summary("", None).unwrap().total_cost,
            Credits((0..500).map(|i| i * 7).sum())
        );
        // Make it look like the first file format.
        {
            let txn = s.db.begin_write().unwrap();
            for b in Bucket::ALL {
                txn.delete_table(table(b)).unwrap();
            }
            txn.open_table(crate::store::META)
                .unwrap()
                .remove(ROLLUP_VERSION_KEY)
                .unwrap();
            txn.open_table(OLD_ROLLUPS)
                .unwrap()
                .insert(("u0", "p0", 0), b"{}".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(all_rows(&s), kept);
        drop(s);
        // Opening again does not count anything twice.
        let s = Store::open(&path).unwrap();
        assert_eq!(all_rows(&s), kept);
        let r = s.db.begin_read().unwrap();
        assert!(r.open_table(OLD_ROLLUPS).is_err(), "old table removed");
    }

    /// The store's one-pass series equals the pure one over the same rows.
    #[test]
    fn the_store_series_equals_the_pure_series() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        s.commit((0..300).map(|i| WriteOp::PutRequest(Box::new(request(i)))))
            .unwrap();
        let from = Bucket::Hour.floor(request(0).created_at) - 3_600_000;
        let to = from + 6 * 3_600_000;
        for b in [Bucket::Minute, Bucket::Hour] {
            for provider in [None, Some("p1")] {
                let rows = s.rollup_rows("u2", b, from, to).unwrap();
                let picked = rows
                    .iter()
                    .filter(|(_, p, _)| provider.is_none_or(|w| w == p))
                    .map(|(t, _, r)| (*t, r));
                let want = oneflow::analytics::series(b, from, to, picked);
                assert_eq!(s.series("u2", b, from, to, provider).unwrap(), want);
            }
        }
    }

    /// Summaries over any minute range equal the sum of the requests in it.
    #[test]
    fn a_range_summary_equals_the_requests_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let reqs: Vec<RequestRecord> = (0..400).map(request).collect();
        s.commit(
            reqs.iter()
                .map(|r| WriteOp::PutRequest(Box::new(r.clone()))),
        )
        .unwrap();
        let base = Bucket::Day.floor(reqs[0].created_at);
        for (a, b) in [
            (0, 1),
            (7, 131),
            (59, 61),
            (0, 24 * 60),
            (3, 3000),
            (1439, 1441),
        ] {
            let (from, to) = (base + a * 60_000, base + b * 60_000);
            let want: Credits = reqs
                .iter()
                .filter(|r| r.user_id == "u1" && r.created_at >= from && r.created_at < to)
                .map(|r| r.cost)
                .sum();
            let got = s.summary("u1", Some((from, to))).unwrap();
            assert_eq!(got.total_cost, want, "[{a}, {b}) minutes");
        }
    }
}
