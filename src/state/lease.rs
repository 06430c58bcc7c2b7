//! Leases for `cairn enforce` replicas sharing stacks through the postgres backend.
//!
//! One row per stack in `cairn_leases`: the replica holding it, until when (the database's
//! clock, so replicas' clocks do not matter), and a fencing token that grows by one at each
//! new holder. A replica leads a stack while its lease is current; it renews well before the
//! end. Every state write under a lease checks, in its own transaction, that the token is
//! still current (src/state/pg.rs), so a replica paused past its lease cannot write after
//! another took over. Replicas also heartbeat in `cairn_replicas`, which is how each knows how
//! many are alive and so its fair share of the stacks.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tokio_postgres::types::Json;

use super::StateError;
use super::pg::Db;

/// Who a replica is, as other replicas and `/status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Where its HTTP API answers.
    pub api: String,
}

/// A stack's lease as read from the database.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseInfo {
    pub stack: String,
    pub environment: String,
    pub holder: Replica,
    pub token: i64,
    /// Whether it is current (not yet expired).
    pub current: bool,
    pub acquired_at: jiff::Timestamp,
}

fn err(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError {
    move |e| StateError::Postgres(format!("{what}: {e}"))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One replica's connection for leases and heartbeats (reconnected by the caller on error).
pub struct Leases {
    client: Client,
    pub me: Replica,
}

impl Leases {
    pub async fn connect(db: &Db, me: Replica) -> Result<Leases, StateError> {
        let client = db.connect("cairn enforce (leases)").await?;
        Ok(Leases { client, me })
    }

    /// Records that this replica is alive; returns the ids of the replicas alive now
    /// (heartbeat within `ttl`), this one included.
    pub async fn heartbeat(&self, ttl: Duration) -> Result<Vec<String>, StateError> {
        self.client
            .execute(
                "INSERT INTO cairn_replicas (id, info, heartbeat_at) VALUES ($1, $2, now())
                 ON CONFLICT (id) DO UPDATE SET info = EXCLUDED.info, heartbeat_at = now()",
                &[&self.me.id, &Json(&self.me)],
            )
            .await
            .map_err(err("cannot record the heartbeat"))?;
        let rows = self
            .client
            .query(
                "SELECT id FROM cairn_replicas
                 WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY id",
                &[&secs(ttl)],
            )
            .await
            .map_err(err("cannot list replicas"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Takes the stack's lease if nobody holds a current one. Returns the new fencing token.
    pub async fn acquire(
        &self,
        stack: &str,
        env: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StateError> {
        let row = self
            .client
            .query_opt(
                "INSERT INTO cairn_leases AS l
                   (stack, environment, holder, holder_info, token, acquired_at, expires_at)
                 VALUES ($1, $2, $3, $4, 1, now(), now() + make_interval(secs => $5))
                 ON CONFLICT (stack, environment) DO UPDATE
                   SET holder = EXCLUDED.holder, holder_info = EXCLUDED.holder_info,
                       token = l.token + 1, acquired_at = now(), expires_at = EXCLUDED.expires_at
                   WHERE l.expires_at <= now()
                 RETURNING token",
                &[&stack, &env, &self.me.id, &Json(&self.me), &secs(ttl)],
            )
            .await
            .map_err(err("cannot take a lease"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Extends a lease still held under `token`. False: it was lost (expired, or taken).
    pub async fn renew(
        &self,
        stack: &str,
        env: &str,
        token: i64,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let n = self
            .client
            .execute(
                "UPDATE cairn_leases SET expires_at = now() + make_interval(secs => $5)
                 WHERE stack = $1 AND environment = $2 AND holder = $3 AND token = $4
                 AND expires_at > now()",
                &[&stack, &env, &self.me.id, &token, &secs(ttl)],
            )
            .await
            .map_err(err("cannot renew a lease"))?;
        Ok(n == 1)
    }

    /// Gives a lease up now, so another replica can take it at once.
    pub async fn release(&self, stack: &str, env: &str, token: i64) -> Result<(), StateError> {
        self.client
            .execute(
                "UPDATE cairn_leases SET expires_at = now()
                 WHERE stack = $1 AND environment = $2 AND token = $3 AND expires_at > now()",
                &[&stack, &env, &token],
            )
            .await
            .map_err(err("cannot release a lease"))?;
        Ok(())
    }

    /// The leases of these stacks (those ever taken).
    pub async fn read(&self, stacks: &[(String, String)]) -> Result<Vec<LeaseInfo>, StateError> {
        let (names, envs): (Vec<&str>, Vec<&str>) =
            stacks.iter().map(|(s, e)| (s.as_str(), e.as_str())).unzip();
        let rows = self
            .client
            .query(
                "SELECT l.stack, l.environment, l.holder_info, l.token, l.expires_at > now(),
                        (extract(epoch FROM l.acquired_at) * 1000)::bigint
                 FROM cairn_leases l
                 JOIN unnest($1::text[], $2::text[]) AS s(stack, environment)
                   ON s.stack = l.stack AND s.environment = l.environment",
                &[&names, &envs],
            )
            .await
            .map_err(err("cannot read leases"))?;
        Ok(rows
            .into_iter()
            .map(|r| LeaseInfo {
                stack: r.get(0),
                environment: r.get(1),
                holder: r.get::<_, Json<Replica>>(2).0,
                token: r.get(3),
                current: r.get(4),
                acquired_at: jiff::Timestamp::from_millisecond(r.get(5))
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            })
            .collect())
    }

    /// Removes this replica's heartbeat (a clean stop), so others rebalance at once.
    pub async fn leave(&self) {
        let _ = self
            .client
            .execute("DELETE FROM cairn_replicas WHERE id = $1", &[&self.me.id])
            .await;
    }
}
