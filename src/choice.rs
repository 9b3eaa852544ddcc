//! The choices that steer routing, as a request, a user or the
//! configuration states them: where a provider must run, how candidates
//! are ranked and how the `balanced` strategy weighs its figures.
//!
//! Plain values below `config`, `request` and `routing`, so each of those
//! can name them without naming the others.

use serde::{Deserialize, Serialize};

/// Where a provider runs; requests may demand one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Region {
    Us,
    Eu,
    Ru,
}

impl Region {
    pub fn name(self) -> &'static str {
        match self {
            Region::Us => "US",
            Region::Eu => "EU",
            Region::Ru => "RU",
        }
    }
}

/// How candidates are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Cost,
    Latency,
    Quality,
    Balanced,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Cost => "cost",
            Strategy::Latency => "latency",
            Strategy::Quality => "quality",
            Strategy::Balanced => "balanced",
        }
    }
}

/// How the `balanced` strategy weighs cost, latency, quality and
/// unreliability (each normalised to 0..1 among the candidates).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub cost: f64,
    pub latency: f64,
    pub quality: f64,
    pub reliability: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cost: 0.4,
            latency: 0.3,
            quality: 0.2,
            reliability: 0.1,
        }
    }
}
