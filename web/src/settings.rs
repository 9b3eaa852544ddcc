//! Loading the configuration: built-in defaults, then an optional TOML file,
//! then `ONEFLOW__*` environment variables (`__` separates levels, e.g.
//! `ONEFLOW__SERVER__BIND`), then command-line flags. Unknown keys are errors
//! that name the key.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use oneflow::config::Config;

/// Flags that override everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<String>,
    pub data_dir: Option<String>,
}

/// Builds the configuration. `file`: an explicit path (must exist), or
/// `None` to read `./oneflow.toml` when present.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
    // No serialised defaults layer: every struct is `#[serde(default)]`, so
    // keys nobody sets take their defaults during extraction.
    let mut fig = Figment::new();
    match file {
        Some(p) if !p.exists() => {
            return Err(format!("config file {} does not exist", p.display()));
        }
        Some(p) => fig = fig.merge(Toml::file(p)),
        None if Path::new("oneflow.toml").exists() => fig = fig.merge(Toml::file("oneflow.toml")),
        None => {}
    }
    fig = fig.merge(Env::prefixed("ONEFLOW__").split("__"));
    let mut config: Config = fig.extract().map_err(|e| {
        let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        format!("invalid configuration: {}", msgs.join("; "))
    })?;
    if let Some(b) = &overrides.bind {
        config.server.bind = b.clone();
    }
    if let Some(d) = &overrides.data_dir {
        config.server.data_dir = d.clone();
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
