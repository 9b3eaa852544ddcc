//! A backup of the running broker's store: a consistent copy made while
//! requests go on (`store/backup.rs`), handed to the caller as an open
//! file whose name is already gone, so nothing is left on disk whether the
//! download finishes or not.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::BrokerError;
use crate::store::backup::Copy;

use super::{Services, blocking};

/// Whether a backup is being made: one at a time, because each holds a
/// read snapshot open (pages the writer frees meanwhile are kept) and
/// writes a whole copy of the file.
#[derive(Default)]
pub(crate) struct Running(Arc<AtomicBool>);

/// A finished copy, ready to be read from its start.
pub struct Backup {
    pub file: std::fs::File,
    /// The copy's size in bytes.
    pub bytes: u64,
    pub copy: Copy,
}

/// Clears the running flag however the backup ends: it goes with the copy
/// onto the blocking pool, so a caller that gives up does not free the
/// turn while the copy is still being written.
struct Turn(Arc<AtomicBool>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Makes a copy of the store beside its file (same disk, so no copy
/// crosses file systems), opens it and removes its name.
pub async fn make(s: &Services) -> Result<Backup, BrokerError> {
    if s.shared.is_some() {
        return Err(BrokerError::Conflict(
            "this broker keeps its ledger in PostgreSQL: back the database up with its own tools (pg_dump)".into(),
        ));
    }
    if s.backups.0.swap(true, Ordering::AcqRel) {
        return Err(BrokerError::Conflict(
            "a backup is being made; retry when it has finished".into(),
        ));
    }
    let turn = Turn(s.backups.0.clone());
    let store = s.store.clone();
    let dest: PathBuf = PathBuf::from(&s.config.server.data_dir).join(format!(
        ".backup-{}-{:016x}.redb",
        std::process::id(),
        rand_part()
    ));
    blocking(move || {
        let _turn = turn;
        let copy = store.backup(&dest)?.ok_or_else(|| {
            crate::store::StoreError::Backend("this store makes no backups".into())
        })?;
        let opened = std::fs::File::open(&dest).and_then(|f| {
            let bytes = f.metadata()?.len();
            Ok((f, bytes))
        });
        // The open file keeps the copy readable; the name can go now.
        let _ = std::fs::remove_file(&dest);
        let (file, bytes) = opened
            .map_err(|e| crate::store::StoreError::Backend(format!("{}: {e}", dest.display())))?;
        Ok(Backup { file, bytes, copy })
    })
    .await
}

/// Enough randomness that two processes on one directory never pick the
/// same temporary name.
fn rand_part() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_or(0, |_| u64::from_le_bytes(b))
}
