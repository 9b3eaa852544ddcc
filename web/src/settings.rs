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

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example is the defaults, spelled out: it must load,
    /// validate, and equal what no file gives.
    #[test]
    fn the_example_file_is_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../oneflow.example.toml");
        let from_file = load(Some(&example), &Overrides::default()).unwrap();
        assert_eq!(from_file, Config::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[server]\nbnd = \"x\"\n").unwrap();
        let err = load(Some(&p), &Overrides::default()).unwrap_err();
        assert!(err.contains("bnd"), "{err}");
        std::fs::write(&p, "[wallets]\nmax_in_flight = 0\n").unwrap();
        let err = load(Some(&p), &Overrides::default()).unwrap_err();
        assert!(err.contains("wallets.max_in_flight"), "{err}");
        // Older files still load: the retired key is accepted, the old name
        // of the bound is read.
        std::fs::write(&p, "[wallets]\narbiters = 2\nmailbox = 5\n").unwrap();
        let c = load(Some(&p), &Overrides::default()).unwrap();
        assert_eq!((c.wallets.arbiters, c.wallets.max_in_flight), (Some(2), 5));
        let flags = Overrides {
            bind: Some("127.0.0.1:9".into()),
            data_dir: None,
        };
        std::fs::write(&p, "[server]\nbind = \"127.0.0.1:1\"\n").unwrap();
        assert_eq!(load(Some(&p), &flags).unwrap().server.bind, "127.0.0.1:9");
    }
}
