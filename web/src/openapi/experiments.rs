//! The routes of A/B experiments and ratings. One doc-only function per
//! route, never called: its attributes describe the route; the handlers
//! are in `routes/experiments.rs`. docs/experiments.md says the rest.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::experiment::{Experiment, ExperimentReport, ExperimentSpec, Pin, Rating};
use utoipa::ToSchema;

use super::schema::ErrorBody;
use crate::routes::experiments::{Feedback, Promotion};

// `json!` around the lists, in routes/experiments.rs.
#[derive(ToSchema)]
pub struct ExperimentList {
    /// Newest first, at most 1000.
    pub experiments: Vec<Experiment>,
    /// The models whose traffic a promoted variant's provider takes.
    pub pins: Vec<Pin>,
}

#[utoipa::path(post, path = "/api/experiments", tag = "experiments",
    request_body = ExperimentSpec,
    responses(
        (status = 201, description = "Created and running: from now on the model's requests are split between the variants", body = Experiment),
        (status = 400, description = "A body that breaks the schema; nothing is stored", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The model already has a running experiment or a pin from a promotion, or 1000 experiments are kept; nothing is stored", body = ErrorBody),
        (status = 422, description = "Weights that do not add up to more than 0, an unknown provider, a provider that does not serve the model, a model no provider serves, two variants of one name, an override out of range; nothing is stored", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn create_experiment() {}

#[utoipa::path(get, path = "/api/experiments", tag = "experiments",
    responses(
        (status = 200, description = "Every experiment, newest first, and the pins promotions left", body = ExperimentList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
pub fn list_experiments() {}

#[utoipa::path(get, path = "/api/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id")),
    responses(
        (status = 200, description = "The experiment with its figures per variant (from the request records that carry its tag) and each variant compared with the first", body = ExperimentReport),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such experiment", body = ErrorBody),
    ))]
pub fn get_experiment() {}

#[utoipa::path(post, path = "/api/experiments/{id}/stop", tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id")),
    responses(
        (status = 200, description = "Stopped: no more requests are assigned; the figures stay", body = Experiment),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such experiment", body = ErrorBody),
        (status = 409, description = "The experiment is not running", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn stop_experiment() {}

#[utoipa::path(post, path = "/api/experiments/{id}/promote", tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id")),
    request_body = Promotion,
    responses(
        (status = 200, description = "Promoted: the experiment ended and the variant's provider (with its overrides) takes all of the model's traffic, through a pin listed by `GET /api/experiments` until `DELETE /api/experiments/{id}/promotion`", body = Experiment),
        (status = 400, description = "A body that breaks the schema", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such experiment, or no such variant in it", body = ErrorBody),
        (status = 409, description = "The experiment is not running", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn promote_experiment() {}

#[utoipa::path(delete, path = "/api/experiments/{id}/promotion", tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id")),
    responses(
        (status = 200, description = "The pin its promotion left is gone: the model is routed as usual again", body = Experiment),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such experiment", body = ErrorBody),
        (status = 409, description = "The model has no pin from this experiment", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn unpin_experiment() {}

#[utoipa::path(post, path = "/api/feedback", tag = "experiments",
    request_body = Feedback,
    responses(
        (status = 201, description = "Rated", body = Rating),
        (status = 200, description = "Rated again: this rating replaced the request's earlier one", body = Rating),
        (status = 400, description = "A body that breaks the schema (a score not a whole number from 1 to 5)", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No request of this id that the caller may see", body = ErrorBody),
        (status = 503, description = "Rated concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn send_feedback() {}
