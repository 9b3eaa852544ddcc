//! `oneflow backup <file>`: downloads a running broker's consistent copy
//! (`GET /api/backup`) and checks it before giving it its name, so a file
//! under that name is always one a broker can open with a ledger that
//! balances. `oneflow restore` (in `storage_cli.rs`) puts one back.

use std::io::Write;
use std::path::{Path, PathBuf};

use oneflow_actors::store::RedbStore;
use oneflow_actors::store::backup::{Audited, audit_ledgers};

use super::client::{CliError, Client};

/// Opens a backup file and replays every wallet's ledger in it.
pub fn check(path: &Path) -> Result<Audited, String> {
    let store = RedbStore::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let audited = audit_ledgers(&store).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(m) = audited.mismatches.first() {
        return Err(format!(
            "{}: the ledger does not balance ({} wallets wrong; first: {m})",
            path.display(),
            audited.mismatches.len()
        ));
    }
    Ok(audited)
}

/// One line a person reads after a backup or a restore.
pub fn summary(path: &Path, bytes: u64, a: &Audited) -> String {
    format!(
        "{}: {bytes} bytes; {} wallets replay to their balance (together {}), {} ledger entries, {} holds open (a broker opening it releases them)\n",
        path.display(),
        a.wallets,
        a.balances,
        a.entries,
        a.open_holds
    )
}

fn partial(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Downloads into `<file>.part`, makes it durable, checks it, then renames
/// it to `file`; on any failure the partial file is removed.
pub fn run(client: &Client, file: &Path) -> Result<String, CliError> {
    if file.exists() {
        return Err(CliError::Usage(format!(
            "{} exists: name a new file (a backup never overwrites one)",
            file.display()
        )));
    }
    let part = partial(file);
    let io = |e: std::io::Error| CliError::Usage(format!("{}: {e}", part.display()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part)
        .map_err(io)?;
    let done = (|| {
        let bytes = client.download("/api/backup", &mut out)?;
        out.flush().map_err(io)?;
        out.sync_all().map_err(io)?;
        drop(out);
        let audited = check(&part).map_err(CliError::Usage)?;
        std::fs::rename(&part, file).map_err(io)?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(summary(file, bytes, &audited))
    })();
    if done.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    done
}
