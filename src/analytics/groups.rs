//! Series split by a grouping (provider, model, key or member): one dense
//! series per group, the biggest groups kept and the rest folded into one,
//! so that a chart of many small keys stays readable and bounded while the
//! groups still add up to every request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::RequestRecord;
use crate::time::Millis;

use super::bucket::Bucket;
use super::figures::{Figures, Point};
use super::rollup::Rollup;

/// Groups beyond this many are folded into [`OTHER`]: a chart with more
/// lines than this cannot be read, and the answer stays bounded.
pub const MAX_GROUPS: usize = 20;
/// The group the smallest groups are folded into.
pub const OTHER: &str = "(other)";
/// The group of requests that have no value for the grouping (no key: a
/// sign-in session's, or one recorded before keys were).
pub const NONE: &str = "(none)";

/// What a series is split by.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Provider,
    Model,
    /// The API key a request came through (its public id, `key_...`).
    Key,
    /// Who spent it: a team's member, or the wallet's own user.
    Member,
}

impl GroupBy {
    pub const ALL: [GroupBy; 4] = [
        GroupBy::Provider,
        GroupBy::Model,
        GroupBy::Key,
        GroupBy::Member,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Provider => "provider",
            GroupBy::Model => "model",
            GroupBy::Key => "key",
            GroupBy::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.name() == s)
    }

    /// The group a request belongs to.
    pub fn of(self, r: &RequestRecord) -> &str {
        match self {
            GroupBy::Provider => &r.provider,
            GroupBy::Model => &r.model,
            GroupBy::Key => r.key_id.as_deref().unwrap_or(NONE),
            // A request from a user's own wallet was spent by that user.
            GroupBy::Member => r.member.as_deref().unwrap_or(&r.user_id),
        }
    }
}

/// One group's dense series.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    /// The provider, model, key id or user id; `(other)` for the folded
    /// rest, `(none)` for requests without one.
    pub group: String,
    /// The group's figures over the whole range.
    pub totals: Figures,
    pub points: Vec<Point>,
}

/// Collects rollups by group and bucket from rows read in any order; only
/// the cells that hold requests take memory.
pub struct GroupedBuilder {
    bucket: Bucket,
    from: Millis,
    to: Millis,
    cells: BTreeMap<String, BTreeMap<Millis, Rollup>>,
}

impl GroupedBuilder {
    /// `from` and `to` on bucket boundaries.
    pub fn new(bucket: Bucket, from: Millis, to: Millis) -> GroupedBuilder {
        GroupedBuilder {
            bucket,
            from,
            to,
            cells: BTreeMap::new(),
        }
    }

    /// Adds `r`, of bucket-aligned or raw time `at`, to `group`; outside
    /// the range it is ignored.
    pub fn add(&mut self, group: &str, at: Millis, r: &Rollup) {
        if at < self.from || at >= self.to {
            return;
        }
        let start = self.bucket.floor(at);
        // Looked up by `&str` first: a group's name is allocated once.
        if let Some(m) = self.cells.get_mut(group) {
            m.entry(start).or_default().merge(r);
            return;
        }
        self.cells
            .entry(group.to_string())
            .or_default()
            .entry(start)
            .or_default()
            .merge(r);
    }

    /// Adds one request, by its creation time.
    pub fn add_request(&mut self, by: GroupBy, r: &RequestRecord) {
        self.add(by.of(r), r.created_at, &Rollup::of(r));
    }

    /// The groups, most requests first (then by name); past
    /// [`MAX_GROUPS`] the smallest are folded into one `(other)`.
    pub fn finish(self) -> Vec<Group> {
        let mut groups: Vec<(String, Rollup, BTreeMap<Millis, Rollup>)> = self
            .cells
            .into_iter()
            .map(|(g, cells)| {
                let mut total = Rollup::default();
                cells.values().for_each(|r| total.merge(r));
                (g, total, cells)
            })
            .collect();
        groups.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        if groups.len() > MAX_GROUPS {
            let rest = groups.split_off(MAX_GROUPS - 1);
            let mut total = Rollup::default();
            let mut cells: BTreeMap<Millis, Rollup> = BTreeMap::new();
            for (_, t, c) in rest {
                total.merge(&t);
                for (start, r) in c {
                    cells.entry(start).or_default().merge(&r);
                }
            }
            groups.push((OTHER.to_string(), total, cells));
        }
        let (b, from, to) = (self.bucket, self.from, self.to);
        groups
            .into_iter()
            .map(|(group, total, cells)| Group {
                group,
                totals: Figures::of(&total),
                points: super::figures::series(b, from, to, cells.iter().map(|(s, r)| (*s, r))),
            })
            .collect()
    }
}
