//! A/B experiments of providers (`oneflow::experiment`): creating,
//! stopping and promoting them (admins), the running set routing reads on
//! every request, and the step that applies it to a job before ranking.
//! Figures and ratings are in `feedback.rs`.
//!
//! Kept as documents (`store/docs.rs`), so they survive restarts and are
//! shared by nodes on one store:
//!
//! | kind | id | what |
//! |---|---|---|
//! | `experiment` | experiment id (`exp_`, creation time, random) | the experiment |
//! | `experiment-model` | model name | the model's running experiment, or its pin: one document, so one experiment per model holds under racing creates on any node |
//!
//! The running set is a map in memory from model to what applies to it,
//! rebuilt from the `experiment-model` documents at start, after every
//! change made here, and every second when nodes share a store. A request
//! for a model with nothing in it costs one lookup under a read lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use oneflow::experiment::{
    Assignment, Experiment, ExperimentSpec, ExperimentState, Pin, SpecError, Sticky, assign,
};
use oneflow::records::ExperimentTag;
use oneflow::request::RequestError;
use oneflow::routing::Route;

use super::job::RequestJob;
use super::keys::Principal;
use super::{Services, blocking, scopes};
use crate::adapters::Operation;
use crate::error::BrokerError;
use crate::ids::{new_request_id, now_ms};
use crate::store::{DocWrite, Store, StoreError};

pub(crate) const KIND: &str = "experiment";
const MODEL_KIND: &str = "experiment-model";
/// Most experiments kept, running or not: an operator's tool, not a log.
pub(crate) const MAX_EXPERIMENTS: usize = 1000;
/// Most models with an experiment or a pin (the running set's bound).
const MAX_MODELS: usize = 10_000;
const CAS_TRIES: usize = 8;

/// What applies to one model: its running experiment or its pin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModelDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    running: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<Pin>,
}

/// What routing finds for a model.
#[derive(Debug)]
pub(crate) enum Applies {
    Running(Experiment),
    Pinned(Pin),
}

/// The running set: model to what applies to it. A `std` lock: held for a
/// lookup or a swap, never across an await.
#[derive(Default)]
pub(crate) struct Running(RwLock<HashMap<String, Arc<Applies>>>);

impl Running {
    fn get(&self, model: &str) -> Option<Arc<Applies>> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return None;
        }
        map.get(model).cloned()
    }

    fn replace(&self, map: HashMap<String, Arc<Applies>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = map;
    }
}

/// Reads the running set from the store.
fn read_running(store: &dyn Store) -> Result<HashMap<String, Arc<Applies>>, StoreError> {
    let mut map = HashMap::new();
    for (model, doc) in store.docs(MODEL_KIND, "", None, MAX_MODELS)? {
        let m: ModelDoc = doc.decode()?;
        if let Some(id) = &m.running {
            if let Some(d) = store.doc(KIND, id)? {
                let e: Experiment = d.decode()?;
                if e.state == ExperimentState::Running {
                    map.insert(model, Arc::new(Applies::Running(e)));
                    continue;
                }
            }
        }
        if let Some(p) = m.pin {
            map.insert(model, Arc::new(Applies::Pinned(p)));
        }
    }
    Ok(map)
}

/// Loads the running set at start; with a shared store, re-reads it every
/// second, so a change made through another node applies here within it.
pub(crate) fn start(s: &Arc<Services>) -> Result<(), BrokerError> {
    s.experiments.replace(read_running(&*s.store)?);
    if s.shared.is_some() {
        super::every(
            s,
            "experiments-refresh",
            super::SHARED_CACHE_TTL * 2,
            |s| async move { reload(&s).await.map_err(|e| e.to_string()) },
        );
    }
    Ok(())
}

async fn reload(s: &Services) -> Result<(), BrokerError> {
    let store = s.store.clone();
    let map = blocking(move || read_running(&*store)).await?;
    s.experiments.replace(map);
    Ok(())
}

/// Checks a spec against the configured providers (422 in the API).
pub(crate) fn check(s: &Services, spec: &ExperimentSpec) -> Result<(), SpecError> {
    spec.validate(&s.config.providers)
}

fn lost_race() -> BrokerError {
    BrokerError::Unavailable("experiments are being changed concurrently; retry".into())
}

/// Creates and starts an experiment; 409 if the model already has a
/// running experiment or a pin, or the store holds `MAX_EXPERIMENTS`.
pub(crate) async fn create(
    s: &Services,
    who: &Principal,
    spec: ExperimentSpec,
) -> Result<Experiment, BrokerError> {
    check(s, &spec).map_err(|e| BrokerError::BadInput(e.0))?;
    // `exp_`, the time and randomness: ids sort by creation.
    let id = format!("exp_{}", new_request_id().trim_start_matches("req_"));
    let e = Experiment {
        id,
        model: spec.model,
        variants: spec.variants,
        sticky: spec.sticky,
        note: spec.note,
        state: ExperimentState::Running,
        created_at: now_ms(),
        ended_at: None,
        promoted: None,
        created_by: who.user_id.clone(),
    };
    let (store, made) = (s.store.clone(), e.clone());
    blocking(move || {
        if store.docs(KIND, "", None, MAX_EXPERIMENTS)?.len() >= MAX_EXPERIMENTS {
            return Ok(Err(BrokerError::Conflict(format!(
                "at most {MAX_EXPERIMENTS} experiments are kept"
            ))));
        }
        for _ in 0..CAS_TRIES {
            let (version, mut m) = model_doc(&*store, &made.model)?;
            if let Some(other) = &m.running {
                return Ok(Err(BrokerError::Conflict(format!(
                    "experiment {other} is already running on model `{}`: stop it first",
                    made.model
                ))));
            }
            if let Some(p) = &m.pin {
                return Ok(Err(BrokerError::Conflict(format!(
                    "model `{}` is pinned to provider `{}` by experiment {}: remove the pin first",
                    made.model, p.provider, p.experiment
                ))));
            }
            m.running = Some(made.id.clone());
            let writes = vec![
                DocWrite::replace(MODEL_KIND, &made.model, version, &m)?,
                DocWrite::create(KIND, &made.id, &made)?,
            ];
            if store.write_docs(writes)? {
                return Ok(Ok(()));
            }
        }
        Ok(Err(lost_race()))
    })
    .await??;
    reload(s).await?;
    Ok(e)
}

fn model_doc(store: &dyn Store, model: &str) -> Result<(u64, ModelDoc), StoreError> {
    Ok(match store.doc(MODEL_KIND, model)? {
        Some(d) => (d.version, d.decode()?),
        None => (0, ModelDoc::default()),
    })
}

/// One experiment and its version.
pub(crate) async fn load(s: &Services, id: &str) -> Result<(u64, Experiment), BrokerError> {
    if !id.starts_with("exp_") || id.len() > 64 {
        return Err(BrokerError::NotFound("experiment"));
    }
    let (store, key) = (s.store.clone(), id.to_string());
    let doc = blocking(move || store.doc(KIND, &key))
        .await?
        .ok_or(BrokerError::NotFound("experiment"))?;
    Ok((doc.version, doc.decode()?))
}

/// Every experiment, newest first, and the models' pins.
pub(crate) async fn list(s: &Services) -> Result<(Vec<Experiment>, Vec<Pin>), BrokerError> {
    let store = s.store.clone();
    blocking(move || {
        let mut all = Vec::new();
        for (_, d) in store.docs(KIND, "", None, MAX_EXPERIMENTS)? {
            all.push(d.decode::<Experiment>()?);
        }
        all.reverse();
        let mut pins = Vec::new();
        for (_, d) in store.docs(MODEL_KIND, "", None, MAX_MODELS)? {
            pins.extend(d.decode::<ModelDoc>()?.pin);
        }
        Ok((all, pins))
    })
    .await
}

/// Ends a running experiment: `promote` names the variant whose provider
/// (and overrides) then takes all of the model's traffic through a pin;
/// `None` just stops it. 409 if it is not running, 404 for an unknown
/// variant. Its figures stay.
pub(crate) async fn end(
    s: &Services,
    id: &str,
    promote: Option<String>,
) -> Result<Experiment, BrokerError> {
    let (_, first) = load(s, id).await?;
    if let Some(v) = &promote {
        if !first.variants.iter().any(|x| &x.name == v) {
            // A name that is not there, like an id that is not: 404.
            return Err(BrokerError::NotFound("variant"));
        }
    }
    let store = s.store.clone();
    let id = id.to_string();
    let ended = blocking(move || {
        for _ in 0..CAS_TRIES {
            let Some(d) = store.doc(KIND, &id)? else {
                return Ok(Err(BrokerError::NotFound("experiment")));
            };
            let mut e: Experiment = d.decode()?;
            if e.state != ExperimentState::Running {
                return Ok(Err(BrokerError::Conflict(format!(
                    "experiment {id} is not running"
                ))));
            }
            let now = now_ms();
            let (mv, mut m) = model_doc(&*store, &e.model)?;
            if m.running.as_deref() == Some(id.as_str()) {
                m.running = None;
            }
            e.ended_at = Some(now);
            e.state = ExperimentState::Stopped;
            if let Some(name) = &promote {
                let v = e.variants.iter().find(|x| &x.name == name).cloned();
                let Some(v) = v else {
                    return Ok(Err(BrokerError::NotFound("variant")));
                };
                e.state = ExperimentState::Promoted;
                e.promoted = Some(v.name.clone());
                m.pin = Some(Pin {
                    model: e.model.clone(),
                    provider: v.provider,
                    overrides: v.overrides,
                    experiment: e.id.clone(),
                    variant: v.name,
                    since: now,
                });
            }
            let writes = vec![
                DocWrite::replace(KIND, &id, d.version, &e)?,
                DocWrite::replace(MODEL_KIND, &e.model, mv, &m)?,
            ];
            if store.write_docs(writes)? {
                return Ok(Ok(e));
            }
        }
        Ok(Err(lost_race()))
    })
    .await??;
    reload(s).await?;
    Ok(ended)
}

/// Removes the pin a promotion of experiment `id` left, giving the model
/// back to ordinary routing. 409 if that pin is not in place.
pub(crate) async fn unpin(s: &Services, id: &str) -> Result<Experiment, BrokerError> {
    let (_, e) = load(s, id).await?;
    let store = s.store.clone();
    let model = e.model.clone();
    let exp = e.id.clone();
    blocking(move || {
        for _ in 0..CAS_TRIES {
            let (v, mut m) = model_doc(&*store, &model)?;
            if m.pin.as_ref().is_none_or(|p| p.experiment != exp) {
                return Ok(Err(BrokerError::Conflict(format!(
                    "model `{model}` has no pin from experiment {exp}"
                ))));
            }
            m.pin = None;
            let write = if m == ModelDoc::default() {
                DocWrite::delete(MODEL_KIND, &model, v)
            } else {
                DocWrite::replace(MODEL_KIND, &model, v, &m)?
            };
            if store.write_docs(vec![write])? {
                return Ok(Ok(()));
            }
        }
        Ok(Err(lost_race()))
    })
    .await??;
    reload(s).await?;
    Ok(e)
}

/// Applies the model's experiment or pin to a job before it is ranked:
/// the variant's provider becomes the only candidate (no fallback to
/// another provider, so a variant's figures are its provider's) and its
/// overrides are set. Nothing applies to a job that pins its providers
/// itself, nor where the key's scope leaves out the variant's provider:
/// such requests are routed as usual and not counted; so are those
/// whose variant's provider has its circuit open. Gives what the
/// route must carry, if anything applied.
pub(crate) fn apply(s: &Services, payer: &str, job: &mut RequestJob) -> Option<Assignment> {
    let applies = s.experiments.get(&job.model)?;
    if !job.constraints.providers.is_empty() {
        return None;
    }
    let key = job.key.as_deref();
    let a = match &*applies {
        Applies::Pinned(p) => Assignment {
            provider: p.provider.clone(),
            overrides: p.overrides.clone(),
            tag: None,
            request_id: None,
        },
        Applies::Running(e) => {
            let (draw, request_id) = match e.sticky {
                Sticky::User => (job.member.as_deref().unwrap_or(payer).to_string(), None),
                Sticky::Request => {
                    let id = new_request_id();
                    (id.clone(), Some(id))
                }
            };
            let v = assign(e, &draw)?;
            Assignment {
                provider: v.provider.clone(),
                overrides: v.overrides.clone(),
                tag: Some(ExperimentTag {
                    id: e.id.clone(),
                    variant: v.name.clone(),
                }),
                request_id,
            }
        }
    };
    // A provider whose circuit is open would fail the request outright:
    // it is routed as usual instead, and not counted.
    let up = s
        .provider(&a.provider)
        .is_ok_and(|h| h.stats.health().available);
    if !up || !scopes::allowed(key, &a.provider) {
        return None;
    }
    job.constraints.providers = vec![a.provider.clone()];
    if let (Some(t), Operation::Chat { chat, .. }) = (a.overrides.temperature, &mut job.op) {
        chat.temperature = Some(t);
    }
    if let Some(max) = a.overrides.max_tokens {
        // Taken out to be wrapped; the placeholder is never called.
        let planner = std::mem::replace(&mut job.planner, Box::new(|_| unreachable_plan()));
        job.planner = Box::new(move |p| {
            let mut plan = planner(p)?;
            // Fewer tokens asked than the quote allowed for: the hold
            // still covers the client's bound, never less.
            let out = &mut plan.max_usage.output_tokens;
            *out = (*out).min(u64::from(max));
            Ok(plan)
        });
    }
    Some(a)
}

fn unreachable_plan() -> Result<oneflow::request::Plan, RequestError> {
    Err(RequestError::UnknownModel(String::new()))
}

/// Writes what applied into the route: the experiment's tag, the request
/// id its draw used, and a word in the explanation (the
/// `x-oneflow-route` header and the record's `route`).
pub(crate) fn mark(route: &mut Route, a: Option<Assignment>) {
    let Some(a) = a else { return };
    match &a.tag {
        Some(t) => route
            .explanation
            .push_str(&format!("; experiment={} variant={}", t.id, t.variant)),
        None => route
            .explanation
            .push_str(&format!("; pinned={} (a promoted experiment)", a.provider)),
    }
    route.experiment = a.tag;
    route.request_id = a.request_id;
}
