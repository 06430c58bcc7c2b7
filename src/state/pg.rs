//! The postgres backend: state shared by a team in one database, per stack and environment.
//!
//! `cairn_state` holds a snapshot and the serial; `cairn_state_history` every batch written
//! (the journal, kept as history); reading is the snapshot plus the batches after it, in one
//! consistent read. The lock is a session advisory lock (released by the server when the
//! holder's connection ends, so a killed apply never leaves the state locked) plus a row in
//! `cairn_locks` naming the holder, shown to whoever waits; a row left behind means the holder
//! died. Every write is one transaction that checks the serial (and, for an enforce replica,
//! that its lease's fencing token is still current), so a write either happened whole or not.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio_postgres::types::Json;
use tokio_postgres::{Client, Config, GenericClient};

use super::{
    HistoryEntry, Journaled, LockError, LockHolder, LockStatus, Open, State, StateError, StateOp,
};

/// The environment variables a connection string is taken from, in order, when the
/// configuration names none.
pub const URL_VARS: [&str; 2] = ["CAIRN_PG_URL", "DATABASE_URL"];

/// How to reach the database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Db {
    /// From `[backend] url`; `None`: from `CAIRN_PG_URL` or `DATABASE_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// CA certificate(s) the server's certificate must chain to (`[backend] ca_file`,
    /// `sslrootcert=` in the URL, or `PGSSLROOTCERT`); otherwise the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn pg_err(what: &str) -> impl Fn(tokio_postgres::Error) -> StateError + '_ {
    move |e| {
        // The server's own message says most (e.g. authentication failed for user ...).
        let detail = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                let mut s = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(inner) = src {
                    s = format!("{s}: {inner}");
                    src = inner.source();
                }
                s
            }
        };
        StateError::Postgres(format!("{what}: {detail}"))
    }
}

impl Db {
    /// The connection string: configured, or from the environment.
    pub fn resolve_url(&self) -> Result<String, StateError> {
        if let Some(u) = &self.url {
            return Ok(u.clone());
        }
        URL_VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
            .ok_or_else(|| {
                StateError::Postgres(
                    "no connection string: set [backend] url, or CAIRN_PG_URL (or DATABASE_URL)"
                        .into(),
                )
            })
    }

    /// Connects (TLS unless `sslmode=disable`), names the session after `application`, and
    /// makes sure cairn's tables exist.
    pub async fn connect(&self, application: &str) -> Result<Client, StateError> {
        let url = self.resolve_url()?;
        let (rest, url_ca) = split_sslrootcert(&url);
        let mut config = Config::from_str(&rest).map_err(|e| {
            StateError::Postgres(format!("the connection string is not valid: {e}"))
        })?;
        if config.get_application_name().is_none() {
            config.application_name(application);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A dead server or a cut network is noticed in seconds, not hours.
        config.keepalives_idle(Duration::from_secs(5));
        let ca = self
            .ca_file
            .clone()
            .or(url_ca)
            .or_else(|| std::env::var_os("PGSSLROOTCERT").map(PathBuf::from));
        let client = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(pg_err("cannot connect"))?;
            tokio::spawn(drive(conn));
            client
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca.as_ref())?);
            let (client, conn) = config
                .connect(tls)
                .await
                .map_err(pg_err("cannot connect"))?;
            tokio::spawn(drive(conn));
            client
        };
        ensure_schema(&client).await?;
        Ok(client)
    }
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(conn: F) {
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "postgres connection ended");
    }
}

/// `sslrootcert` is libpq's; tokio-postgres does not know it, so it is taken out here.
fn split_sslrootcert(url: &str) -> (String, Option<PathBuf>) {
    let mut ca = None;
    if let Some((base, query)) = url.split_once('?') {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix("sslrootcert=") {
                Some(p) => {
                    ca = Some(PathBuf::from(p));
                    false
                }
                None => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, ca);
    }
    if url.contains("://") {
        return (url.to_string(), None);
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|kv| match kv.strip_prefix("sslrootcert=") {
            Some(p) => {
                ca = Some(PathBuf::from(p));
                false
            }
            None => true,
        })
        .collect();
    (kept.join(" "), ca)
}

/// Verifies the server against the CA file, or the system's roots.
fn tls_config(ca: Option<&PathBuf>) -> Result<rustls::ClientConfig, StateError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                StateError::Postgres(format!("cannot read the CA file `{}`: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    StateError::Postgres(format!(
                        "the CA file `{}` is not PEM certificates: {e}",
                        path.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    StateError::Postgres(format!("bad CA certificate in `{}`: {e}", path.display()))
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StateError::Postgres(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// cairn's tables, created once (concurrent first runs are serialized by a lock).
const SCHEMA: &str = "
SET client_min_messages = warning;
BEGIN;
SELECT pg_advisory_xact_lock(7262011010);
CREATE TABLE IF NOT EXISTS cairn_state (
    stack text NOT NULL,
    environment text NOT NULL,
    serial bigint NOT NULL DEFAULT 0,
    snapshot jsonb NOT NULL,
    snapshot_serial bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stack, environment)
);
CREATE TABLE IF NOT EXISTS cairn_state_history (
    stack text NOT NULL,
    environment text NOT NULL,
    serial bigint NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    written_by jsonb,
    fence bigint,
    ops jsonb,
    note text,
    PRIMARY KEY (stack, environment, serial)
);
CREATE TABLE IF NOT EXISTS cairn_locks (
    stack text NOT NULL,
    environment text NOT NULL,
    holder jsonb NOT NULL,
    backend_pid integer NOT NULL,
    fence bigint,
    PRIMARY KEY (stack, environment)
);
-- The holder whose row a new holder found left behind (tables made before it lack it).
ALTER TABLE cairn_locks ADD COLUMN IF NOT EXISTS interrupted jsonb;
CREATE TABLE IF NOT EXISTS cairn_leases (
    stack text NOT NULL,
    environment text NOT NULL,
    holder text NOT NULL,
    holder_info jsonb NOT NULL,
    token bigint NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (stack, environment)
);
CREATE TABLE IF NOT EXISTS cairn_replicas (
    id text PRIMARY KEY,
    info jsonb NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
COMMIT;
SET client_min_messages = notice;
";

async fn ensure_schema(client: &Client) -> Result<(), StateError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                            WHERE table_name = 'cairn_locks' AND column_name = 'interrupted'
                            AND table_schema = current_schema())",
            &[],
        )
        .await
        .map_err(pg_err("cannot read cairn's tables"))?
        .get(0);
    if !exists {
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(pg_err("cannot create cairn's tables"))?;
    }
    Ok(())
}

/// The advisory lock of one stack's state: 64 bits of a digest of its name.
fn lock_key(stack: &str, environment: &str) -> i64 {
    let d = sha2::Sha256::digest(format!("cairn state\0{stack}\0{environment}"));
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

fn holder_from(v: Option<Json<LockHolder>>) -> Option<LockHolder> {
    v.map(|Json(h)| h)
}

fn millis_to_ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Locked state in the database. The connection is the lock: it is not re-established, so
/// a connection lost mid-apply fails the apply (what completed before is in the state).
pub struct PgState {
    client: Option<Client>,
    stack: String,
    environment: String,
    state: State,
    serial: u64,
    fence: Option<i64>,
    holder: LockHolder,
    interrupted: Option<LockHolder>,
}

impl PgState {
    pub async fn open_locked(
        db: &Db,
        stack: &str,
        environment: &str,
        how: Open<'_>,
    ) -> Result<PgState, StateError> {
        let client = db.connect(how.command).await?;
        if how.fence.is_some() {
            // A replica paused in the middle of a write holds the lease row (the fencing
            // check locks it) and would stall the takeover: the server ends a session that
            // sits in a transaction this long. cairn's writes never wait inside one.
            client
                .batch_execute("SET idle_in_transaction_session_timeout = '1s'")
                .await
                .map_err(pg_err("cannot set up the session"))?;
        }
        let key = lock_key(stack, environment);
        let empty = Json(State::default());
        client
            .execute(
                "INSERT INTO cairn_state (stack, environment, snapshot) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&stack, &environment, &empty],
            )
            .await
            .map_err(pg_err("cannot create the stack's state"))?;
        let start = Instant::now();
        let mut holder = LockHolder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            command: how.command.to_string(),
            since: jiff::Timestamp::now(),
        };
        let interrupted = loop {
            // The lock and the row naming its holder are taken in one statement: a holder
            // paused between the two (a replica stopped past its lease) would hold the lock
            // with no row saying whose it is, and no later leader could end its session. A
            // row already there was left by a holder that died: its run was interrupted.
            holder.since = jiff::Timestamp::now();
            let taken = client
                .query_opt(
                    "INSERT INTO cairn_locks (stack, environment, holder, backend_pid, fence)
                     SELECT $2, $3, $4, pg_backend_pid(), $5 WHERE pg_try_advisory_lock($1)
                     ON CONFLICT (stack, environment) DO UPDATE
                     SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid,
                         fence = EXCLUDED.fence, interrupted = cairn_locks.holder
                     RETURNING interrupted",
                    &[&key, &stack, &environment, &Json(&holder), &how.fence],
                )
                .await
                .map_err(pg_err("cannot take the state lock"))?;
            if let Some(row) = taken {
                break holder_from(row.get(0));
            }
            let row = client
                .query_opt(
                    "SELECT holder, backend_pid, fence FROM cairn_locks
                     WHERE stack = $1 AND environment = $2",
                    &[&stack, &environment],
                )
                .await
                .map_err(pg_err("cannot read the state lock"))?;
            let holder: Option<(LockHolder, i32, Option<i64>)> =
                row.map(|r| (r.get::<_, Json<LockHolder>>(0).0, r.get(1), r.get(2)));
            // A former leader of this stack (a replica paused past its lease) holds the lock:
            // its writes are refused by fencing already; its session is ended so the lock
            // is free for the current leader.
            if let (Some(mine), Some((_, pid, Some(theirs)))) = (how.fence, &holder)
                && *theirs < mine
                && lease_is_current(&client, stack, environment, mine).await?
            {
                tracing::warn!(
                    pid,
                    fence = theirs,
                    "ending the session of a former leader that still holds the state lock"
                );
                client
                    .execute("SELECT pg_terminate_backend($1)", &[pid])
                    .await
                    .map_err(pg_err("cannot end the former leader's session"))?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            if start.elapsed() >= how.lock_timeout {
                let waited = (!how.lock_timeout.is_zero()).then_some(how.lock_timeout);
                return Err(match holder {
                    Some((h, _, _)) => LockError::Held {
                        holder: Box::new(h),
                        waited,
                    },
                    None => LockError::HeldUnknown,
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (state, serial) = read_with(&client, stack, environment).await?;
        Ok(PgState {
            client: Some(client),
            stack: stack.into(),
            environment: environment.into(),
            state,
            serial,
            fence: how.fence,
            holder,
            interrupted,
        })
    }

    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("open until unlocked")
    }

    /// One transaction: fencing check, serial bump from the expected value, history row,
    /// and whatever `extra` does.
    async fn commit(
        &mut self,
        ops: Option<&[StateOp]>,
        replace: Option<(&State, u64)>,
        note: Option<&str>,
    ) -> Result<u64, StateError> {
        let (stack, env) = (self.stack.clone(), self.environment.clone());
        let (fence, serial, holder) = (self.fence, self.serial as i64, Json(self.holder.clone()));
        let tx = self
            .client()
            .transaction()
            .await
            .map_err(pg_err("cannot write the state"))?;
        if let Some(token) = fence {
            let current = tx
                .query_opt(
                    "SELECT 1 FROM cairn_leases WHERE stack = $1 AND environment = $2
                     AND token = $3 AND expires_at > now() FOR SHARE",
                    &[&stack, &env, &token],
                )
                .await
                .map_err(pg_err("cannot check the lease"))?;
            if current.is_none() {
                return Err(StateError::Fenced { token });
            }
        }
        let next: i64 = match replace {
            None => {
                let row = tx
                    .query_opt(
                        "UPDATE cairn_state SET serial = serial + 1, updated_at = now()
                         WHERE stack = $1 AND environment = $2 AND serial = $3 RETURNING serial",
                        &[&stack, &env, &serial],
                    )
                    .await
                    .map_err(pg_err("cannot write the state"))?;
                match row {
                    Some(r) => r.get(0),
                    None => {
                        let found = current_serial(&tx, &stack, &env).await?;
                        return Err(StateError::Conflict {
                            expected: serial as u64,
                            found,
                        });
                    }
                }
            }
            Some((state, to)) => {
                let to = to as i64;
                tx.execute(
                    "DELETE FROM cairn_state_history WHERE stack = $1 AND environment = $2",
                    &[&stack, &env],
                )
                .await
                .map_err(pg_err("cannot write the state"))?;
                tx.execute(
                    "UPDATE cairn_state SET serial = $3, snapshot = $4, snapshot_serial = $3,
                     updated_at = now() WHERE stack = $1 AND environment = $2",
                    &[&stack, &env, &to, &Json(state)],
                )
                .await
                .map_err(pg_err("cannot write the state"))?;
                to
            }
        };
        tx.execute(
            "INSERT INTO cairn_state_history
             (stack, environment, serial, written_by, fence, ops, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&stack, &env, &next, &holder, &fence, &ops.map(Json), &note],
        )
        .await
        .map_err(pg_err("cannot write the state history"))?;
        tx.commit()
            .await
            .map_err(pg_err("cannot commit the state write"))?;
        Ok(next as u64)
    }
}

async fn current_serial(c: &impl GenericClient, stack: &str, env: &str) -> Result<u64, StateError> {
    let r = c
        .query_one(
            "SELECT serial FROM cairn_state WHERE stack = $1 AND environment = $2",
            &[&stack, &env],
        )
        .await
        .map_err(pg_err("cannot read the state"))?;
    Ok(r.get::<_, i64>(0) as u64)
}

async fn lease_is_current(
    client: &Client,
    stack: &str,
    env: &str,
    token: i64,
) -> Result<bool, StateError> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM cairn_leases WHERE stack = $1 AND environment = $2
             AND token = $3 AND expires_at > now()",
            &[&stack, &env, &token],
        )
        .await
        .map_err(pg_err("cannot check the lease"))?
        .is_some())
}

#[async_trait::async_trait]
impl super::StateStore for PgState {
    fn state(&self) -> &State {
        &self.state
    }
    fn serial(&self) -> u64 {
        self.serial
    }
    fn interrupted(&self) -> Option<&LockHolder> {
        self.interrupted.as_ref()
    }

    async fn write(&mut self, ops: Vec<StateOp>) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.serial = self.commit(Some(&ops), None, None).await?;
        for op in &ops {
            self.state.apply(op);
        }
        Ok(())
    }

    async fn compact(&mut self) -> Result<(), StateError> {
        let (stack, env) = (self.stack.clone(), self.environment.clone());
        let (serial, snapshot) = (self.serial as i64, Json(self.state.clone()));
        let fence = self.fence;
        let tx = self
            .client()
            .transaction()
            .await
            .map_err(pg_err("cannot write the state"))?;
        if let Some(token) = fence {
            let current = tx
                .query_opt(
                    "SELECT 1 FROM cairn_leases WHERE stack = $1 AND environment = $2
                     AND token = $3 AND expires_at > now() FOR SHARE",
                    &[&stack, &env, &token],
                )
                .await
                .map_err(pg_err("cannot check the lease"))?;
            if current.is_none() {
                return Err(StateError::Fenced { token });
            }
        }
        tx.execute(
            "UPDATE cairn_state SET snapshot = $3, snapshot_serial = $4
             WHERE stack = $1 AND environment = $2 AND serial = $4",
            &[&stack, &env, &snapshot, &serial],
        )
        .await
        .map_err(pg_err("cannot write the state snapshot"))?;
        tx.commit()
            .await
            .map_err(pg_err("cannot commit the state snapshot"))
    }

    async fn replace(&mut self, state: State, serial: u64) -> Result<(), StateError> {
        let note = format!("replaced by `{}`", self.holder.command);
        self.serial = self
            .commit(None, Some((&state, serial)), Some(&note))
            .await?;
        self.state = state;
        Ok(())
    }

    async fn confirm_fence(&self) -> Result<(), StateError> {
        let (Some(token), Some(client)) = (self.fence, self.client.as_ref()) else {
            return Ok(());
        };
        if lease_is_current(client, &self.stack, &self.environment, token).await? {
            Ok(())
        } else {
            Err(StateError::Fenced { token })
        }
    }

    async fn unlock(mut self: Box<Self>) {
        if let Some(client) = self.client.take() {
            release(client, &self.stack, &self.environment).await;
        }
    }
}

async fn release(client: Client, stack: &str, env: &str) {
    let key = lock_key(stack, env);
    // One statement, so the lock is never held without its row (see `open_locked`). A
    // waiter's insert waits for this delete to commit, so it never reads it as interrupted.
    let _ = client
        .execute(
            "WITH mine AS (DELETE FROM cairn_locks WHERE stack = $2 AND environment = $3
                           AND backend_pid = pg_backend_pid())
             SELECT pg_advisory_unlock($1)",
            &[&key, &stack, &env],
        )
        .await;
}

impl Drop for PgState {
    fn drop(&mut self) {
        // Not unlocked explicitly (an error path): release in the background. If the
        // process ends first, the server releases the lock and the row reads as interrupted.
        if let (Some(client), Ok(rt)) = (self.client.take(), tokio::runtime::Handle::try_current())
        {
            let (stack, env) = (self.stack.clone(), self.environment.clone());
            rt.spawn(async move { release(client, &stack, &env).await });
        }
    }
}

async fn read_with(client: &Client, stack: &str, env: &str) -> Result<(State, u64), StateError> {
    let row = client
        .query_opt(
            "SELECT snapshot, snapshot_serial, serial FROM cairn_state
             WHERE stack = $1 AND environment = $2",
            &[&stack, &env],
        )
        .await
        .map_err(pg_err("cannot read the state"))?;
    let Some(row) = row else {
        return Ok((State::default(), 0));
    };
    let Json(mut state): Json<State> = row.get(0);
    let (snapshot_serial, serial): (i64, i64) = (row.get(1), row.get(2));
    let rows = client
        .query(
            "SELECT ops FROM cairn_state_history
             WHERE stack = $1 AND environment = $2 AND serial > $3 AND serial <= $4
             AND ops IS NOT NULL ORDER BY serial",
            &[&stack, &env, &snapshot_serial, &serial],
        )
        .await
        .map_err(pg_err("cannot read the state history"))?;
    for r in rows {
        let Json(ops): Json<Vec<StateOp>> = r.get(0);
        for op in &ops {
            state.apply(op);
        }
    }
    Ok((state, serial as u64))
}

/// Reads without the lock, in one snapshot of the database.
pub async fn read(db: &Db, stack: &str, env: &str) -> Result<(State, u64), StateError> {
    let mut client = db.connect("cairn (read)").await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_err("cannot read the state"))?;
    let out = read_with(tx.client(), stack, env).await;
    let _ = tx.commit().await;
    out
}

/// Whether the lock is held, read from `pg_locks` (trying it would hold it for a moment, and
/// a writer trying at that moment would be refused).
pub async fn lock_status(db: &Db, stack: &str, env: &str) -> Result<LockStatus, StateError> {
    let client = db.connect("cairn state unlock").await?;
    let key = lock_key(stack, env);
    let (hi, lo) = ((key as u64 >> 32) as i64, (key as u64 & 0xffff_ffff) as i64);
    let held: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1)",
            &[&hi, &lo],
        )
        .await
        .map_err(pg_err("cannot check the state lock"))?
        .get(0);
    let holder: Option<LockHolder> = client
        .query_opt(
            "SELECT holder FROM cairn_locks WHERE stack = $1 AND environment = $2",
            &[&stack, &env],
        )
        .await
        .map_err(pg_err("cannot read the state lock"))?
        .and_then(|r| holder_from(r.get(0)));
    Ok(match (held, holder) {
        (true, Some(h)) => LockStatus::Held(h),
        (true, None) => LockStatus::HeldUnknown,
        (false, Some(h)) => LockStatus::Stale(h),
        (false, None) => LockStatus::Free,
    })
}

pub async fn clear_stale(
    db: &Db,
    stack: &str,
    env: &str,
) -> Result<Option<LockHolder>, StateError> {
    let client = db.connect("cairn state unlock").await?;
    let key = lock_key(stack, env);
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(pg_err("cannot check the state lock"))?
        .get(0);
    if !got {
        return Ok(None);
    }
    let stale = client
        .query_opt(
            "DELETE FROM cairn_locks WHERE stack = $1 AND environment = $2 RETURNING holder",
            &[&stack, &env],
        )
        .await
        .map_err(pg_err("cannot clear the state lock"))?
        .and_then(|r| holder_from(r.get(0)));
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await;
    Ok(stale)
}

pub async fn history(
    db: &Db,
    stack: &str,
    env: &str,
    limit: i64,
) -> Result<Vec<HistoryEntry>, StateError> {
    let client = db.connect("cairn state history").await?;
    let rows = client
        .query(
            "SELECT serial, (extract(epoch FROM written_at) * 1000)::bigint, written_by, fence,
                    ops, note
             FROM cairn_state_history WHERE stack = $1 AND environment = $2
             ORDER BY serial DESC LIMIT $3",
            &[&stack, &env, &limit],
        )
        .await
        .map_err(pg_err("cannot read the state history"))?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryEntry {
            serial: r.get::<_, i64>(0) as u64,
            at: millis_to_ts(r.get(1)),
            by: holder_from(r.get(2)),
            fence: r.get(3),
            ops: r.get::<_, Option<Json<Vec<StateOp>>>>(4).map(|Json(o)| o),
            note: r.get(5),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_taken_out_of_both_forms() {
        let (rest, ca) = split_sslrootcert(
            "postgres://u@db:5432/cairn?sslmode=require&sslrootcert=/etc/ca.pem&connect_timeout=3",
        );
        assert_eq!(
            rest,
            "postgres://u@db:5432/cairn?sslmode=require&connect_timeout=3"
        );
        assert_eq!(ca, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, ca) = split_sslrootcert("host=db sslrootcert=/ca.pem dbname=cairn");
        assert_eq!(rest, "host=db dbname=cairn");
        assert_eq!(ca, Some(PathBuf::from("/ca.pem")));
        let (rest, ca) = split_sslrootcert("postgres://db/cairn");
        assert_eq!((rest.as_str(), ca), ("postgres://db/cairn", None));
    }
}
