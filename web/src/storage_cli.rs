//! The storage commands of the binary: `oneflow migrate` (the PostgreSQL
//! schema), `oneflow export-store` (a redb file into PostgreSQL) and
//! `oneflow import-store` (PostgreSQL into a new redb file). They read the
//! same configuration `serve` reads (file, `ONEFLOW__*` variables, flags).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use oneflow::config::{Config, StorageBackend};
use oneflow_actors::store::postgres::{Pg, PgSettings, PgStore, migrate};
use oneflow_actors::store::transfer::{self, Copied, Verified};
use oneflow_actors::store::{RedbStore, Store};

use crate::settings::{self, Overrides};

/// Writes per commit while copying: large enough that a copy of millions
/// of rows takes minutes, small enough that a commit stays short.
const BATCH: usize = 1000;

/// Which way a copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The redb file into PostgreSQL.
    Export,
    /// PostgreSQL into a new redb file.
    Import,
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("oneflow: {msg}");
    ExitCode::from(code)
}

fn load(file: Option<&Path>, data_dir: Option<String>) -> Result<Config, String> {
    settings::load(
        file,
        &Overrides {
            bind: None,
            data_dir,
        },
    )
}

/// The connection settings of `[storage]`, which must name a PostgreSQL.
fn pg_settings(c: &Config) -> Result<PgSettings, String> {
    let url = c
        .storage
        .url
        .clone()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .ok_or("storage.url (or ONEFLOW__STORAGE__URL) must be a postgres:// URL")?;
    Ok(PgSettings {
        url,
        schema: c.storage.schema.clone(),
        pool_size: c.storage.pool_size.max(2),
        statement_timeout_ms: c.storage.statement_timeout_ms,
    })
}

/// `oneflow migrate`: brings the configured PostgreSQL schema up to date
/// and prints the versions it applied.
pub fn run_migrate(file: Option<PathBuf>) -> ExitCode {
    let config = match load(file.as_deref(), None) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    if config.storage.backend != StorageBackend::Postgres {
        return fail(
            2,
            "migrate needs storage.backend = \"postgres\" (or ONEFLOW__STORAGE__BACKEND=postgres)",
        );
    }
    let settings = match pg_settings(&config) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    let applied = Pg::connect(&settings).and_then(|pg| {
        let p = pg.clone();
        pg.block(async move {
            let mut c = p.get().await?;
            migrate(&mut c).await
        })?
    });
    match applied {
        Ok(v) if v.is_empty() => {
            println!("oneflow: the schema is up to date; no migration applied");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let v: Vec<String> = v.iter().map(i32::to_string).collect();
            println!("oneflow: applied schema versions {}", v.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

/// `oneflow export-store` / `import-store`: copies between the redb file
/// in the data directory and the configured PostgreSQL, then checks the
/// copy. Exits non-zero if the target is not empty or the check finds any
/// difference.
pub fn run_transfer(file: Option<PathBuf>, data_dir: Option<String>, way: Direction) -> ExitCode {
    let config = match load(file.as_deref(), data_dir) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    let settings = match pg_settings(&config) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    let dir = Path::new(&config.server.data_dir);
    let path = dir.join("oneflow.redb");
    if way == Direction::Export && !path.exists() {
        return fail(2, format!("there is no redb file at {}", path.display()));
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(1, format!("cannot create {}: {e}", dir.display()));
    }
    let redb = match RedbStore::open_with_cache(&path, config.persistence.cache_bytes) {
        Ok(s) => s,
        Err(e) => return fail(1, format!("{}: {e}", path.display())),
    };
    // Copied holds are open holds of a stopped node: written under this
    // name, the lease check of a running node releases them.
    let node_id = config
        .storage
        .node_id
        .clone()
        .unwrap_or_else(|| "store-copy".into());
    let pg = match PgStore::open(&settings, &node_id) {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let (from, to, what): (&dyn Store, &dyn Store, String) = match way {
        Direction::Export => (&redb, &*pg, format!("{} into PostgreSQL", path.display())),
        Direction::Import => (&*pg, &redb, format!("PostgreSQL into {}", path.display())),
    };
    eprintln!("oneflow: copying {what}");
    let copied = match transfer::copy(from, to, BATCH) {
        Ok(n) => n,
        Err(e) => return fail(1, e),
    };
    let checked = match transfer::verify(from, to) {
        Ok(v) => v,
        Err(e) => return fail(1, format!("the copy could not be checked: {e}")),
    };
    print!("{}", report(&copied, &checked));
    if checked.mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        fail(1, "the copy does not match its source (see above)")
    }
}

/// What was copied and what the check found.
pub fn report(n: &Copied, v: &Verified) -> String {
    let mut out = format!(
        "copied: {} users, {} API keys, {} wallets, {} budgets, {} providers, \
         {} ledger entries, {} open holds, {} requests, {} idempotency records\n\
         checked: users {}/{}, requests {}/{}, ledger entries {}/{} (source/target); \
         {} wallets replay to their balance\n",
        n.users,
        n.keys,
        n.wallets,
        n.budgets,
        n.providers,
        n.entries,
        n.holds,
        n.requests,
        n.idempotency,
        v.users.0,
        v.users.1,
        v.requests.0,
        v.requests.1,
        v.entries.0,
        v.entries.1,
        v.wallets_audited,
    );
    for m in &v.mismatches {
        out.push_str(&format!("MISMATCH: {m}\n"));
    }
    out
}

/// `oneflow restore <backup>`: puts a file made by `oneflow backup` in
/// place of `<data-dir>/oneflow.redb`, with the broker stopped. The backup
/// is checked first (its ledger must balance); the file it replaces is kept
/// beside it as `oneflow.redb.before-restore-<ms>`, never deleted; the
/// copy goes in under a temporary name and is renamed into place once
/// durable, so a crash leaves either the old file or the whole new one.
pub fn run_restore(file: Option<PathBuf>, data_dir: Option<String>, backup: &Path) -> ExitCode {
    let config = match load(file.as_deref(), data_dir) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    if config.storage.backend != StorageBackend::Redb {
        return fail(
            2,
            "restore puts back a redb file; this configuration keeps the ledger in PostgreSQL (restore that with its own tools)",
        );
    }
    if !backup.is_file() {
        return fail(
            2,
            format!("there is no backup file at {}", backup.display()),
        );
    }
    let audited = match crate::cli::backup::check(backup) {
        Ok(a) => a,
        Err(e) => return fail(1, e),
    };
    let dir = Path::new(&config.server.data_dir);
    let path = dir.join("oneflow.redb");
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(1, format!("cannot create {}: {e}", dir.display()));
    }
    if path.exists() {
        // Opening takes the file's lock: a broker still running on it
        // holds that lock, and its file must not change under it.
        if let Err(e) = RedbStore::open(&path) {
            return fail(
                1,
                format!(
                    "{} cannot be replaced (is a broker running on it? stop it first): {e}",
                    path.display()
                ),
            );
        }
        let aside = dir.join(format!(
            "oneflow.redb.before-restore-{}",
            oneflow_actors::ids::now_ms()
        ));
        if let Err(e) = std::fs::rename(&path, &aside) {
            return fail(1, format!("cannot move {} aside: {e}", path.display()));
        }
        eprintln!("oneflow: the old file is kept as {}", aside.display());
    }
    let coming = dir.join("oneflow.redb.restoring");
    let put = std::fs::copy(backup, &coming).and_then(|bytes| {
        std::fs::File::open(&coming)?.sync_all()?;
        std::fs::rename(&coming, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(bytes)
    });
    match put {
        Ok(bytes) => {
            print!(
                "restored {}",
                crate::cli::backup::summary(&path, bytes, &audited)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_file(&coming);
            fail(1, format!("cannot write {}: {e}", path.display()))
        }
    }
}
