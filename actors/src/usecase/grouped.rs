//! Series split by provider, model, key or member (`GET
//! /api/analytics/groups`, and every dashboard panel).
//!
//! By provider it reads the rollups, like every other analytics answer.
//! The rollups are not split by model, key or member, so those read the
//! request records of the range instead: exact by construction (each
//! record adds its own `Rollup::of`, the very sums the rollup tables
//! hold), at a cost that grows with the requests in the range, which is
//! why that walk has a bound.

use serde::Serialize;

use oneflow::analytics::{Bucket, Group, GroupBy, GroupedBuilder, MAX_GROUPS};
use oneflow::time::Millis;

use super::analytics::Range;
use super::{Services, blocking};
use crate::error::BrokerError;
use crate::store::StoreError;

/// The most requests one answer split by model, key or member reads.
pub const MAX_SCAN: u64 = 200_000;
/// The most points one grouped answer may hold over all its groups, at
/// the most groups it can have: a bound on the answer's size.
pub const MAX_CELLS: i64 = 40_000;

/// A time series per group.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GroupedSeries {
    /// Absent for an admin's all-users view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub group_by: GroupBy,
    pub bucket: Bucket,
    #[schema(value_type = i64)]
    pub from: Millis,
    #[schema(value_type = i64)]
    pub to: Millis,
    /// Most requests first; past 20 groups the smallest are summed as
    /// `(other)`. Empty when nothing was requested in the range.
    pub groups: Vec<Group>,
}

/// Refuses a range whose answer would be too large to send.
pub(crate) fn check_size(range: &Range) -> Result<(), BrokerError> {
    let points = (range.to - range.from) / range.bucket.ms();
    if points.saturating_mul(MAX_GROUPS as i64) > MAX_CELLS {
        return Err(BrokerError::RangeTooLarge(format!(
            "a grouped series holds at most {} {} buckets: choose a wider bucket or a shorter range",
            MAX_CELLS / MAX_GROUPS as i64,
            range.bucket.name()
        )));
    }
    Ok(())
}

/// The series of `user_id` (or everyone's) over `range`, split by `by`.
pub(crate) async fn series(
    s: &Services,
    user_id: Option<&str>,
    by: GroupBy,
    range: Range,
) -> Result<GroupedSeries, BrokerError> {
    check_size(&range)?;
    let store = s.store.clone();
    let uid = user_id.map(str::to_string);
    let groups = blocking(move || {
        let mut b = GroupedBuilder::new(range.bucket, range.from, range.to);
        if by == GroupBy::Provider {
            let scope = uid.as_deref().unwrap_or("");
            store.each_rollup(scope, range.bucket, range.from, range.to, &mut |at, p, r| {
                b.add(p, at, &r);
                true
            })?;
            return Ok(Ok(b.finish()));
        }
        let mut read = 0u64;
        store.each_request(uid.as_deref(), range.from, range.to, &mut |r| {
            read += 1;
            if read > MAX_SCAN {
                return Ok::<bool, StoreError>(false);
            }
            b.add_request(by, &r);
            Ok(true)
        })?;
        if read > MAX_SCAN {
            return Ok(Err(BrokerError::RangeTooLarge(format!(
                "more than {MAX_SCAN} requests in the range to split by {}: choose a shorter range (or split by provider, which reads the rollups)",
                by.name()
            ))));
        }
        Ok(Ok(b.finish()))
    })
    .await??;
    Ok(GroupedSeries {
        user_id: user_id.map(str::to_string),
        group_by: by,
        bucket: range.bucket,
        from: range.from,
        to: range.to,
        groups,
    })
}
