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
        Ok(StateLock { file })
    }

    /// Who holds the lock at `dir` now, if anyone.
    pub fn holder(dir: &Path) -> io::Result<Option<LockHolder>> {
        let path = dir.join(LOCK_FILE);
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {
                file.unlock()?;
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => Ok(read_holder(&mut file)),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
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
