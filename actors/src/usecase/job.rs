//! A request ready to route ([`RequestJob`]): what the upstream is asked,
//! how to fit it to one provider, and the caller's routing wishes. The HTTP
//! layer builds one (the `/v1` routes directly, `/api/request` through
//! [`RequestJob::native`]) and hands it to the request or stream use case.

use std::sync::Arc;

use oneflow::config::ProviderConfig;
use oneflow::key_scope::ScopedKey;
use oneflow::request::{AiRequest, Plan, RequestError};
use oneflow::routing::{Constraints, Strategy};

use crate::provider::Operation;
use crate::wallet::IdemKey;

/// Fits a request to one provider: its plan (modality, bounds, quote).
pub type Planner = Box<dyn Fn(&ProviderConfig) -> PlanResult + Send + Sync>;
type PlanResult = Result<Plan, RequestError>;

/// Who pays for a request: the wallet it is held on (a user's own, or a
/// team's for a team key) and, for a team's, the member who spends it,
/// whose own caps in the team's budget bound the hold too. Derefs to the
/// wallet's id, which is whose request it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payer {
    pub wallet: String,
    pub member: Option<String>,
    /// The scope of the key it came through, if it has one.
    pub key: Option<Arc<ScopedKey>>,
    /// The public id of the key it came through, for the record.
    pub key_id: Option<String>,
}

impl Payer {
    pub fn of(p: &super::keys::Principal) -> Payer {
        match &p.team {
            Some(team) => Payer {
                wallet: team.clone(),
                member: Some(p.user_id.clone()),
                key: p.scope.clone(),
                key_id: p.key_id.clone(),
            },
            None => Payer {
                wallet: p.user_id.clone(),
                member: None,
                key: p.scope.clone(),
                key_id: p.key_id.clone(),
            },
        }
    }

    /// Writes who spends into the job: the member, and the key when it
    /// has a budget of its own (counted under its id, see
    /// `oneflow::key_scope::ScopedKey`); keys without one add nothing.
    pub(crate) fn apply(&self, job: &mut RequestJob) {
        job.spenders = self.member.iter().cloned().collect();
        if let Some(k) = self.key.as_ref().filter(|k| k.scope.budget.is_some()) {
            job.spenders.push(k.id.clone());
        }
        job.member = self.member.clone();
        job.key = self.key.clone();
        job.key_id = self.key_id.clone();
    }
}

impl std::ops::Deref for Payer {
    type Target = str;
    fn deref(&self) -> &str {
        &self.wallet
    }
}

/// A request ready to route: what the upstream is asked, how to fit it to
/// one provider, and the caller's routing wishes.
pub struct RequestJob {
    pub model: String,
    pub preview: String,
    /// The operation; chat and completion `max_tokens` are set per
    /// provider from its plan.
    pub op: Operation,
    pub planner: Planner,
    pub constraints: Constraints,
    pub strategy: Option<Strategy>,
    pub idem: Option<IdemKey>,
    /// Who inside the paying wallet spends (a team's member, a key): each
    /// one's own caps bound the hold (`Wallet::hold_as`). Set by
    /// [`Payer::apply`].
    pub spenders: Vec<String>,
    /// The team member who sent it, when a team's wallet pays: the record
    /// says who.
    pub member: Option<String>,
    /// The scope of the key that sent it: the models and providers it may
    /// use, and its own caps on the hold. Set by [`Payer::apply`].
    pub key: Option<Arc<ScopedKey>>,
    /// The public id of the key that sent it, if a key did: the record
    /// says which, so figures split by key. Set by [`Payer::apply`].
    pub key_id: Option<String>,
}

impl RequestJob {
    /// A native `/api/request`.
    pub fn native(req: AiRequest, idem: Option<IdemKey>) -> RequestJob {
        let constraints = Constraints {
            region: req.region,
            providers: req.provider.iter().cloned().collect(),
            max_price: req.max_price,
        };
        // The provider's modality turns this into an image, speech or clip
        // request once a plan is chosen (`op_for`).
        let op = Operation::ask(req.prompt.clone(), 0);
        RequestJob {
            model: req.model.clone(),
            preview: preview(&req.prompt),
            op,
            strategy: req.strategy,
            constraints,
            idem,
            spenders: Vec::new(),
            member: None,
            key: None,
            key_id: None,
            planner: Box::new(move |p| req.plan(p)),
        }
    }
}

/// The start of a prompt, as history shows it.
pub(crate) fn preview(prompt: &str) -> String {
    prompt.chars().take(200).collect()
}

/// The operation as sent to one provider: the plan fixes what depends on it.
pub(crate) fn op_for(op: &Operation, plan: &Plan) -> Operation {
    use oneflow::pricing::Modality;
    let max = u32::try_from(plan.max_usage.output_tokens).unwrap_or(u32::MAX);
    let prompt = op.prompt_text();
    match (op, plan.modality) {
        // The plan's output bound covers all `n` answers.
        (
            Operation::Chat {
                chat,
                n,
                extra,
                responses,
                ..
            },
            Modality::Text,
        ) => Operation::Chat {
            chat: chat.clone(),
            max_tokens: (max / (*n).max(1)).max(1),
            n: *n,
            extra: extra.clone(),
            responses: responses.clone(),
        },
        (Operation::Completion { prompt, extra, .. }, _) => Operation::Completion {
            prompt: prompt.clone(),
            max_tokens: max,
            extra: extra.clone(),
        },
        (Operation::Chat { .. }, Modality::Image) => Operation::Image {
            prompt,
            n: u32::try_from(plan.max_usage.images).unwrap_or(1),
            size: plan.size.clone().unwrap_or_default(),
            extra: Default::default(),
        },
        (Operation::Chat { .. }, Modality::Audio) => Operation::Speech {
            input: prompt,
            voice: "alloy".into(),
            extra: Default::default(),
        },
        (Operation::Chat { .. }, Modality::Video) => Operation::Clip {
            prompt,
            seconds: u32::try_from(plan.max_usage.seconds).unwrap_or(1),
            progress: None,
        },
        (Operation::Clip { progress, .. }, _) => Operation::Clip {
            prompt,
            seconds: u32::try_from(plan.max_usage.seconds).unwrap_or(1),
            progress: progress.clone(),
        },
        (Operation::Image { prompt, extra, .. }, _) => Operation::Image {
            prompt: prompt.clone(),
            n: u32::try_from(plan.max_usage.images).unwrap_or(1),
            size: plan.size.clone().unwrap_or_default(),
            extra: extra.clone(),
        },
        (other, _) => other.clone(),
    }
}
