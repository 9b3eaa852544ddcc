//! The rollup tables: sums of finished requests per bucket, so analytics
//! read a range's rows instead of the requests behind them.
//!
//! Three tables, one per bucket width, keyed (scope, bucket start, provider)
//! where scope is a user id or "" for the sum over every user. A time range
//! of one scope is one contiguous key range, so reading it costs the rows in
//! the range (buckets x providers), never the requests behind them.
//!
//! Rows are updated in the same write transaction as the request records
//! they sum (see `apply_all`), so they agree with the ledger exactly and a
//! crash loses both or neither. A file written before these tables existed
//! gets them rebuilt from its records on open.
//!
//! Part of the store (it is storage, and `apply_all` needs it); the
//! analytics built on these rows live in the `analytics` module above it.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use oneflow::analytics::{Bucket, Point, Rollup, SeriesBuilder};
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use super::redb::{META, REQUESTS, key_time};
use super::{RedbStore, StoreError};

type RollupTable = TableDefinition<'static, (&'static str, u64, &'static str), &'static [u8]>;

pub(super) const MINUTES: RollupTable = TableDefinition::new("rollup_minutes");
pub(super) const HOURS: RollupTable = TableDefinition::new("rollup_hours");
pub(super) const DAYS: RollupTable = TableDefinition::new("rollup_days");
/// The hourly table of the first file format, replaced by the three above.
pub(super) const OLD_ROLLUPS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("rollups");

/// Meta key recording which rollup layout the file holds.
const ROLLUP_VERSION_KEY: &str = "rollup_version";
const ROLLUP_VERSION: u64 = 2;

fn table(b: Bucket) -> RollupTable {
    match b {
        Bucket::Minute => MINUTES,
        Bucket::Hour => HOURS,
        Bucket::Day => DAYS,
    }
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

    /// The summed rows, ordered by width, scope, start, provider: a
    /// backend that adds them row by row takes its row locks in this one
    /// order, so two writers never wait on each other in a cycle.
    pub(crate) fn into_rows(self) -> impl Iterator<Item = ((Bucket, String, u64, String), Rollup)> {
        self.0.into_iter()
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
    let mut meta = txn.open_table(META)?;
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
        let requests = txn.open_table(REQUESTS)?;
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

/// Calls `f` on each row of one width and scope in `[from, to)` until it
/// returns false.
pub(super) fn each_row(
    store: &RedbStore,
    scope: &str,
    b: Bucket,
    from: Millis,
    to: Millis,
    f: &mut dyn FnMut(Millis, &str, Rollup) -> bool,
) -> Result<(), StoreError> {
    if from >= to {
        return Ok(());
    }
    let r = store.db.begin_read()?;
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
/// `[from, to)` on `b` boundaries, merging each stored row straight into
/// its bucket.
pub(super) fn series(
    store: &RedbStore,
    scope: &str,
    b: Bucket,
    from: Millis,
    to: Millis,
    provider: Option<&str>,
) -> Result<Vec<Point>, StoreError> {
    let mut out = SeriesBuilder::new(b, from, to);
    if from < to {
        let r = store.db.begin_read()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, WriteOp};
    use oneflow::Credits;
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
            usage_anomaly: false,
            member: None,
            cached: false,
            experiment: None,
            key_id: None,
        }
    }

    fn all_rows(s: &RedbStore) -> Vec<(Bucket, String, crate::store::RollupRow)> {
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
        let s = RedbStore::open(&path).unwrap();
        for chunk in (0..500u64).collect::<Vec<_>>().chunks(64) {
            s.commit(
                chunk
                    .iter()
                    .map(|i| WriteOp::PutRequest(Box::new(request(*i))))
                    .collect(),
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
            txn.open_table(META)
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
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(all_rows(&s), kept);
        drop(s);
        // Opening again does not count anything twice.
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(all_rows(&s), kept);
        let r = s.db.begin_read().unwrap();
        assert!(r.open_table(OLD_ROLLUPS).is_err(), "old table removed");
    }

    /// The store's one-pass series equals the pure one over the same rows.
    #[test]
    fn the_store_series_equals_the_pure_series() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        s.commit(
            (0..300)
                .map(|i| WriteOp::PutRequest(Box::new(request(i))))
                .collect(),
        )
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
        let s = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        let reqs: Vec<RequestRecord> = (0..400).map(request).collect();
        s.commit(
            reqs.iter()
                .map(|r| WriteOp::PutRequest(Box::new(r.clone())))
                .collect(),
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
