//! Reconciliation against provider invoices (docs/reconcile.md): an
//! uploaded usage export read by `oneflow::reconcile::formats`, our side
//! summed from the request records of the days it covers, the two compared
//! per day x provider x model, the report kept as a document (the last
//! [`KEEP`]) and its cost drift set on the `oneflow_reconcile_drift` gauge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use oneflow::Credits;
use oneflow::config::ProviderConfig;
use oneflow::reconcile::formats::{self, ExportError, Format};
use oneflow::reconcile::{
    Cell, CellKey, MAX_CELLS, Ours, Tolerance, Totals, compare, day_name, day_of,
};
use oneflow::records::{RequestRecord, RequestStatus};
use oneflow::time::{MS_PER_DAY, Millis};

use super::{Services, blocking};
use crate::error::BrokerError;
use crate::ids::{now_ms, random_hex};
use crate::metrics;
use crate::store::docs::MAX_BODY;
use crate::store::{DocWrite, Store, StoreError};

/// The documents' kind.
const KIND: &str = "reconcile";
/// Reports kept; the oldest beyond go when a new one is stored.
pub const KEEP: usize = 20;

/// One reconciliation at a time on this node: each reads every record of
/// up to a quarter's days on a blocking thread.
static RUNNING: AtomicBool = AtomicBool::new(false);

struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// What a reconciliation is asked with.
pub struct Upload {
    /// `None`: told by the body's text.
    pub format: Option<Format>,
    /// The OneFlow provider the export belongs to (or the generic CSV's
    /// `provider` column says, row by row).
    pub provider: Option<String>,
    pub tolerance: Tolerance,
    pub body: Bytes,
}

/// Why a reconciliation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The export could not be read, or is out of bounds.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// It names a provider the configuration does not have.
    #[error("no configured provider is named `{0}`")]
    UnknownProvider(String),
    /// More cells than one report keeps.
    #[error("the report would have {0} cells; at most {MAX_CELLS} (export fewer days or models)")]
    TooManyCells(usize),
    /// Another reconciliation is running on this node.
    #[error("a reconciliation is already running; retry when it ends")]
    Busy,
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// How our cost of a provider's cells was priced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostBasis {
    /// The provider's own prices, `upstream_rates` in its configuration.
    UpstreamRates,
    /// What OneFlow charged (`rates`): the provider's prices when there is
    /// no markup.
    Charged,
}

/// What a kept report says besides its cells: [`Report`] less `cells`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportSummary {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    pub format: Format,
    /// Each provider compared, and how our cost of it was priced.
    pub providers: BTreeMap<String, CostBasis>,
    /// First and last day of the export (`YYYY-MM-DD`), absent when empty.
    pub from_day: Option<String>,
    pub to_day: Option<String>,
    /// Rows read from the export.
    pub rows: u64,
    pub tolerance: Tolerance,
    pub totals: Totals,
}

/// A drift report. Its fields are written out rather than a flattened
/// [`ReportSummary`]: serde's `flatten` buffers numbers, which the
/// workspace's exact-decimal JSON numbers (`arbitrary_precision`) do not
/// survive when read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    pub format: Format,
    /// Each provider compared, and how our cost of it was priced.
    pub providers: BTreeMap<String, CostBasis>,
    /// First and last day of the export (`YYYY-MM-DD`), absent when empty.
    pub from_day: Option<String>,
    pub to_day: Option<String>,
    /// Rows read from the export.
    pub rows: u64,
    pub tolerance: Tolerance,
    pub totals: Totals,
    /// Every day x provider x model either side has.
    pub cells: Vec<Cell>,
}

impl Report {
    pub fn summary(self) -> ReportSummary {
        ReportSummary {
            id: self.id,
            created_at: self.created_at,
            format: self.format,
            providers: self.providers,
            from_day: self.from_day,
            to_day: self.to_day,
            rows: self.rows,
            tolerance: self.tolerance,
            totals: self.totals,
        }
    }
}

/// Whether a record is one the provider bills: it was answered, or it was
/// charged for what the provider produced before it ended (a stream cut
/// short). A try that failed is charged nothing by us, and is not counted.
fn billed(r: &RequestRecord) -> bool {
    // A cache hit names the provider that first answered, but never
    // reached it: the provider bills nothing for it, whatever we charged.
    !r.cached && (r.status == RequestStatus::Succeeded || r.cost.0 > 0 || r.shortfall.0 > 0)
}

/// Our side, per cell, from every billed record of `providers` over the
/// days `[from, to]`.
fn ours(
    store: &dyn Store,
    providers: &BTreeMap<String, ProviderConfig>,
    from: i64,
    to: i64,
) -> Result<BTreeMap<CellKey, Ours>, StoreError> {
    let mut out: BTreeMap<CellKey, Ours> = BTreeMap::new();
    let (start, end) = (from * MS_PER_DAY, (to + 1) * MS_PER_DAY);
    store.each_request(None, start, end, &mut |r| {
        let Some(p) = providers.get(&r.provider) else {
            return Ok(true);
        };
        if !billed(&r) {
            return Ok(true);
        }
        let cost = match &p.upstream_rates {
            // Image sizes are not recorded: an image is priced at the
            // card's `per_image` line.
            Some(rates) => rates.cost(&r.usage, None).unwrap_or(Credits(i64::MAX)),
            None => Credits(r.cost.0.saturating_add(r.shortfall.0)),
        };
        let key = (
            day_of(r.created_at),
            p.name.clone(),
            p.upstream_model(&r.model),
        );
        let cell = out.entry(key).or_default();
        cell.requests += 1;
        cell.input_tokens = cell.input_tokens.saturating_add(r.usage.input_tokens);
        cell.output_tokens = cell.output_tokens.saturating_add(r.usage.output_tokens);
        cell.cost = Credits(cell.cost.0.saturating_add(cost.0));
        Ok(true)
    })?;
    Ok(out)
}

/// Reads the export, compares it with our records, keeps the report and
/// sets the drift gauge.
pub(crate) async fn run(s: &Services, up: Upload) -> Result<Report, ReconcileError> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err(ReconcileError::Busy);
    }
    let _running = Running;
    let (format, rows) = formats::read(up.format, &up.body)?;
    let (theirs, span) = formats::cells(&rows, up.provider.as_deref())?;
    let mut providers: BTreeMap<String, ProviderConfig> = BTreeMap::new();
    let named = up.provider.iter().chain(theirs.keys().map(|k| &k.1));
    for name in named {
        if providers.contains_key(name) {
            continue;
        }
        let Some(p) = s.config.providers.iter().find(|p| &p.name == name) else {
            return Err(ReconcileError::UnknownProvider(name.clone()));
        };
        providers.insert(name.clone(), p.clone());
    }
    let store = s.store.clone();
    let known = providers.clone();
    let ours = match span {
        Some((from, to)) => blocking(move || ours(&*store, &known, from, to)).await?,
        None => BTreeMap::new(),
    };
    let cells = compare(&ours, &theirs, &up.tolerance);
    if cells.len() > MAX_CELLS {
        return Err(ReconcileError::TooManyCells(cells.len()));
    }
    let now = now_ms();
    let t = u64::try_from(now).unwrap_or(0) & 0xffff_ffff_ffff;
    let report = Report {
        // Ids sort by time, so the store lists the oldest first.
        id: format!("rcn_{t:012x}{}", random_hex(6)),
        created_at: now,
        format,
        providers: providers
            .iter()
            .map(|(n, p)| {
                let basis = match p.upstream_rates {
                    Some(_) => CostBasis::UpstreamRates,
                    None => CostBasis::Charged,
                };
                (n.clone(), basis)
            })
            .collect(),
        from_day: span.map(|(a, _)| day_name(a)),
        to_day: span.map(|(_, b)| day_name(b)),
        rows: rows.len() as u64,
        tolerance: up.tolerance,
        totals: Totals::of(&cells),
        cells,
    };
    let write = DocWrite::create(KIND, &report.id, &report).map_err(BrokerError::from)?;
    if write.body.as_ref().is_some_and(|b| b.len() > MAX_BODY) {
        return Err(ReconcileError::TooManyCells(report.cells.len()));
    }
    let store = s.store.clone();
    blocking(move || {
        store.write_docs(vec![write])?;
        prune(&*store)
    })
    .await?;
    set_gauges(&providers, &report.cells);
    Ok(report)
}

/// Deletes the oldest reports beyond [`KEEP`].
fn prune(store: &dyn Store) -> Result<(), StoreError> {
    let docs = store.docs(KIND, "", None, KEEP * 4)?;
    let extra = docs.len().saturating_sub(KEEP);
    let deletes = docs
        .iter()
        .take(extra)
        .map(|(id, d)| DocWrite::delete(KIND, id, d.version))
        .collect::<Vec<_>>();
    if !deletes.is_empty() {
        // Lost to a concurrent prune on another node: that one deleted them.
        store.write_docs(deletes)?;
    }
    Ok(())
}

/// The labels the drift gauge has for one provider: its name and listed
/// models (what its cells' models are, on our side) and `other`.
fn labels(p: &ProviderConfig) -> BTreeSet<&str> {
    std::iter::once(p.name.as_str())
        .chain(p.models.iter().map(String::as_str))
        .chain(std::iter::once(metrics::OTHER_MODEL))
        .collect()
}

/// Makes every provider's drift series exist (at 0 until a reconciliation
/// says otherwise, which an added 0 never overwrites), so that the scrape
/// and the alert rule see the metric before the first upload.
pub(crate) fn touch_gauges(s: &Services) {
    for p in &s.config.providers {
        for model in labels(p) {
            metrics::reconcile_drift_touch(&p.name, model);
        }
    }
}

/// Per provider of the report, per model its configuration names (and
/// `other` for the rest, so that uploaded names never become series): the
/// relative cost drift of the day furthest off.
fn set_gauges(providers: &BTreeMap<String, ProviderConfig>, cells: &[Cell]) {
    for (name, p) in providers {
        let models = labels(p);
        let mut worst: BTreeMap<&str, f64> = models.iter().map(|m| (*m, 0.0)).collect();
        for c in cells.iter().filter(|c| &c.provider == name) {
            let label = models
                .get(c.model.as_str())
                .copied()
                .unwrap_or(metrics::OTHER_MODEL);
            let r = c.cost.relative.unwrap_or(0.0);
            let w = worst.entry(label).or_insert(0.0);
            if r.abs() > w.abs() {
                *w = r;
            }
        }
        for (model, drift) in worst {
            metrics::reconcile_drift(name, model, drift);
        }
    }
}

/// The kept reports, newest first, without their cells.
pub(crate) async fn list(s: &Services) -> Result<Vec<ReportSummary>, BrokerError> {
    let store = s.store.clone();
    blocking(move || {
        let docs = store.docs(KIND, "", None, KEEP * 4)?;
        let mut out = docs
            .iter()
            .map(|(_, d)| d.decode::<Report>().map(Report::summary))
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    })
    .await
}

/// One kept report.
pub(crate) async fn get(s: &Services, id: &str) -> Result<Report, BrokerError> {
    // Ids are ours (`rcn_` and hex): anything else names no report, and is
    // never sent to the store.
    let ours = id.len() <= 40
        && id
            .strip_prefix("rcn_")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ours {
        return Err(BrokerError::NotFound("reconciliation"));
    }
    let store = s.store.clone();
    let id = id.to_string();
    let found = blocking(move || {
        store
            .doc(KIND, &id)
            .and_then(|d| d.map(|d| d.decode::<Report>()).transpose())
    })
    .await?;
    found.ok_or(BrokerError::NotFound("reconciliation"))
}
