//! Saved dashboards of a user or a team, and the data of their panels.
//!
//! All of one owner's dashboards are one document (kind `dashboards`, id
//! the owner's): a write is one compare-and-set, so the bound on how many
//! an owner keeps holds even when two writes race, and a listing is one
//! read. Who may read or write an owner's dashboards is decided above
//! (`web/src/access.rs`): here the owner is already the caller's to use.
//!
//! A panel's data is the grouped series (`grouped.rs`) of its owner over
//! its window, reduced to its metric: the same function the analytics API
//! answers with, so the two cannot differ.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use oneflow::analytics::{Bucket, GroupBy};
use oneflow::dashboard::{Chart, Dashboard, MAX_DASHBOARDS, MAX_PANELS, Metric, Panel, valid_name};
use oneflow::time::Millis;

use super::analytics::Range;
use super::membership::is_team;
use super::{Services, blocking, grouped};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::DocWrite;

/// The document kind of an owner's dashboards.
const KIND: &str = "dashboards";
/// Compare-and-set tries before a write gives up as contended.
const TRIES: usize = 8;

/// One dashboard as kept in its owner's document.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Saved {
    updated_at: Millis,
    #[serde(flatten)]
    dashboard: Dashboard,
}

/// An owner's document: every dashboard by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    dashboards: BTreeMap<String, Saved>,
}

/// A dashboard as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DashboardView {
    pub name: String,
    /// Whose it is: a user's id or a team's.
    pub user_id: String,
    #[schema(value_type = i64)]
    pub updated_at: Millis,
    #[serde(flatten)]
    pub dashboard: Dashboard,
}

/// One point of a panel: a bucket's start and the metric's value there.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PanelPoint {
    #[schema(value_type = i64)]
    pub start: Millis,
    /// The metric's value, exactly as the analytics series writes it
    /// (null: a percentile of no requests).
    #[schema(value_type = Option<f64>)]
    pub value: serde_json::Value,
}

/// One group's line (or bar, or row) in a panel.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PanelGroup {
    pub group: String,
    /// The metric over the whole window.
    #[schema(value_type = Option<f64>)]
    pub total: serde_json::Value,
    pub points: Vec<PanelPoint>,
}

/// What a panel draws.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PanelData {
    pub dashboard: String,
    pub index: usize,
    pub user_id: String,
    pub title: Option<String>,
    pub metric: Metric,
    pub group_by: GroupBy,
    pub chart: Chart,
    pub bucket: Bucket,
    /// The window as resolved now, on bucket edges: the same query to
    /// `/api/analytics/groups` gives the same figures.
    #[schema(value_type = i64)]
    pub from: Millis,
    #[schema(value_type = i64)]
    pub to: Millis,
    pub groups: Vec<PanelGroup>,
}

async fn load(s: &Services, owner: &str) -> Result<(u64, Stored), BrokerError> {
    let (store, id) = (s.store.clone(), owner.to_string());
    match blocking(move || store.doc(KIND, &id)).await? {
        Some(d) => Ok((d.version, d.decode()?)),
        None => Ok((0, Stored::default())),
    }
}

fn view(owner: &str, name: &str, saved: &Saved) -> DashboardView {
    DashboardView {
        name: name.to_string(),
        user_id: owner.to_string(),
        updated_at: saved.updated_at,
        dashboard: saved.dashboard.clone(),
    }
}

fn checked_name(name: &str) -> Result<(), BrokerError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(BrokerError::InvalidDashboard(format!(
            "a dashboard's name is 1 to 64 of a-z, 0-9, `-` and `_`, starting with a letter or digit, not `{}`",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// The range a panel covers now.
fn range(p: &Panel, now: Millis) -> Result<Range, BrokerError> {
    let r = match p.window.span() {
        Some(span) => Range::new(p.bucket(), Some(now - span), None, now),
        None => Range::new(p.bucket(), p.from, p.to, now),
    }
    .map_err(BrokerError::RangeTooLarge)?;
    grouped::check_size(&r)?;
    Ok(r)
}

/// Every dashboard of `owner`, by name.
pub(crate) async fn list(s: &Services, owner: &str) -> Result<Vec<DashboardView>, BrokerError> {
    let (_, stored) = load(s, owner).await?;
    Ok(stored
        .dashboards
        .iter()
        .map(|(n, d)| view(owner, n, d))
        .collect())
}

/// One dashboard of `owner`.
pub(crate) async fn get(
    s: &Services,
    owner: &str,
    name: &str,
) -> Result<DashboardView, BrokerError> {
    let (_, stored) = load(s, owner).await?;
    stored
        .dashboards
        .get(name)
        .map(|d| view(owner, name, d))
        .ok_or(BrokerError::NotFound("dashboard"))
}

/// Creates or replaces `owner`'s dashboard `name`; true if it is new.
/// Nothing is written unless every check passes.
pub(crate) async fn put(
    s: &Services,
    owner: &str,
    name: &str,
    dashboard: Dashboard,
) -> Result<(bool, DashboardView), BrokerError> {
    checked_name(name)?;
    if dashboard.panels.len() > MAX_PANELS {
        return Err(BrokerError::InvalidDashboard(format!(
            "at most {MAX_PANELS} panels"
        )));
    }
    let now = now_ms();
    for (i, p) in dashboard.panels.iter().enumerate() {
        range(p, now).map_err(|e| BrokerError::InvalidDashboard(format!("`panels[{i}]`: {e}")))?;
    }
    if !is_team(owner) {
        let (store, id) = (s.store.clone(), owner.to_string());
        blocking(move || store.user(&id))
            .await?
            .ok_or(BrokerError::NotFound("user"))?;
    }
    for _ in 0..TRIES {
        let (version, mut stored) = load(s, owner).await?;
        let new = !stored.dashboards.contains_key(name);
        if new && stored.dashboards.len() >= MAX_DASHBOARDS {
            return Err(BrokerError::Conflict(format!(
                "at most {MAX_DASHBOARDS} dashboards per user or team: delete one first"
            )));
        }
        let saved = Saved {
            updated_at: now_ms(),
            dashboard: dashboard.clone(),
        };
        let shown = view(owner, name, &saved);
        stored.dashboards.insert(name.to_string(), saved);
        let w = DocWrite::replace(KIND, owner, version, &stored)?;
        let store = s.store.clone();
        if blocking(move || store.write_docs(vec![w])).await? {
            return Ok((new, shown));
        }
    }
    Err(BrokerError::Unavailable(
        "the dashboards changed concurrently too often; retry".into(),
    ))
}

/// Deletes `owner`'s dashboard `name`.
pub(crate) async fn delete(s: &Services, owner: &str, name: &str) -> Result<(), BrokerError> {
    for _ in 0..TRIES {
        let (version, mut stored) = load(s, owner).await?;
        if stored.dashboards.remove(name).is_none() {
            return Err(BrokerError::NotFound("dashboard"));
        }
        let w = if stored.dashboards.is_empty() {
            DocWrite::delete(KIND, owner, version)
        } else {
            DocWrite::replace(KIND, owner, version, &stored)?
        };
        let store = s.store.clone();
        if blocking(move || store.write_docs(vec![w])).await? {
            return Ok(());
        }
    }
    Err(BrokerError::Unavailable(
        "the dashboards changed concurrently too often; retry".into(),
    ))
}

/// The data of panel `index` of `owner`'s dashboard `name`, now.
pub(crate) async fn panel(
    s: &Services,
    owner: &str,
    name: &str,
    index: usize,
) -> Result<PanelData, BrokerError> {
    let d = get(s, owner, name).await?;
    let p = d
        .dashboard
        .panels
        .get(index)
        .cloned()
        .ok_or(BrokerError::NotFound("panel"))?;
    let r = range(&p, now_ms())?;
    let series = grouped::series(s, Some(owner), p.group_by, r).await?;
    let groups = series
        .groups
        .iter()
        .map(|g| PanelGroup {
            group: g.group.clone(),
            total: p.metric.of(&g.totals),
            points: g
                .points
                .iter()
                .map(|pt| PanelPoint {
                    start: pt.start,
                    value: p.metric.of(&pt.figures),
                })
                .collect(),
        })
        .collect();
    Ok(PanelData {
        dashboard: name.to_string(),
        index,
        user_id: owner.to_string(),
        title: p.title.clone(),
        metric: p.metric,
        group_by: p.group_by,
        chart: p.chart,
        bucket: r.bucket,
        from: r.from,
        to: r.to,
        groups,
    })
}

/// A panel's data as CSV: a header, then one row per group and bucket
/// (`start` in milliseconds and as RFC 3339, the group, the value).
pub fn panel_csv(d: &PanelData) -> Vec<u8> {
    let mut out = Vec::new();
    super::export::csv_line(&mut out, &["start", "time", "group", d.metric.name()]);
    for g in &d.groups {
        for p in &g.points {
            let value = match &p.value {
                serde_json::Value::Null => String::new(),
                v => v.to_string(),
            };
            let (start, time) = (p.start.to_string(), oneflow::time::rfc3339(p.start));
            super::export::csv_line(&mut out, &[&start, &time, &g.group, &value]);
        }
    }
    out
}
