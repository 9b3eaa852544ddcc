//! What the broker reports about itself: the providers and their live
//! figures, wallets alive and writes queued, group-commit figures, and the
//! Prometheus text for `/metrics`.

use std::sync::atomic::Ordering::Relaxed;

use super::Services;
use crate::error::BrokerError;
use crate::metrics;
use crate::persistence::CommitFigures;
use crate::views::{ClusterView, ProviderView};

/// Every configured provider with its health, circuit and counters.
pub(crate) fn providers(s: &Services) -> Vec<ProviderView> {
    s.providers
        .iter()
        .map(|h| {
            let c = &h.config;
            let health = h.stats.health();
            ProviderView {
                name: c.name.clone(),
                modality: c.modality,
                models: c.models.clone(),
                region: c.region,
                quality: c.quality,
                rates: c.rates.clone(),
                up: health.available,
                health,
                circuit: h.stats.circuit_state(),
                limits: c.limits.clone(),
                queued: h.stats.queued.load(Relaxed),
                in_flight: h.stats.in_flight.load(Relaxed),
                calls: h.stats.calls.load(Relaxed),
                failures: h.stats.failures.load(Relaxed),
                rejected: h.stats.rejected.load(Relaxed),
            }
        })
        .collect()
}

/// The store, this node, and the nodes seen on a shared store.
pub(crate) async fn cluster(s: &Services) -> Result<ClusterView, BrokerError> {
    let limits = match &s.coord {
        Some(c) if c.healthy() => "shared",
        // Configured, but Redis does not answer: each node on its share.
        Some(_) => "fallback",
        None => "per-node",
    };
    let Some(pg) = &s.shared else {
        return Ok(ClusterView {
            storage: "redb",
            node_id: None,
            nodes: Vec::new(),
            limits,
        });
    };
    let lease_ms = (s.config.storage.hold_lease_secs * 1000) as i64;
    let nodes = pg.nodes(lease_ms).await?;
    Ok(ClusterView {
        storage: "postgres",
        node_id: Some(pg.node_id().to_string()),
        nodes,
        limits,
    })
}

/// Wallets in memory and writes queued.
pub(crate) fn runtime_figures(s: &Services) -> (usize, usize) {
    (s.wallets.alive(), s.persist.depth())
}

/// Group-commit figures since start: commits, writes, mean commit time.
pub(crate) fn persistence_figures(s: &Services) -> CommitFigures {
    s.persist.figures()
}

/// Refreshes the gauges that mirror live state and renders the Prometheus
/// text; `None` if the recorder is not ours.
pub(crate) fn render_metrics(s: &Services) -> Option<String> {
    let providers = s.providers.iter().map(|p| metrics::ProviderGauges {
        name: p.config.name.clone(),
        queued: p.stats.queued.load(Relaxed),
        circuit: p.stats.circuit_state().gauge_value(),
    });
    super::reconcile::touch_gauges(s);
    metrics::render(s.wallets.alive(), providers)
}
