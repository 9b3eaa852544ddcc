//! What every handler shares.

use oneflow_actors::Broker;

/// Application state: the broker (cheap to clone, thread-safe).
pub struct AppState {
    pub broker: Broker,
    pub started_at: std::time::Instant,
    pub auth_throttle: crate::throttle::AuthThrottle,
    /// `GET /api/openapi.json`, written for this configuration.
    pub openapi: String,
}
