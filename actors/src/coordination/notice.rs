//! Notices between nodes over Redis pub/sub: at most once, to the nodes
//! listening at the time. They hurry along what each node would otherwise
//! learn later (a revoked key, changed settings), so one lost while Redis
//! is down costs time, not correctness.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{CoordError, Coordinator, Shared};

/// Something another node did that this one should know about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// An API key was revoked: forget it if it is cached.
    KeyRevoked { hash_hex: String },
    /// Settings changed in the shared store: read them again.
    ConfigChanged,
}

/// A notice on the wire, with its sender so that it can ignore its own.
#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    notice: Notice,
}

impl Coordinator {
    /// Tells the other nodes. Not queued: if Redis is down it is lost (see
    /// the module's note).
    pub async fn publish(&self, notice: Notice) -> Result<(), CoordError> {
        let s = &self.inner.shared;
        let body = serde_json::to_string(&Envelope {
            from: s.node_id.clone(),
            notice,
        })
        .map_err(|e| CoordError::Redis(e.to_string()))?;
        if !self.healthy() {
            return Err(CoordError::Degraded);
        }
        s.query::<u32>(redis::cmd("PUBLISH").arg(s.key("notices")).arg(body))
            .await
            .map(drop)
    }

    /// The notices other nodes publish from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.shared.notices.subscribe()
    }
}

/// Holds the subscription, reconnecting with a growing pause while Redis
/// is away, and passes on what others publish.
pub(super) async fn listen(shared: Arc<Shared>) {
    const FIRST: Duration = Duration::from_millis(100);
    let channel = shared.key("notices");
    let mut pause = FIRST;
    loop {
        let subscribing = async {
            let mut ps = shared.client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let limit = shared.tuning.timeout.max(Duration::from_secs(1));
        if let Ok(Ok(ps)) = tokio::time::timeout(limit, subscribing).await {
            pause = FIRST;
            shared.subscribed.send_replace(true);
            let mut messages = ps.into_on_message();
            while let Some(m) = messages.next().await {
                let Ok(env) = serde_json::from_slice::<Envelope>(m.get_payload_bytes()) else {
                    continue;
                };
                if env.from != shared.node_id {
                    // No receiver is no error: nobody is listening yet.
                    let _ = shared.notices.send(env.notice);
                }
            }
            shared.subscribed.send_replace(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
