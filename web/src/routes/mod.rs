//! One module per resource. Handlers are thin: extract, authenticate, call
//! one broker method, map the result.

pub mod analytics;
pub mod budget;
pub mod credits;
pub mod dashboard;
pub mod export;
pub mod history;
pub mod keys;
pub mod metrics;
pub mod openai;
pub mod providers;
pub mod request;
pub mod routing;
pub mod status;
pub mod users;

use serde::Deserialize;

/// `?user_id=` for admins acting on a user's data.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForUser {
    /// Admins only: whose data (default: the caller's).
    pub user_id: Option<String>,
}
