//! Replicas of `cairn enforce` sharing stacks through the postgres backend.
//!
//! Every replica is given the same stack directories. For each stack, exactly one replica
//! leads (runs its reconciler, probes, scaling) while it holds the stack's lease
//! (src/state/lease.rs); the others follow: they serve the read-only API and report who leads.
//! Each tick (a quarter of the lease) a replica heartbeats, renews what it leads, and takes
//! stacks whose lease ran out while it holds fewer than its fair share (stacks ÷ live
//! replicas, rounded up), or any stack left without a leader for two ticks. A replica above
//! its share (another joined) gives one stack up per tick. A leader that cannot renew for a
//! whole lease (its database connection is lost) stops leading before anyone can take over;
//! one paused past its lease is stopped by fencing: its writes carry a token the database
//! no longer accepts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::{Leading, Shared, lead};
use crate::config::Stack;
use crate::state::lease::{LeaseInfo, Leases, Replica};
use crate::state::pg::Db;

pub const LEADER: &str = "leader";
pub const FOLLOWER: &str = "follower";

#[derive(Debug, Clone)]
pub struct HaSettings {
    /// How long a lease lasts without renewal: the longest a stack goes unled after its
    /// leader dies (plus a quarter, the polling period).
    pub lease: Duration,
    /// This replica's name (default: HOST-PID).
    pub replica_id: Option<String>,
    /// The API address other replicas report for this one (default: http://LISTEN).
    pub advertise: Option<String>,
}

/// Who leads a stack, as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Leadership {
    /// This replica's role for the stack: `leader` or `follower`.
    pub role: &'static str,
    /// This replica.
    pub replica: String,
    /// The replica leading the stack, if one does.
    pub leader: Option<Replica>,
    /// The fencing token of the current lease.
    pub token: Option<i64>,
    /// When the current leader took the lease.
    pub since: Option<jiff::Timestamp>,
}

pub fn replica(settings: &HaSettings, bound: SocketAddr) -> Replica {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let pid = std::process::id();
    Replica {
        id: settings
            .replica_id
            .clone()
            .unwrap_or_else(|| format!("{host}-{pid}")),
        host,
        pid,
        api: settings
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{bound}")),
    }
}

/// The stacks one coordinator shares with other replicas (one database).
pub type Group = Vec<(Arc<Shared>, Stack)>;

/// One stack as a coordinator sees it.
struct Member {
    shared: Arc<Shared>,
    stack: Stack,
    key: (String, String),
    /// This replica's rank for the stack: replicas prefer different stacks, so a fleet
    /// starting together spreads at once.
    rank: u64,
    leading: Option<(Leading, i64, Instant)>,
    leaderless_since: Option<Instant>,
    /// When this replica last handed the stack over: not taken back at once, so the
    /// replica it was meant for gets it.
    released_at: Option<Instant>,
}

/// Runs until shutdown: leads its share of these stacks, follows the rest.
pub async fn coordinate(
    db: Db,
    stacks: Group,
    settings: HaSettings,
    me: Replica,
    shutdown: Arc<watch::Sender<bool>>,
    main: Handle,
) {
    let mut members: Vec<Member> = stacks
        .into_iter()
        .map(|(shared, stack)| {
            let key = (stack.name.clone(), stack.environment.clone());
            let rank = rank(&me.id, &key);
            Member {
                shared,
                stack,
                key,
                rank,
                leading: None,
                leaderless_since: None,
                released_at: None,
            }
        })
        .collect();
    members.sort_by_key(|m| m.rank);
    let lease = settings.lease;
    let tick = lease / 4;
    let mut stop = shutdown.subscribe();
    let mut conn: Option<Leases> = None;
    for m in &members {
        set_leadership(m, &me, None);
    }
    loop {
        if conn.is_none() {
            match Leases::connect(&db, me.clone()).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %e, "cannot reach the database for leases"),
            }
        }
        if let Some(c) = &conn
            && let Err(e) = step(c, &mut members, &me, lease, &main).await
        {
            tracing::warn!(error = %e, "lease coordination failed; reconnecting");
            conn = None;
        }
        // Without a renewal for a whole lease, another replica may lead already: stop.
        for m in &mut members {
            if let Some((_, token, renewed)) = &m.leading
                && renewed.elapsed() >= lease
            {
                let token = *token;
                let (leading, _, _) = m.leading.take().expect("leading");
                leading.abort(&m.shared);
                tracing::warn!(stack = %m.key.0, token, "could not renew the lease in time: no longer leading");
                m.shared.emit(
                    "leadership",
                    format!(
                        "lost the lease of `{}` (could not renew it in time)",
                        m.key.0
                    ),
                    serde_json::json!({ "role": FOLLOWER, "token": token }),
                );
                set_leadership(m, &me, None);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    // Shutting down: finish the reconciles in flight, then hand the leases over at once.
    for m in &mut members {
        if let Some((leading, token, _)) = m.leading.take() {
            leading.finish(&m.shared, Duration::MAX).await;
            if let Some(c) = &conn {
                let _ = c.release(&m.key.0, &m.key.1, token).await;
            }
        }
    }
    if let Some(c) = &conn {
        c.leave().await;
    }
}

fn rank(replica: &str, key: &(String, String)) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{replica}\0{}\0{}", key.0, key.1));
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

async fn step(
    c: &Leases,
    members: &mut [Member],
    me: &Replica,
    lease: Duration,
    main: &Handle,
) -> Result<(), crate::state::StateError> {
    let alive = c.heartbeat(lease).await?;
    let share = members.len().div_ceil(alive.len().max(1));
    for m in members.iter_mut() {
        if let Some((_, token, renewed)) = &mut m.leading {
            if c.renew(&m.key.0, &m.key.1, *token, lease).await? {
                *renewed = Instant::now();
            } else {
                let token = *token;
                let (leading, _, _) = m.leading.take().expect("leading");
                leading.abort(&m.shared);
                tracing::warn!(stack = %m.key.0, token, "the lease was taken over: no longer leading");
                m.shared.emit(
                    "leadership",
                    format!("lost the lease of `{}`", m.key.0),
                    serde_json::json!({ "role": FOLLOWER, "token": token }),
                );
            }
        }
    }
    let keys: Vec<(String, String)> = members.iter().map(|m| m.key.clone()).collect();
    let leases: BTreeMap<(String, String), LeaseInfo> = c
        .read(&keys)
        .await?
        .into_iter()
        .map(|l| ((l.stack.clone(), l.environment.clone()), l))
        .collect();
    // Two more than the least loaded live replica (one joined): give one stack up per tick.
    let held = members.iter().filter(|m| m.leading.is_some()).count();
    let fewest = alive
        .iter()
        .filter(|id| **id != me.id)
        .map(|id| {
            leases
                .values()
                .filter(|l| l.current && l.holder.id == *id)
                .count()
        })
        .min();
    if fewest.is_some_and(|f| held >= f + 2)
        && let Some(m) = members.iter_mut().rev().find(|m| m.leading.is_some())
    {
        let (leading, token, _) = m.leading.take().expect("leading");
        // The reconcile in flight may finish, but not past a renewal's worth of time.
        leading.finish(&m.shared, lease / 4).await;
        c.release(&m.key.0, &m.key.1, token).await?;
        m.released_at = Some(Instant::now());
        tracing::info!(stack = %m.key.0, "handing the stack over to rebalance");
        m.shared.emit(
            "leadership",
            format!("handed `{}` over to another replica (rebalancing)", m.key.0),
            serde_json::json!({ "role": FOLLOWER, "token": token }),
        );
    }
    let mut held = members.iter().filter(|m| m.leading.is_some()).count();
    let orphan_after = lease;
    for m in members.iter_mut() {
        let info = leases.get(&m.key);
        let led = info.is_some_and(|l| l.current);
        if led {
            m.leaderless_since = None;
        } else if m.leaderless_since.is_none() {
            m.leaderless_since = Some(Instant::now());
        }
        if m.leading.is_none() && !led {
            let orphaned = m
                .leaderless_since
                .is_some_and(|t| t.elapsed() >= orphan_after);
            let handed_over = m.released_at.is_some_and(|t| t.elapsed() < lease * 2);
            if ((held < share && !handed_over) || orphaned)
                && let Some(token) = c.acquire(&m.key.0, &m.key.1, lease).await?
            {
                held += 1;
                m.leaderless_since = None;
                tracing::info!(stack = %m.key.0, token, "took the lease: leading");
                let since = jiff::Timestamp::now();
                set_leadership_to(m, me, Some(me.clone()), Some(token), Some(since), LEADER);
                m.shared.emit(
                    "leadership",
                    format!("leading `{}` (fencing token {token})", m.key.0),
                    serde_json::json!({ "role": LEADER, "token": token }),
                );
                let leading = lead(&m.shared, m.stack.clone(), main);
                m.leading = Some((leading, token, Instant::now()));
                continue;
            }
        }
        if m.leading.is_none() {
            set_leadership(m, me, info.filter(|l| l.current));
        }
    }
    Ok(())
}

fn set_leadership(m: &Member, me: &Replica, info: Option<&LeaseInfo>) {
    set_leadership_to(
        m,
        me,
        info.map(|l| l.holder.clone()),
        info.map(|l| l.token),
        info.map(|l| l.acquired_at),
        FOLLOWER,
    );
}

fn set_leadership_to(
    m: &Member,
    me: &Replica,
    leader: Option<Replica>,
    token: Option<i64>,
    since: Option<jiff::Timestamp>,
    role: &'static str,
) {
    m.shared.status.lock().expect("status").leadership = Some(Leadership {
        role,
        replica: me.id.clone(),
        leader,
        token,
        since,
    });
}
