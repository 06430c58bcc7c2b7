//! The state lock: an OS file lock (released by the kernel if the holder dies, so a crashed
//! apply never leaves the state locked) plus a record of who holds it, shown to whoever waits.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use std::fs::TryLockError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: jiff::Timestamp,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {} on {}, since {})",
            self.command,
            self.pid,
            self.host,
            self.since.strftime("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the state is locked by {holder}")]
    Held {
        holder: Box<LockHolder>,
        waited: Option<Duration>,
    },
    #[error("the state is locked by another process")]
    HeldUnknown,
    #[error("cannot open the state lock `{0}`: {1}")]
    Io(PathBuf, #[source] io::Error),
}

/// Holds the lock until dropped.
pub struct StateLock {
    file: File,
    /// The record of a previous holder that died while holding the lock, if any: its run
    /// was interrupted (what it completed is in the state).
    pub interrupted: Option<LockHolder>,
}

const LOCK_FILE: &str = "lock";

impl StateLock {
    pub fn acquire(dir: &Path, command: &str, timeout: Duration) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |e| LockError::Io(path.clone(), e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        let waited = (!timeout.is_zero()).then_some(timeout);
                        return Err(match read_holder(&mut file) {
                            Some(holder) => LockError::Held {
                                holder: Box::new(holder),
                                waited,
                            },
                            None => LockError::HeldUnknown,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
            }
        }
        let interrupted = read_holder(&mut file);
        let holder = LockHolder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            command: command.to_string(),
            since: jiff::Timestamp::now(),
        };
        let body = serde_json::to_vec_pretty(&holder)
            .map_err(io::Error::other)
            .map_err(io_err)?;
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        file.write_all(&body).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        Ok(StateLock { file, interrupted })
    }

    /// Whether the lock at `dir` is free, held, or free with a record left by a holder that
    /// died (the OS released its lock; only the record remains).
    pub fn status(dir: &Path) -> io::Result<LockStatus> {
        let path = dir.join(LOCK_FILE);
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LockStatus::Free),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {
                let stale = read_holder(&mut file);
                file.unlock()?;
                Ok(stale.map_or(LockStatus::Free, LockStatus::Stale))
            }
            Err(TryLockError::WouldBlock) => {
                Ok(read_holder(&mut file).map_or(LockStatus::HeldUnknown, LockStatus::Held))
            }
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Removes a record left by a holder that died. Returns it, or `None` if there was none.
    pub fn clear_stale(dir: &Path) -> io::Result<Option<LockHolder>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        if file.try_lock().is_err() {
            return Ok(None);
        }
        let stale = read_holder(&mut file);
        file.set_len(0)?;
        file.sync_data()?;
        file.unlock()?;
        Ok(stale)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LockStatus {
    Free,
    Held(LockHolder),
    HeldUnknown,
    /// Free, but the previous holder ended without releasing it (killed or crashed).
    Stale(LockHolder),
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Clear the holder record first so a reader never sees a released lock as held.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}
