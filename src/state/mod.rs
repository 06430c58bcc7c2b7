//! Recorded state: which resources this stack owns, their provider IDs and last applied
//! attributes, with a lineage (identity of this state) and a serial (bumped per write).
//!
//! Two backends behind one `StateStore` trait: `local` keeps everything under `.cairn/`,
//! `postgres` keeps it in a shared database (src/state/pg.rs) for a team. Both lock with
//! holder info and write atomic batches of operations; plan, apply, enforce and the state
//! commands use whichever a stack's `[backend]` names, through `open_locked` and `read`.

pub mod lease;
mod lock;
pub mod pg;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use lock::{LockError, LockHolder, LockStatus, StateLock};

use crate::journal::{Journal, Journaled};
use crate::model::{Address, Attrs, ProviderRef};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
        Ok(Self::open_read_serial(dir)?.0)
    }

    pub fn open_read_serial(dir: &Path) -> Result<(State, u64), StateError> {
        if !Journal::<State>::exists(dir, STEM) {
            return Ok((State::default(), 0));
        }
        let j: Journal<State> =
            Journal::open(dir, STEM, false).map_err(|e| StateError::Io(dir.to_path_buf(), e))?;
        Ok((j.value().clone(), j.seq()))
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
    #[error("postgres state backend: {0}")]
    Postgres(String),
    /// A write by a replica whose lease was taken over: it no longer leads this stack.
    #[error(
        "write refused: fencing token {token} is no longer current for this stack (another replica took the lease)"
    )]
    Fenced { token: i64 },
    #[error("the state changed under this run (serial {expected} expected, {found} found)")]
    Conflict { expected: u64, found: u64 },
    #[error("{0}")]
    Unsupported(String),
}

/// Where a stack's state is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Location {
    Local {
        dir: PathBuf,
    },
    Postgres {
        #[serde(flatten)]
        db: pg::Db,
        stack: String,
        environment: String,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local { dir } => write!(f, "local `{}`", dir.display()),
            Location::Postgres {
                stack, environment, ..
            } => write!(f, "postgres `{stack}/{environment}`"),
        }
    }
}

/// Locked state, open for writing. Dropping it releases the lock; `unlock` does so and
/// waits for it (a postgres lock is released over the network).
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    fn state(&self) -> &State;
    /// Batches ever written (monotonic).
    fn serial(&self) -> u64;
    /// The previous holder of the lock, if it died holding it (its run was interrupted).
    fn interrupted(&self) -> Option<&LockHolder>;
    /// Persists one atomic batch of operations.
    async fn write(&mut self, ops: Vec<StateOp>) -> Result<(), StateError>;
    /// Folds what was written into a snapshot.
    async fn compact(&mut self) -> Result<(), StateError>;
    /// Replaces the whole state and its serial (`cairn state migrate`).
    async fn replace(&mut self, state: State, serial: u64) -> Result<(), StateError>;
    /// Whether this writer may still act on the clouds: for an enforce replica on the
    /// postgres backend, that its lease's fencing token is still current (writes check it
    /// anyway). Nothing to check elsewhere.
    async fn confirm_fence(&self) -> Result<(), StateError> {
        Ok(())
    }
    async fn unlock(self: Box<Self>);
}

#[async_trait::async_trait]
impl StateStore for LocalState {
    fn state(&self) -> &State {
        LocalState::state(self)
    }
    fn serial(&self) -> u64 {
        LocalState::serial(self)
    }
    fn interrupted(&self) -> Option<&LockHolder> {
        LocalState::interrupted(self)
    }
    async fn write(&mut self, ops: Vec<StateOp>) -> Result<(), StateError> {
        LocalState::write(self, ops)
    }
    async fn compact(&mut self) -> Result<(), StateError> {
        LocalState::compact(self)
    }
    async fn replace(&mut self, state: State, serial: u64) -> Result<(), StateError> {
        self.journal
            .replace(state, serial)
            .map_err(|e| StateError::Io(self.dir.clone(), e))
    }
    async fn unlock(self: Box<Self>) {}
}

/// How a state is opened for writing.
#[derive(Debug, Clone, Copy)]
pub struct Open<'a> {
    /// Who takes the lock, e.g. `cairn apply`.
    pub command: &'a str,
    pub lock_timeout: Duration,
    /// The fencing token of the lease under which an enforce replica writes (postgres): a
    /// write is refused once another replica holds a newer one.
    pub fence: Option<i64>,
}

/// Takes the lock (waiting up to `lock_timeout`) and reads the state.
pub async fn open_locked(
    location: &Location,
    how: Open<'_>,
) -> Result<Box<dyn StateStore>, StateError> {
    match location {
        Location::Local { dir } => {
            let (dir, command, timeout) = (dir.clone(), how.command.to_string(), how.lock_timeout);
            // Waiting for the lock and reading are blocking file I/O.
            let state = tokio::task::spawn_blocking(move || {
                LocalState::open_locked(&dir, &command, timeout)
            })
            .await
            .expect("the state reader panicked")?;
            Ok(Box::new(state))
        }
        Location::Postgres {
            db,
            stack,
            environment,
        } => Ok(Box::new(
            pg::PgState::open_locked(db, stack, environment, how).await?,
        )),
    }
}

/// Reads the state without the lock, with its serial.
pub async fn read(location: &Location) -> Result<(State, u64), StateError> {
    match location {
        Location::Local { dir } => LocalState::open_read_serial(dir),
        Location::Postgres {
            db,
            stack,
            environment,
        } => pg::read(db, stack, environment).await,
    }
}

pub async fn lock_status(location: &Location) -> Result<LockStatus, StateError> {
    match location {
        Location::Local { dir } => {
            StateLock::status(dir).map_err(|e| StateError::Io(dir.clone(), e))
        }
        Location::Postgres {
            db,
            stack,
            environment,
        } => pg::lock_status(db, stack, environment).await,
    }
}

/// Removes the record a holder that died left (`cairn state unlock`).
pub async fn clear_stale(location: &Location) -> Result<Option<LockHolder>, StateError> {
    match location {
        Location::Local { dir } => {
            StateLock::clear_stale(dir).map_err(|e| StateError::Io(dir.clone(), e))
        }
        Location::Postgres {
            db,
            stack,
            environment,
        } => pg::clear_stale(db, stack, environment).await,
    }
}

/// One batch of the postgres backend's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub serial: u64,
    pub at: jiff::Timestamp,
    /// Who wrote it (the lock holder).
    pub by: Option<LockHolder>,
    /// The fencing token it was written under (enforce replicas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fence: Option<i64>,
    /// Operations, or none for a batch that replaced the whole state.
    pub ops: Option<Vec<StateOp>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The last `limit` batches written, newest first. Only the postgres backend keeps them.
pub async fn history(location: &Location, limit: i64) -> Result<Vec<HistoryEntry>, StateError> {
    match location {
        Location::Local { .. } => Err(StateError::Unsupported(
            "the local backend keeps no history (its journal is folded into a snapshot after each apply); the postgres backend does".into(),
        )),
        Location::Postgres {
            db,
            stack,
            environment,
        } => pg::history(db, stack, environment, limit).await,
    }
}
