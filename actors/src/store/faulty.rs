//! Storage faults for tests (compiled only into test builds and the
//! `failpoints` feature): redb backends whose writes and syncs fail, or
//! whose process stops, at a chosen point, and one that loses what was not
//! synced when it "crashes". The fault tests run a workload against them and
//! check that what was acknowledged is exactly what a restart finds.

use std::fs::File;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// What happens at the chosen write or sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// It and every later one return an I/O error.
    Fail,
    /// The process ends there, before it is done (as a power cut would;
    /// what was written before is in the file).
    Stop,
}

/// The exit code of a process stopped by [`FaultMode::Stop`].
pub const STOPPED_EXIT_CODE: i32 = 86;

/// A fault plan read from `fail:N` or `stop:N`: the N-th write or sync
/// (counted from 1) is the fault.
pub fn parse_plan(spec: &str) -> Option<(FaultMode, u64)> {
    let (mode, n) = spec.split_once(':')?;
    let mode = match mode {
        "fail" => FaultMode::Fail,
        "stop" => FaultMode::Stop,
        _ => return None,
    };
    Some((mode, n.parse().ok().filter(|n| *n > 0)?))
}

/// Writes and syncs made through [`FaultyFile`]s in this process: one
/// count across every file the process opens (the data file is made under
/// a temporary name, then opened again).
static DONE: AtomicU64 = AtomicU64::new(0);

/// A file backend that counts writes and syncs and faults at the N-th.
#[derive(Debug)]
pub struct FaultyFile {
    inner: FileBackend,
    at: u64,
    mode: FaultMode,
}

impl FaultyFile {
    pub fn new(file: File, mode: FaultMode, at: u64) -> Result<FaultyFile, redb::DatabaseError> {
        Ok(FaultyFile {
            inner: FileBackend::new(file)?,
            at,
            mode,
        })
    }

    fn tick(&self) -> Result<(), std::io::Error> {
        let n = DONE.fetch_add(1, Ordering::SeqCst) + 1;
        if n < self.at {
            return Ok(());
        }
        match self.mode {
            FaultMode::Fail => Err(std::io::Error::other(format!(
                "injected storage fault at write or sync {}",
                self.at
            ))),
            FaultMode::Stop => {
                eprintln!("oneflow: injected stop at storage write or sync {n}");
                std::process::exit(STOPPED_EXIT_CODE)
            }
        }
    }
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.tick()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.tick()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.tick()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// A disk in memory that survives its database: open a store on
/// [`MemDisk::backend`], drop it, [`MemDisk::crash`], open again. A crash
/// loses every write since the last sync (an undo log puts the old bytes
/// back), as a power cut loses what was only in the page cache.
#[derive(Clone, Debug, Default)]
pub struct MemDisk(Arc<Mutex<Disk>>);

#[derive(Debug, Default)]
struct Disk {
    bytes: Vec<u8>,
    /// (offset, the bytes there before) of each write since the last sync,
    /// and the length before the first change.
    undo: Vec<(u64, Vec<u8>)>,
    synced_len: Option<u64>,
    /// Writes and syncs so far, and the one (if any) that fails.
    done: u64,
    fail_at: Option<u64>,
}

impl MemDisk {
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A backend over this disk for one database.
    pub fn backend(&self) -> MemBackend {
        MemBackend(self.clone())
    }

    /// Writes and syncs after `n` more fail (and every one after them).
    pub fn fail_after(&self, n: u64) {
        let mut d = self.disk();
        d.fail_at = Some(d.done + n + 1);
    }

    /// Loses what was written since the last sync, and clears any fault.
    pub fn crash(&self) {
        let mut d = self.disk();
        while let Some((offset, old)) = d.undo.pop() {
            let at = offset as usize;
            if d.bytes.len() < at + old.len() {
                d.bytes.resize(at + old.len(), 0);
            }
            d.bytes[at..at + old.len()].copy_from_slice(&old);
        }
        if let Some(len) = d.synced_len.take() {
            d.bytes.resize(len as usize, 0);
        }
        d.fail_at = None;
    }
}

/// One database's handle on a [`MemDisk`].
#[derive(Debug)]
pub struct MemBackend(MemDisk);

impl Disk {
    fn tick(&mut self) -> Result<(), std::io::Error> {
        self.done += 1;
        match self.fail_at {
            Some(at) if self.done >= at => Err(std::io::Error::other("injected storage fault")),
            _ => Ok(()),
        }
    }

    fn remember_len(&mut self) {
        if self.synced_len.is_none() {
            self.synced_len = Some(self.bytes.len() as u64);
        }
    }
}

impl StorageBackend for MemBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.0.disk().bytes.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let d = self.0.disk();
        let at = offset as usize;
        let src = d
            .bytes
            .get(at..at + out.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut d = self.0.disk();
        d.tick()?;
        d.remember_len();
        let old = d.bytes.len() as u64;
        if len < old {
            // Shrinking drops bytes a crash must give back.
            let cut = d.bytes[len as usize..].to_vec();
            d.undo.push((len, cut));
        }
        d.bytes.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut d = self.0.disk();
        d.tick()?;
        d.undo.clear();
        d.synced_len = None;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut d = self.0.disk();
        d.tick()?;
        d.remember_len();
        let at = offset as usize;
        if d.bytes.len() < at + data.len() {
            d.bytes.resize(at + data.len(), 0);
        }
        let old = d.bytes[at..at + data.len()].to_vec();
        d.undo.push((offset, old));
        d.bytes[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
}
