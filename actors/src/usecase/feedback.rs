//! Ratings of requests (`POST /api/feedback`) and an experiment's figures,
//! computed from the request records that carry its tag and the ratings
//! of those requests (`oneflow::experiment::figures`).
//!
//! A rating is a document of kind `feedback`, id `<experiment>/<request>`
//! (`-/<request>` for a request in no experiment), so an experiment's
//! ratings are one prefix to list. One rating per request: a second
//! replaces the first.

use oneflow::experiment::figures::{MAX_SCORE, MIN_SCORE, Tallies};
use oneflow::experiment::{ExperimentReport, Rating};
use oneflow::time::Millis;

use super::keys::Principal;
use super::{Services, blocking, experiments, history};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::DocWrite;

const KIND: &str = "feedback";
/// Most records one report reads: a bound on its time and memory (each
/// tagged record keeps its latency and cost until the tests ran).
pub(crate) const MAX_SCANNED: u64 = 5_000_000;
/// Most ratings one report reads.
const MAX_RATINGS: usize = 1_000_000;
const PAGE: usize = 1000;
const CAS_TRIES: usize = 8;

/// Rates a request `who` may see (`membership::sees`, through the
/// history's read); a second rating of it replaces the first. The
/// stored rating, and whether it replaced one.
pub(crate) async fn rate(
    s: &Services,
    who: &Principal,
    request_id: &str,
    score: u8,
) -> Result<(Rating, bool), BrokerError> {
    if !(MIN_SCORE..=MAX_SCORE).contains(&score) {
        return Err(BrokerError::BadInput(format!(
            "`score` must be from {MIN_SCORE} to {MAX_SCORE}"
        )));
    }
    if request_id.len() > 64 {
        return Err(BrokerError::NotFound("request"));
    }
    let record = history::request(s, who, request_id).await?;
    let rating = Rating {
        request_id: record.id.clone(),
        score,
        by: who.user_id.clone(),
        at: now_ms(),
        experiment: record.experiment.clone(),
    };
    let id = format!(
        "{}/{}",
        record.experiment.as_ref().map_or("-", |t| t.id.as_str()),
        record.id
    );
    let (store, r) = (s.store.clone(), rating.clone());
    let replaced = blocking(move || {
        for _ in 0..CAS_TRIES {
            let version = store.doc(KIND, &id)?.map_or(0, |d| d.version);
            if store.write_docs(vec![DocWrite::replace(KIND, &id, version, &r)?])? {
                return Ok(Ok(version > 0));
            }
        }
        Ok(Err(BrokerError::Unavailable(
            "this request is being rated concurrently; retry".into(),
        )))
    })
    .await??;
    Ok((rating, replaced))
}

/// An experiment with its per-variant figures and comparisons.
pub(crate) async fn report(s: &Services, id: &str) -> Result<ExperimentReport, BrokerError> {
    let (_, e) = experiments::load(s, id).await?;
    let store = s.store.clone();
    blocking(move || {
        let mut t = Tallies::new(&e);
        let mut scanned = 0u64;
        // Requests of the experiment began after it was made; ones that
        // began after it ended carry no tag and are passed over.
        store.each_request(None, e.created_at, Millis::MAX, &mut |r| {
            scanned += 1;
            t.record(&r);
            Ok(scanned < MAX_SCANNED)
        })?;
        let prefix = format!("{}/", e.id);
        let (mut after, mut read) = (None::<String>, 0usize);
        while read < MAX_RATINGS {
            let page = store.docs(KIND, &prefix, after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            read += page.len();
            for (_, d) in &page {
                let r: Rating = d.decode()?;
                if let Some(tag) = &r.experiment {
                    t.rating(&tag.variant, r.score);
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        let figures = t.figures(&e);
        Ok(ExperimentReport {
            experiment: e,
            figures,
            truncated: scanned >= MAX_SCANNED,
        })
    })
    .await
}
