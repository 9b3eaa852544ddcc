//! Video jobs in the background (`POST /api/jobs`): the request is routed
//! and held like any other, the hold is committed before the job's id is
//! answered (the answer acknowledges money held), and the job then runs in
//! a detached task through the same tries and settle as `/api/request`,
//! under `jobs.timeout_ms`. While it runs it is shown from memory, with
//! the progress its adapter reports; once it ended, from its request's
//! record, which its settle wrote in the same commit as its charge. A job
//! whose broker stopped is that record's `interrupted` (its hold released
//! at the next start).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use oneflow::Credits;
use oneflow::pricing::Modality;
use oneflow::records::{RequestRecord, RequestStatus};
use oneflow::request::AiRequest;
use oneflow::time::Millis;

use super::held::{self, Hold, failure_code};
use super::job::RequestJob;
use super::keys::Principal;
use super::{Services, history, membership, request};
use crate::error::BrokerError;
use crate::provider::{CallError, Content, JobProgress, Operation};
use crate::views::{JobStatus, JobView};

/// The jobs running now, bounded by `jobs.max_running`.
#[derive(Default)]
pub(crate) struct Running {
    jobs: DashMap<String, Arc<RunningJob>>,
    count: Arc<AtomicUsize>,
    /// Where jobs run: the arbiter the broker started on, which outlives
    /// the HTTP workers. A job spawned on the worker that took its request
    /// would be dropped when the workers stop, before the broker's stop
    /// could delete its render upstream.
    home: Option<actix_rt::ArbiterHandle>,
}

/// What a running job shows.
struct RunningJob {
    /// The wallet it is paid from: its user's, or a team's.
    user_id: String,
    /// The team's member who started it, for a team's job.
    member: Option<String>,
    model: String,
    provider: String,
    quote: Credits,
    created_at: Millis,
    progress: Arc<JobProgress>,
}

/// One place among the running jobs, given back when dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A job shown as running: taken off the map when dropped, however its
/// task ends (a panic too), so no job shows as running forever.
struct Shown<'a> {
    jobs: &'a DashMap<String, Arc<RunningJob>>,
    id: String,
}

impl Drop for Shown<'_> {
    fn drop(&mut self) {
        self.jobs.remove(&self.id);
    }
}

impl Running {
    /// Jobs will run on the arbiter this is made on, if there is one.
    pub(crate) fn here() -> Running {
        Running {
            home: actix_rt::Arbiter::try_current(),
            ..Running::default()
        }
    }

    /// Runs `job` at home. A home that stopped means the broker is
    /// stopping: the job is dropped, as it would be anywhere else.
    fn spawn(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.home {
            Some(home) => {
                home.spawn(job);
            }
            None => {
                actix_rt::spawn(job);
            }
        }
    }

    fn take(&self, max: usize) -> Result<Place, BrokerError> {
        if self.count.fetch_add(1, Ordering::Relaxed) >= max {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(BrokerError::TooManyJobs);
        }
        Ok(Place(self.count.clone()))
    }
}

/// Starts a video job: its view once its hold is committed.
pub(crate) async fn start(
    s: &Arc<Services>,
    who: &Principal,
    req: AiRequest,
) -> Result<JobView, BrokerError> {
    // Paid as any request through this credential: a team key's from the
    // team's wallet as its member, within the key's scope and budget.
    let payer = super::job::Payer::of(who);
    let user_id = payer.wallet.as_str();
    req.validate(s.config.server.max_prompt_chars)?;
    let model = req.model.clone();
    let progress = Arc::new(JobProgress::default());
    let mut job = RequestJob::native(req, None);
    payer.apply(&mut job);
    job.op = Operation::Clip {
        prompt: job.op.prompt_text(),
        seconds: 0,
        progress: Some(progress.clone()),
    };
    let (route, tag) = held::routed(s, user_id, &mut job).await?;
    if route
        .ranking
        .iter()
        .any(|c| c.plan.modality != Modality::Video)
    {
        return Err(BrokerError::NotAJob(model));
    }
    let this = s.clone();
    let user_id = user_id.to_string();
    // Detached from here on, as every request is: a client that goes away
    // strands no hold.
    actix_rt::spawn(async move {
        let s = &this;
        let place = s.jobs.take(s.config.jobs.max_running)?;
        let h = match held::hold(s, user_id, job, route).await? {
            Hold::New(h) => h,
            Hold::Replay(_) => {
                return Err(BrokerError::Unavailable(
                    "a job has no Idempotency-Key".into(),
                ));
            }
        };
        // The answer acknowledges the hold, so it must outlive a crash
        // (a request's hold otherwise rides with its settle's commit).
        s.persist.flush().await.map_err(BrokerError::Store)?;
        let running = Arc::new(RunningJob {
            user_id: h.user_id.clone(),
            member: h.job.member.clone(),
            model: h.job.model.clone(),
            provider: h
                .plans
                .first()
                .map(|p| p.provider.clone())
                .unwrap_or_default(),
            quote: h.hold,
            created_at: h.created_at,
            progress,
        });
        let id = h.request_id.clone();
        s.jobs.jobs.insert(id.clone(), running.clone());
        let view = running_view(&id, &running);
        let s = this.clone();
        this.jobs.spawn(async move {
            let _place = place;
            let _shown = Shown {
                jobs: &s.jobs.jobs,
                id: id.clone(),
            };
            // Its record is committed by the time this returns, so a
            // reader that misses it on the map finds it in the history.
            if let Err(e) = request::run_held(&s, h).await {
                // No record was written: the hold is released at the next
                // start, and the job reads `interrupted` then.
                eprintln!("oneflow: job {id} could not be settled: {e}");
            }
        });
        Ok(view)
    })
    .await
    .map_err(|e| BrokerError::Unavailable(format!("job task failed: {e}")))?
    .inspect_err(|e| tag.failed(e))
}

fn running_view(id: &str, j: &RunningJob) -> JobView {
    let (upstream, progress) = j.progress.read();
    let started = upstream.is_some();
    // The provider running it now (after a fallback, not the first).
    let provider = upstream.map_or_else(|| j.provider.clone(), |(p, _)| p);
    JobView {
        id: id.to_string(),
        status: if started {
            JobStatus::Running
        } else {
            JobStatus::Queued
        },
        progress,
        model: j.model.clone(),
        provider,
        quote: j.quote,
        cost: None,
        seconds: None,
        error: None,
        created_at: j.created_at,
        content_url: None,
    }
}

fn ended_view(r: &RequestRecord) -> JobView {
    let ok = r.status == RequestStatus::Succeeded;
    JobView {
        id: r.id.clone(),
        status: match r.status {
            RequestStatus::Succeeded => JobStatus::Succeeded,
            RequestStatus::Failed => JobStatus::Failed,
            RequestStatus::Interrupted => JobStatus::Interrupted,
        },
        progress: if ok { 100 } else { 0 },
        model: r.model.clone(),
        provider: r.provider.clone(),
        quote: r.quote,
        cost: Some(r.cost),
        seconds: ok.then_some(r.usage.seconds),
        error: r.error.clone(),
        created_at: r.created_at,
        content_url: ok.then(|| format!("/api/jobs/{}/content", r.id)),
    }
}

/// A job of the caller's (any job for the admin): running, or ended.
pub(crate) async fn view(s: &Services, who: &Principal, id: &str) -> Result<JobView, BrokerError> {
    if let Some(j) = s.jobs.jobs.get(id).map(|j| j.clone()) {
        if membership::sees(s, who, &j.user_id, j.member.as_deref()).await {
            return Ok(running_view(id, &j));
        }
        return Err(BrokerError::NotFound("job"));
    }
    Ok(ended_view(&record(s, who, id).await?))
}

/// The video request recorded under `id`, if the caller may see it.
async fn record(s: &Services, who: &Principal, id: &str) -> Result<RequestRecord, BrokerError> {
    match history::request(s, who, id).await {
        Ok(r) if r.modality == Modality::Video => Ok(r),
        Ok(_) | Err(BrokerError::NotFound(_)) => Err(BrokerError::NotFound("job")),
        Err(e) => Err(e),
    }
}

/// The file a succeeded job made, fetched from its provider as it comes.
pub(crate) async fn content(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<Content, BrokerError> {
    let running = s
        .jobs
        .jobs
        .get(id)
        .map(|j| (j.user_id.clone(), j.member.clone()));
    if let Some((owner, member)) = running {
        if membership::sees(s, who, &owner, member.as_deref()).await {
            return Err(BrokerError::Conflict(format!(
                "job {id} is still running; its content comes when it succeeded"
            )));
        }
        return Err(BrokerError::NotFound("job"));
    }
    let r = record(s, who, id).await?;
    let address = match (&r.status, &r.response) {
        (RequestStatus::Succeeded, Some(a)) => a.clone(),
        _ => {
            return Err(BrokerError::Conflict(format!(
                "job {id} did not succeed; it has no content"
            )));
        }
    };
    let provider = s.provider(&r.provider)?;
    provider
        .adapter
        .content(&address, s.config.jobs.max_content_bytes)
        .await
        .map_err(|e| match e {
            // The provider was configured anew since (another kind, or
            // another upstream): the file is out of reach, not failing.
            CallError::Unsupported { .. } => BrokerError::Conflict(format!(
                "job {id}'s provider can no longer serve its content"
            )),
            e => BrokerError::Upstream {
                code: failure_code(&e),
                message: e.to_string(),
                retry_after: e.retry_after(),
            },
        })
}

/// Deletes upstream the jobs still rendering, so that a stopping broker
/// leaves no render the user will not pay for (the jobs read
/// `interrupted` after the next start, their holds released). Bounded:
/// a stop must not wait on an upstream.
pub(crate) async fn cancel_running(s: &Services) {
    let running: Vec<(String, String)> = s
        .jobs
        .jobs
        .iter()
        .filter_map(|j| j.progress.read().0)
        .collect();
    let cancels = running.into_iter().filter_map(|(provider, id)| {
        let p = s.provider(&provider).ok()?;
        Some(p.adapter.cancel(&id))
    });
    let all = futures_util::future::join_all(cancels);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), all).await;
}
