//! Recorded state: which resources this stack owns, their provider IDs and last applied
//! attributes, with a lineage (identity of this state) and a serial (bumped per write).
//!
//! Backends implement locking with holder info; `local` keeps everything under `.cairn/`.

mod lock;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use lock::{LockError, LockHolder, LockStatus, StateLock};

use crate::journal::{Journal, Journaled};
use crate::model::{Address, Attrs, ProviderRef};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Identity of this state; also the ownership marker written on resources cairn creates.
    pub lineage: String,
    pub resources: BTreeMap<Address, StateResource>,
    /// Write-ahead intents: what an apply was about to create or change when it last wrote.
    /// A live resource equal to its intent is this stack's even where the cloud keeps no
    /// ownership marker (Route53 record sets), so an apply killed mid-batch converges.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<Address, Attrs>,
}

impl State {
    /// Whether `live` is this state's: recorded with that ID, or what an interrupted apply
    /// intended (`is_intended` compares the intent with what the cloud shows).
    pub fn owns(&self, address: &Address, id: &str, is_intended: impl Fn(&Attrs) -> bool) -> bool {
        self.resources.get(address).is_some_and(|r| r.id == id)
            || self.pending.get(address).is_some_and(is_intended)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateResource {
    pub provider: ProviderRef,
    /// The provider's identifier of the live object.
    pub id: String,
    /// Attributes as last applied or refreshed.
    pub attrs: Attrs,
    /// Recorded so deletions can run in reverse dependency order after the config is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Address>,
    /// Declared protected when last applied: deleting it after its declaration is removed
    /// is still a deletion of a protected resource.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateOp {
    Init {
        lineage: String,
    },
    Put {
        address: Address,
        resource: Box<StateResource>,
    },
    Remove {
        address: Address,
    },
    /// About to create or change these (see `State::pending`).
    Intend {
        changes: Vec<(Address, Attrs)>,
    },
    ClearPending,
}

impl Journaled for State {
    type Op = StateOp;
    fn apply(&mut self, op: &StateOp) {
        match op {
            StateOp::Init { lineage } => self.lineage = lineage.clone(),
            StateOp::Put { address, resource } => {
                self.pending.remove(address);
                self.resources.insert(address.clone(), (**resource).clone());
            }
            StateOp::Remove { address } => {
                self.pending.remove(address);
                self.resources.remove(address);
            }
            StateOp::Intend { changes } => self.pending.extend(changes.iter().cloned()),
            StateOp::ClearPending => self.pending.clear(),
        }
    }
}

/// The local backend: `.cairn/state/<environment>/` beside the stack.
pub struct LocalState {
    dir: PathBuf,
    journal: Journal<State>,
    /// Held while this handle may write.
    lock: StateLock,
}

const STEM: &str = "state";

impl LocalState {
    pub fn dir_for(backend_dir: &Path, environment: &str) -> PathBuf {
        backend_dir.join("state").join(environment)
    }

    /// Opens for writing: takes the lock (waiting up to `lock_timeout`), repairs torn writes.
    pub fn open_locked(
        dir: &Path,
        command: &str,
        lock_timeout: Duration,
    ) -> Result<Self, StateError> {
        let lock = Self::lock(dir, command, lock_timeout)?;
        Self::open_with(dir, lock)
    }

    /// Takes the lock only; `open_with` then reads the state (possibly on another thread).
    pub fn lock(
        dir: &Path,
        command: &str,
        lock_timeout: Duration,
    ) -> Result<StateLock, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::Io(dir.to_path_buf(), e))?;
        Ok(StateLock::acquire(dir, command, lock_timeout)?)
    }

    pub fn open_with(dir: &Path, lock: StateLock) -> Result<Self, StateError> {
        let journal =
            Journal::open(dir, STEM, true).map_err(|e| StateError::Io(dir.to_path_buf(), e))?;
        Ok(LocalState {
            dir: dir.to_path_buf(),
            journal,
            lock,
        })
    }

    /// Opens for reading only, without the lock (what `state list` and `show` use).
    pub fn open_read(dir: &Path) -> Result<State, StateError> {
        if !Journal::<State>::exists(dir, STEM) {
            return Ok(State::default());
        }
        let j: Journal<State> =
            Journal::open(dir, STEM, false).map_err(|e| StateError::Io(dir.to_path_buf(), e))?;
        Ok(j.value().clone())
    }

    pub fn state(&self) -> &State {
        self.journal.value()
    }

    pub fn serial(&self) -> u64 {
        self.journal.seq()
    }

    /// The previous holder of the lock, if it died holding it (its run was interrupted).
    pub fn interrupted(&self) -> Option<&LockHolder> {
        self.lock.interrupted.as_ref()
    }

    /// Persists one atomic batch of operations.
    pub fn write(&mut self, ops: Vec<StateOp>) -> Result<(), StateError> {
        self.journal
            .append(ops)
            .map_err(|e| StateError::Io(self.dir.clone(), e))
    }

    /// Folds the journal into the snapshot (keeping the previous one as a backup).
    pub fn compact(&mut self) -> Result<(), StateError> {
        self.journal
            .compact()
            .map_err(|e| StateError::Io(self.dir.clone(), e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("state at `{0}`: {1}")]
    Io(PathBuf, #[source] io::Error),
}
