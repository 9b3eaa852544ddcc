//! The broker's methods for A/B experiments and ratings
//! (`usecase/experiments.rs`, `usecase/feedback.rs`), kept apart from the
//! request path's so that each file stays readable.

use oneflow::experiment::{Experiment, ExperimentReport, ExperimentSpec, Pin, Rating, SpecError};

use super::Broker;
use crate::error::BrokerError;
use crate::usecase::keys::Principal;
use crate::usecase::{experiments, feedback};

impl Broker {
    /// Whether a spec fits the configured providers (the API's 422).
    pub fn check_experiment(&self, spec: &ExperimentSpec) -> Result<(), SpecError> {
        experiments::check(&self.services, spec)
    }

    /// Creates and starts an experiment (admins).
    pub async fn create_experiment(
        &self,
        who: &Principal,
        spec: ExperimentSpec,
    ) -> Result<Experiment, BrokerError> {
        experiments::create(&self.services, who, spec).await
    }

    /// Every experiment, newest first, and the pins promotions left.
    pub async fn experiments(&self) -> Result<(Vec<Experiment>, Vec<Pin>), BrokerError> {
        experiments::list(&self.services).await
    }

    /// One experiment with its figures.
    pub async fn experiment(&self, id: &str) -> Result<ExperimentReport, BrokerError> {
        feedback::report(&self.services, id).await
    }

    /// Stops a running experiment, or promotes one of its variants.
    pub async fn end_experiment(
        &self,
        id: &str,
        promote: Option<String>,
    ) -> Result<Experiment, BrokerError> {
        experiments::end(&self.services, id, promote).await
    }

    /// Removes the pin the experiment's promotion left.
    pub async fn unpin_experiment(&self, id: &str) -> Result<Experiment, BrokerError> {
        experiments::unpin(&self.services, id).await
    }

    /// Rates a request the caller may see; true if it replaced a rating.
    pub async fn rate(
        &self,
        who: &Principal,
        request_id: &str,
        score: u8,
    ) -> Result<(Rating, bool), BrokerError> {
        feedback::rate(&self.services, who, request_id, score).await
    }
}
