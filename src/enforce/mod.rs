//! `cairn enforce`: a long-running daemon that keeps a stack true.
//!
//! One task reconciles (plan → policies → apply), one reconcile at a time, each against
//! freshly listed live state; the configuration is reloaded at start, on file edits and on
//! SIGHUP, and an edit that is rejected leaves the last good one in force. Other tasks only ask it to run:
//! the file watcher, the drift timers, the health probes (through failover decisions kept as
//! an overlay on the declared routing) and the HTTP API.

pub mod api;
pub mod failover;
pub mod ha;
pub mod health;
pub mod monitoring;
pub mod scaling;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc, watch};

pub use status::{Event, Status};

use crate::config::{self, Stack};
use crate::diag::Diag;
use crate::engine;
use crate::model::{Address, Attrs, ProviderKind, ResourceKind, Routing};
use crate::plan::{Filter, Plan};
use crate::policy::{self, Enforcement, Options};
use failover::{Decision, Failback};
use health::{Health, Probe, Prober, Schedule, Tracker};

/// How endpoints are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    /// Deployments on the sandbox through the sandbox's simulated endpoints; others over the
    /// network.
    Auto,
    /// Every endpoint over the network (HTTP(S) or TCP, as its health check says).
    Network,
}

/// API roles, each including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

/// Everything the daemon is told on its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The stacks to enforce (every replica of a team is given the same list).
    pub dirs: Vec<PathBuf>,
    pub env: Option<String>,
    pub listen: SocketAddr,
    /// Detect drift and report it, change nothing.
    pub report_only: bool,
    /// How often each kind of resource is checked for drift (jittered by up to 10%).
    pub drift: BTreeMap<ResourceKind, Duration>,
    pub failback: Failback,
    pub probes: ProbeMode,
    /// Bearer token → role. Empty: read-only endpoints are open, operator ones refused.
    pub tokens: HashMap<String, Role>,
    /// Quiet time after a file change before reloading.
    pub debounce: Duration,
    pub lock_timeout: Duration,
    /// How often each service's scaling is decided (services with a load metric).
    pub scale_interval: Duration,
    /// Leases shared with other replicas (stacks on the postgres backend).
    pub ha: ha::HaSettings,
}

/// Why a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// The first run: load the configuration and reconcile everything.
    Start,
    /// A stack or policy file changed, or SIGHUP.
    Config,
    /// Drift check of these kinds.
    Drift { kinds: Vec<ResourceKind> },
    /// Routing of these records changed with their members' health.
    Routing { records: Vec<String> },
    /// Scaling decided new replicas for these groups.
    Scaling { groups: Vec<String> },
    /// An operator asked.
    Manual,
}

/// State shared by the tasks and the API.
pub struct Shared {
    pub settings: Settings,
    /// This stack's directory.
    pub dir: PathBuf,
    pub status: Mutex<Status>,
    pub events: broadcast::Sender<Event>,
    /// Set while this replica leads the stack (its reconciler runs).
    triggers: Mutex<Option<mpsc::UnboundedSender<Trigger>>>,
    /// Published overrides of declared routing, by record address.
    overlay: Mutex<BTreeMap<Address, Routing>>,
    /// Replicas decided by scaling, by group address (kept within the group's min and max).
    scaled: Mutex<BTreeMap<Address, u32>>,
    /// Deployments routed away from after an anomaly, until a Unix time.
    routed_away: Mutex<BTreeMap<String, i64>>,
    /// Health of each probed member: (record, member) → tracker.
    trackers: Mutex<BTreeMap<(String, String), Tracker>>,
    /// Records an operator failed over by hand (kept until failed back by hand).
    manual: Mutex<BTreeMap<Address, Routing>>,
    /// Records with every member down, alerted once until one recovers.
    alerting: Mutex<std::collections::BTreeSet<Address>>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: Arc<watch::Sender<bool>>,
    /// Where the audit log is (beside the state), for the daemon's own actions.
    state_dir: Option<PathBuf>,
    /// Reconciles running at once across the daemon's stacks (each holds a database
    /// connection and works the CPU): many stacks queue instead of exhausting either.
    slots: Arc<tokio::sync::Semaphore>,
}

/// How many stacks one daemon reconciles at the same time.
const CONCURRENT_RECONCILES: usize = 8;

/// Events that are actions on DNS or on what is enforced: each is also an audit entry.
const AUDITED: &[&str] = &[
    "failover",
    "failback",
    "alert",
    "config_rejected",
    "scale",
    "route_away",
];

impl Shared {
    pub fn emit(&self, kind: &str, message: String, details: serde_json::Value) {
        let (event, stack, environment) = {
            let mut status = self.status.lock().expect("status");
            let e = status.event(kind, message, details);
            (e, status.stack.clone(), status.environment.clone())
        };
        tracing::info!(kind, "{}", event.message);
        if AUDITED.contains(&kind)
            && let (Some(dir), Ok(Some(keys))) = (&self.state_dir, crate::audit::Keys::from_env())
        {
            let record = crate::audit::Record {
                action: kind.into(),
                stack,
                environment,
                plan_digest: None,
                result: "ok".into(),
                details: serde_json::json!({ "message": event.message, "details": event.details }),
            };
            if let Err(e) = crate::audit::AuditLog::at(dir).append(&keys, record) {
                tracing::error!(error = %e, "cannot write the audit entry");
            }
        }
        let _ = self.events.send(event);
    }

    /// Asks for a reconcile; returns false when the daemon is shutting down or this
    /// replica does not lead the stack.
    pub fn trigger(&self, t: Trigger) -> bool {
        self.triggers
            .lock()
            .expect("triggers")
            .as_ref()
            .is_some_and(|tx| tx.send(t).is_ok())
    }

    /// The fencing token state writes are made under, while this replica leads a stack
    /// shared with other replicas.
    pub fn fence(&self) -> Option<i64> {
        let status = self.status.lock().expect("status");
        status
            .leadership
            .as_ref()
            .filter(|l| l.role == ha::LEADER)
            .and_then(|l| l.token)
    }

    /// Why an operator action cannot run here: another replica leads the stack.
    pub fn led_elsewhere(&self) -> Option<String> {
        let status = self.status.lock().expect("status");
        let l = status
            .leadership
            .as_ref()
            .filter(|l| l.role != ha::LEADER)?;
        Some(match &l.leader {
            Some(r) => format!(
                "this replica does not lead `{}` ({}): replica {} does, at {}",
                status.stack, status.environment, r.id, r.api
            ),
            None => format!(
                "this replica does not lead `{}` ({}), and no replica does right now",
                status.stack, status.environment
            ),
        })
    }

    /// Fails a record over (or back) by an operator's request.
    pub fn manual_failover(&self, record: &str, back: bool) -> Result<String, String> {
        let address: Address = record.parse()?;
        let status = self.status.lock().expect("status");
        let declared = status
            .routed
            .get(&address)
            .cloned()
            .ok_or_else(|| format!("{record} is not a routed record of this stack"))?;
        drop(status);
        let Routing::Failover { primary, secondary } = &declared else {
            return Err(format!("{record} does not use failover routing"));
        };
        let mut manual = self.manual.lock().expect("manual");
        let mut overlay = self.overlay.lock().expect("overlay");
        // Asking for what is already so changes nothing and records nothing.
        if back != overlay.contains_key(&address) {
            return Err(if back {
                format!("{record} is not failed over")
            } else {
                format!("{record} is already failed over")
            });
        }
        let message = if back {
            manual.remove(&address);
            overlay.remove(&address);
            format!("{record}: failed back to {} by an operator", primary.id)
        } else {
            let swapped = Routing::Failover {
                primary: secondary.clone(),
                secondary: primary.clone(),
            };
            manual.insert(address.clone(), swapped.clone());
            overlay.insert(address.clone(), swapped);
            format!("{record}: failed over to {} by an operator", secondary.id)
        };
        drop((manual, overlay));
        metrics::counter!("cairn_failovers_total", "kind" => if back { "failback" } else { "failover" })
            .increment(1);
        self.emit(
            if back { "failback" } else { "failover" },
            message.clone(),
            serde_json::json!({ "record": record, "manual": true }),
        );
        self.trigger(Trigger::Routing {
            records: vec![record.to_string()],
        });
        Ok(message)
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .expect("bucket list is not empty")
        .build_recorder();
    let handle = recorder.handle();
    // A second daemon in the same process (tests) keeps the first recorder.
    let _ = metrics::set_global_recorder(recorder);
    describe_metrics();
    handle
}

fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("cairn_reconciles_total", "Reconciles run, by result.");
    describe_histogram!(
        "cairn_reconcile_duration_seconds",
        Unit::Seconds,
        "Time from a reconcile's start to its end."
    );
    describe_gauge!(
        "cairn_drift_resources",
        "Resources that differed from the configuration at the last check of their kind."
    );
    describe_counter!("cairn_probes_total", "Health probes, by result.");
    describe_histogram!(
        "cairn_probe_duration_seconds",
        Unit::Seconds,
        "Time a health probe took."
    );
    describe_gauge!(
        "cairn_endpoint_healthy",
        "1 when a routed record's member is healthy, 0 when unhealthy (absent until known), by record and member."
    );
    describe_counter!(
        "cairn_failovers_total",
        "DNS routing changes made for health."
    );
    describe_counter!(
        "cairn_provider_api_calls_total",
        "Calls to cloud provider APIs, by provider."
    );
    describe_counter!(
        "cairn_provider_errors_total",
        "Reconciles that failed at a provider (refresh or change)."
    );
    describe_counter!(
        "cairn_anomalies_total",
        "Anomaly alerts raised, by monitored service or deployment."
    );
    describe_counter!(
        "cairn_scaling_decisions_total",
        "Scaling decisions that changed a service's replicas, by service."
    );
    describe_counter!(
        "cairn_config_rejections_total",
        "Edits of the stack's files that were rejected (invalid or failing hard policies)."
    );
}

/// Runs the daemon until SIGTERM or SIGINT. Returns an error only if it cannot start.
pub async fn run(settings: Settings) -> Result<(), Vec<Diag>> {
    // Every configuration must be good at start: there is no last good one to fall back to.
    let mut stacks = Vec::new();
    let mut diags = Vec::new();
    for dir in &settings.dirs {
        match config::load_stack(dir, settings.env.as_deref())
            .and_then(|(stack, _)| accept(&stack).map(|_| stack))
        {
            Ok(stack) => stacks.push((dir.clone(), stack)),
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (dir, stack) in &stacks {
        if !seen.insert((stack.name.clone(), stack.environment.clone())) {
            return Err(vec![Diag::error(
                "enforce::duplicate",
                format!(
                    "stack `{}` ({}) is given twice (again at `{}`)",
                    stack.name,
                    stack.environment,
                    dir.display()
                ),
            )]);
        }
    }
    // A misconfigured audit key stops the daemon before it changes anything, as it stops apply.
    crate::audit::Keys::from_env().map_err(|e| vec![Diag::error("audit::key", e)])?;
    let shutdown = Arc::new(watch::channel(false).0);
    let metrics = install_metrics();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_RECONCILES));
    let shareds: Vec<Arc<Shared>> = stacks
        .iter()
        .map(|(dir, stack)| {
            let (events, _) = broadcast::channel(1024);
            Arc::new(Shared {
                status: Mutex::new(Status::new(stack, &settings)),
                settings: settings.clone(),
                dir: dir.clone(),
                events,
                triggers: Mutex::new(None),
                overlay: Mutex::new(load_overlay(stack)),
                scaled: Mutex::new(BTreeMap::new()),
                routed_away: Mutex::new(BTreeMap::new()),
                trackers: Mutex::new(BTreeMap::new()),
                manual: Mutex::new(BTreeMap::new()),
                alerting: Mutex::new(Default::default()),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
                state_dir: engine::state_dir(stack).ok(),
                slots: slots.clone(),
            })
        })
        .collect();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            vec![Diag::error(
                "enforce::listen",
                format!("cannot listen on {}: {e}", settings.listen),
            )]
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| vec![Diag::error("enforce::listen", e.to_string())])?;
    let me = ha::replica(&settings.ha, bound);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(api::serve(
        api::app(&shareds),
        listener,
        shutdown.subscribe(),
    ));
    tasks.spawn(signals(shareds.clone(), shutdown.clone()));
    // Stacks on the local backend are led by this process alone; stacks on postgres are
    // shared with other replicas through leases, one coordinator per database.
    let mut local = Vec::new();
    let mut shared_dbs: Vec<(crate::state::pg::Db, ha::Group)> = Vec::new();
    for (shared, (_, stack)) in shareds.iter().zip(stacks) {
        tracing::info!(address = %bound, stack = %stack.name, "cairn enforce started");
        shared.emit(
            "started",
            format!(
                "enforcing `{}` ({}); API on http://{bound}",
                stack.name, stack.environment
            ),
            serde_json::json!({ "listen": bound.to_string(), "replica": me.id }),
        );
        match &stack.backend {
            config::Backend::Postgres { db, .. } => {
                match shared_dbs.iter_mut().find(|(d, _)| d == db) {
                    Some((_, group)) => group.push((shared.clone(), stack)),
                    None => shared_dbs.push((db.clone(), vec![(shared.clone(), stack)])),
                }
            }
            config::Backend::Local { .. } => {
                local.push((shared.clone(), lead(shared, stack, &Handle::current())))
            }
        }
    }
    // Each coordinator runs on a thread of its own: reconciles busy on every core must not
    // delay a lease's renewal past its end.
    let mut coordinators = Vec::new();
    for (db, group) in shared_dbs {
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let (ha, me, shutdown, main) = (
            settings.ha.clone(),
            me.clone(),
            shutdown.clone(),
            Handle::current(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for leases");
            rt.block_on(ha::coordinate(db, group, ha, me, shutdown, main));
            let _ = done.send(());
        });
        coordinators.push(finished);
    }
    // Until SIGTERM or SIGINT; then each reconcile in flight ends before the daemon does.
    let _ = shutdown.subscribe().wait_for(|s| *s).await;
    for (shared, leading) in local {
        leading.finish(&shared, Duration::MAX).await;
    }
    for finished in coordinators {
        let _ = finished.await;
    }
    for shared in &shareds {
        shared.emit(
            "stopped",
            "cairn enforce stopped".into(),
            serde_json::Value::Null,
        );
    }
    tasks.abort_all();
    Ok(())
}

/// The tasks of a stack this replica leads: its reconciler, file watcher and drift timers.
pub(crate) struct Leading {
    reconciler: tokio::task::JoinHandle<()>,
    helpers: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts leading a stack, on the daemon's runtime: the first reconcile loads its
/// configuration afresh.
pub(crate) fn lead(shared: &Arc<Shared>, stack: Stack, rt: &Handle) -> Leading {
    let (tx, rx) = mpsc::unbounded_channel();
    *shared.triggers.lock().expect("triggers") = Some(tx.clone());
    let helpers = vec![
        rt.spawn(watch_files(shared.clone())),
        rt.spawn(drift_ticks(shared.settings.drift.clone(), tx)),
    ];
    shared.trigger(Trigger::Start);
    Leading {
        reconciler: rt.spawn(reconciler(shared.clone(), rx, stack)),
        helpers,
    }
}

impl Leading {
    /// Stops at once (the lease was lost): a reconcile in flight is abandoned, as a crash
    /// would abandon it; what it completed is in the state and its next write is refused.
    pub(crate) fn abort(self, shared: &Shared) {
        *shared.triggers.lock().expect("triggers") = None;
        self.reconciler.abort();
        for h in self.helpers {
            h.abort();
        }
    }

    /// Waits for the reconcile in flight to end (shutting down, or handing the stack over),
    /// up to `limit`, then abandons it: with every sender of triggers gone, the reconciler
    /// stops after it.
    pub(crate) async fn finish(self, shared: &Shared, limit: Duration) {
        *shared.triggers.lock().expect("triggers") = None;
        for h in self.helpers {
            h.abort();
            let _ = h.await;
        }
        let mut reconciler = self.reconciler;
        if tokio::time::timeout(limit, &mut reconciler).await.is_err() {
            reconciler.abort();
        }
    }
}

/// Checks a configuration before it is enforced: it must pass every hard-mandatory policy
/// (soft and advisory findings are reported, not enforced, by the daemon).
fn accept(stack: &Stack) -> Result<Vec<policy::Finding>, Vec<Diag>> {
    let findings = evaluate(stack, None)?;
    let hard = hard(&findings);
    if hard.is_empty() {
        Ok(findings)
    } else {
        Err(hard)
    }
}

fn evaluate(stack: &Stack, plan: Option<&Plan>) -> Result<Vec<policy::Finding>, Vec<Diag>> {
    let policies = policy::for_stack(stack)?;
    Ok(policy::evaluate(&policies, stack, plan, &Options::new(true))?.findings)
}

/// The findings the daemon enforces: hard-mandatory ones not waived.
fn hard(findings: &[policy::Finding]) -> Vec<Diag> {
    findings
        .iter()
        .filter(|f| f.blocks() && f.enforcement == Enforcement::Hard)
        .map(policy::Finding::to_diag)
        .collect()
}

/// Where failovers in force are kept, so a restart does not fail back blindly.
fn overlay_path(stack: &Stack) -> Option<PathBuf> {
    engine::state_dir(stack)
        .ok()
        .map(|d| d.join("enforce-overlay.json"))
}

fn load_overlay(stack: &Stack) -> BTreeMap<Address, Routing> {
    overlay_path(stack)
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_overlay(stack: &Stack, overlay: &BTreeMap<Address, Routing>) {
    let Some(path) = overlay_path(stack) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().expect("a state dir"))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(overlay).expect("overlay serializes"),
        )?;
        std::fs::rename(tmp, &path)
    };
    if let Err(e) = write() {
        tracing::warn!(error = %e, "cannot save the failover overlay");
    }
}

/// The probe tasks of the current configuration.
#[derive(Default)]
struct Probes {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    specs: Vec<ProbeSpec>,
}

/// One member of one routed record, and how to probe it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProbeSpec {
    record: Address,
    member: String,
    probe: Probe,
    schedule: Schedule,
}

/// The members to probe: those of routed records with a health check.
fn probe_specs(stack: &Stack, mode: ProbeMode) -> Vec<ProbeSpec> {
    let sandboxed: Vec<String> = stack
        .resources
        .iter()
        .filter(|r| r.provider.kind == ProviderKind::Sandbox)
        .filter_map(|r| match &r.attrs {
            Attrs::Group(g) => Some(format!("{}@{}/{}", g.service, g.cloud, g.region)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for r in &stack.resources {
        let Attrs::Record(rec) = &r.attrs else {
            continue;
        };
        let Some(hc) = &rec.health_check else {
            continue;
        };
        let members = match &rec.routing {
            Routing::Failover { primary, secondary } => vec![primary, secondary],
            Routing::Weighted { members } | Routing::Multivalue { members } => {
                members.iter().collect()
            }
            _ => continue,
        };
        let expect = stack.health_expectations.get(&r.address);
        for m in members {
            let Some(host) = m.values.first() else {
                continue;
            };
            let probe = if mode == ProbeMode::Auto && sandboxed.contains(&m.id) {
                Probe::Sandbox {
                    deployment: m.id.clone(),
                }
            } else if hc.protocol == "tcp" {
                Probe::Tcp {
                    host: host.clone(),
                    port: hc.port,
                }
            } else {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                Probe::Http {
                    url: format!(
                        "{}://{host}:{}{}",
                        hc.protocol,
                        hc.port,
                        hc.path.as_deref().unwrap_or("/")
                    ),
                    expect_status: expect.and_then(|e| e.status),
                    expect_body: expect.and_then(|e| e.body.clone()),
                }
            };
            out.push(ProbeSpec {
                record: r.address.clone(),
                member: m.id.clone(),
                probe,
                schedule: Schedule {
                    interval: Duration::from_secs(hc.interval_secs),
                    timeout: Duration::from_secs(hc.timeout_secs),
                    failures: hc.failures,
                    recoveries: hc.recoveries,
                },
            });
        }
    }
    out
}

/// Stopped with the reconciler that owns them (shutdown, or leadership lost).
impl Drop for Probes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Probes {
    /// Starts probing what `stack` routes; probes that did not change keep running (and
    /// their health), others stop.
    fn update(&mut self, shared: &Arc<Shared>, stack: &Stack) {
        let specs = probe_specs(stack, shared.settings.probes);
        if specs == self.specs {
            return;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let sandbox = engine::target_of(stack).ok().and_then(|t| {
            crate::provider::sandbox::Sandbox::open(&t.sandbox_dir, [])
                .ok()
                .map(Arc::new)
        });
        let prober = Arc::new(Prober::new(sandbox));
        {
            let mut trackers = shared.trackers.lock().expect("trackers");
            trackers.retain(|(rec, member), _| {
                specs
                    .iter()
                    .any(|s| s.record.to_string() == *rec && s.member == *member)
            });
        }
        shared.status.lock().expect("status").health.retain(|h| {
            specs
                .iter()
                .any(|s| s.record.to_string() == h.record && s.member == h.member)
        });
        for spec in &specs {
            self.tasks.push(tokio::spawn(probe_loop(
                shared.clone(),
                prober.clone(),
                spec.clone(),
            )));
        }
        self.specs = specs;
    }
}

async fn probe_loop(shared: Arc<Shared>, prober: Arc<Prober>, spec: ProbeSpec) {
    let key = (spec.record.to_string(), spec.member.clone());
    shared
        .trackers
        .lock()
        .expect("trackers")
        .entry(key.clone())
        .or_insert_with(|| Tracker::new(&spec.schedule));
    let mut tick = tokio::time::interval(spec.schedule.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.shutting_down() {
            return;
        }
        let outcome = prober.probe(&spec.probe, spec.schedule.timeout).await;
        let result = if outcome.ok { "ok" } else { "fail" };
        metrics::counter!("cairn_probes_total", "result" => result).increment(1);
        metrics::histogram!("cairn_probe_duration_seconds").record(outcome.latency.as_secs_f64());
        let changed = {
            let mut trackers = shared.trackers.lock().expect("trackers");
            let t = trackers
                .entry(key.clone())
                .or_insert_with(|| Tracker::new(&spec.schedule));
            t.observe(outcome.ok).map(|h| (h, t.health))
        };
        let health = changed.map_or_else(
            || {
                shared
                    .trackers
                    .lock()
                    .expect("trackers")
                    .get(&key)
                    .map_or(Health::Unknown, |t| t.health)
            },
            |(h, _)| h,
        );
        if health != Health::Unknown {
            metrics::gauge!("cairn_endpoint_healthy", "record" => key.0.clone(), "member" => key.1.clone())
                .set(if health == Health::Healthy { 1.0 } else { 0.0 });
        }
        shared
            .status
            .lock()
            .expect("status")
            .probed(&key.0, &key.1, &spec.probe, health, &outcome);
        if let Some((h, _)) = changed {
            shared.emit(
                "health",
                format!("{} member {} is {}", key.0, key.1, health_word(h)),
                serde_json::json!({
                    "record": key.0, "member": key.1, "health": h, "detail": outcome.detail,
                }),
            );
            route(&shared, &spec.record);
        }
    }
}

fn health_word(h: Health) -> &'static str {
    match h {
        Health::Unknown => "unknown",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    }
}

/// Re-decides a record's routing after a health change; asks for a reconcile if it moved.
fn route(shared: &Arc<Shared>, record: &Address) {
    let declared = shared
        .status
        .lock()
        .expect("status")
        .routed
        .get(record)
        .cloned();
    let Some(declared) = declared else {
        return;
    };
    let name = record.to_string();
    let now = jiff::Timestamp::now().as_second();
    let health = |member: &str| {
        // A deployment routed away from after an anomaly counts as down, whatever its probes.
        if shared
            .routed_away
            .lock()
            .expect("routed_away")
            .get(member)
            .is_some_and(|until| *until > now)
        {
            return Health::Unhealthy;
        }
        shared
            .trackers
            .lock()
            .expect("trackers")
            .get(&(name.clone(), member.to_string()))
            .map_or(Health::Unknown, |t| t.health)
    };
    let manual = shared.manual.lock().expect("manual").get(record).cloned();
    let mut overlay = shared.overlay.lock().expect("overlay");
    let published = overlay.get(record).cloned();
    // An operator's failover holds until the operator fails back (or its target dies).
    let failback = if manual.is_some() {
        Failback::Manual
    } else {
        shared.settings.failback
    };
    let decision = failover::decide(&declared, published.as_ref(), &health, failback);
    if !matches!(decision, Decision::KeepLast(_)) {
        shared.alerting.lock().expect("alerting").remove(record);
    }
    let (next, kind, message) = match decision {
        Decision::Declared => (
            None,
            "failback",
            format!("{name}: back to its declared routing"),
        ),
        Decision::Publish(r, why) => (Some(r), "failover", format!("{name}: {why}")),
        Decision::KeepLast(why) => {
            drop(overlay);
            if !shared
                .alerting
                .lock()
                .expect("alerting")
                .insert(record.clone())
            {
                return; // already alerted
            }
            shared.emit(
                "alert",
                format!("{name}: {why}"),
                serde_json::json!({ "record": name }),
            );
            return;
        }
    };
    if next == published {
        return;
    }
    match &next {
        Some(r) => overlay.insert(record.clone(), r.clone()),
        None => overlay.remove(record),
    };
    if next.is_none() {
        shared.manual.lock().expect("manual").remove(record);
    }
    drop(overlay);
    metrics::counter!("cairn_failovers_total", "kind" => kind).increment(1);
    shared.emit(kind, message, serde_json::json!({ "record": name }));
    shared.trigger(Trigger::Routing {
        records: vec![name],
    });
}

/// Routes every routed record without `deployment` until `until` (Unix seconds), then
/// decides again from health. Called on an anomaly with `on_anomaly = "route_away"`.
fn route_away(shared: &Arc<Shared>, deployment: &str, until: i64) {
    shared
        .routed_away
        .lock()
        .expect("routed_away")
        .insert(deployment.to_string(), until);
    shared.emit(
        "route_away",
        format!(
            "{deployment}: routed away from after an anomaly, until {}",
            jiff::Timestamp::from_second(until)
                .map_or_else(|_| until.to_string(), |t| t.to_string())
        ),
        serde_json::json!({ "deployment": deployment, "until": until }),
    );
    reroute_all(shared);
    let shared = shared.clone();
    let deployment = deployment.to_string();
    tokio::spawn(async move {
        let wait = until - jiff::Timestamp::now().as_second();
        tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;
        let expired = {
            let mut away = shared.routed_away.lock().expect("routed_away");
            // A later anomaly may have extended it.
            let expired = away.get(&deployment) == Some(&until);
            if expired {
                away.remove(&deployment);
            }
            expired
        };
        if expired {
            reroute_all(&shared);
        }
    });
}

fn reroute_all(shared: &Arc<Shared>) {
    for record in &routed_records(shared) {
        route(shared, record);
    }
}

/// The records whose routing has members (and so can fail over).
fn routed_records(shared: &Shared) -> Vec<Address> {
    shared
        .status
        .lock()
        .expect("status")
        .routed
        .keys()
        .cloned()
        .collect()
}

/// The single reconcile loop: triggers queue up and are merged, one reconcile at a time.
async fn reconciler(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Trigger>,
    mut stack: Stack,
) {
    let mut probes = Probes::default();
    let mut scalers = scaling::Scalers::default();
    let mut monitors = monitoring::Monitors::default();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let first = tokio::select! {
            t = rx.recv() => t,
            _ = shutdown.changed() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while let Ok(t) = rx.try_recv() {
            batch.push(t);
        }
        if batch
            .iter()
            .any(|t| matches!(t, Trigger::Start | Trigger::Config))
        {
            match reload(&shared, &stack) {
                Ok(Some(s)) => stack = s,
                Ok(None) => {}
                Err(()) => {
                    // Rejected: the last good configuration stays; other triggers still run.
                    batch.retain(|t| !matches!(t, Trigger::Config));
                    if batch.is_empty() {
                        continue;
                    }
                }
            }
            probes.update(&shared, &stack);
            scalers.update(&shared, &stack);
            monitors.update(&shared, &stack);
            // Routing in force was decided from the old declarations (e.g. a changed endpoint
            // of a failed-over record): decide again from the new ones.
            let routed = routed_records(&shared);
            shared
                .overlay
                .lock()
                .expect("overlay")
                .retain(|a, _| routed.contains(a));
            reroute_all(&shared);
        }
        reconcile(&shared, &stack, &batch).await;
        if shared.shutting_down() {
            break;
        }
    }
    drop((probes, scalers, monitors));
}

/// Loads the stack's files again. `Ok(Some)`: a new configuration is accepted; `Ok(None)`:
/// nothing to change; `Err`: rejected (reported).
fn reload(shared: &Arc<Shared>, current: &Stack) -> Result<Option<Stack>, ()> {
    let s = &shared.settings;
    let result = config::load_stack(&shared.dir, s.env.as_deref())
        .and_then(|(stack, _)| accept(&stack).map(|findings| (stack, findings)));
    match result {
        Ok((stack, findings)) => {
            if stack.name != current.name || stack.environment != current.environment {
                // A different state would be enforced: refuse, as an invalid edit would be.
                reject(
                    shared,
                    vec![Diag::error(
                        "enforce::identity",
                        "the stack's name or environment changed; restart cairn enforce to enforce another stack",
                    )],
                );
                return Err(());
            }
            shared
                .status
                .lock()
                .expect("status")
                .configured(&stack, &findings);
            Ok(Some(stack))
        }
        Err(diags) => {
            reject(shared, diags);
            Err(())
        }
    }
}

fn reject(shared: &Arc<Shared>, diags: Vec<Diag>) {
    metrics::counter!("cairn_config_rejections_total").increment(1);
    let errors: Vec<serde_json::Value> = diags.iter().map(Diag::to_json).collect();
    let first = diags
        .iter()
        .find(|d| d.is_error())
        .map(|d| d.message.clone())
        .unwrap_or_default();
    shared
        .status
        .lock()
        .expect("status")
        .rejected(errors.clone());
    shared.emit(
        "config_rejected",
        format!(
            "the edited configuration was rejected; the last good one is still enforced: {first}"
        ),
        serde_json::json!({ "diagnostics": errors }),
    );
}

/// The stack with the failovers in force applied to its records and the replicas decided
/// by scaling to its groups.
fn effective(
    stack: &Stack,
    overlay: &BTreeMap<Address, Routing>,
    scaled: &BTreeMap<Address, u32>,
) -> Stack {
    let mut s = stack.clone();
    for r in &mut s.resources {
        match &mut r.attrs {
            Attrs::Record(rec) => {
                if let Some(routing) = overlay.get(&r.address) {
                    rec.routing = routing.clone();
                }
            }
            Attrs::Group(g) => {
                if let Some(n) = scaled.get(&r.address) {
                    g.desired = (*n).clamp(g.min, g.max);
                }
            }
            Attrs::Zone(_) => {}
        }
    }
    s
}

/// One reconcile: plan the effective stack (the kinds or records the triggers name, or
/// everything), check hard-mandatory policies on the plan, and apply unless report-only.
async fn reconcile(shared: &Arc<Shared>, stack: &Stack, batch: &[Trigger]) {
    let _slot = shared.slots.acquire().await.expect("never closed");
    let started = Instant::now();
    let overlay = shared.overlay.lock().expect("overlay").clone();
    // Report-only decisions are shown, never kept: a later enforcing run decides afresh.
    if !shared.settings.report_only {
        save_overlay(stack, &overlay);
    }
    let scaled = shared.scaled.lock().expect("scaled").clone();
    let desired = effective(stack, &overlay, &scaled);
    shared
        .status
        .lock()
        .expect("status")
        .set_failovers(&overlay);
    let filter = filter_for(batch);
    let drift_only = batch.iter().all(|t| matches!(t, Trigger::Drift { .. }));
    let label = trigger_label(batch);
    let planned = engine::plan(engine::PlanRequest {
        stack: &desired,
        filter: &filter,
        lock_timeout: shared.settings.lock_timeout,
        destroy: false,
        command: "cairn enforce",
        fence: shared.fence(),
    })
    .await;
    let mut planned = match planned {
        Ok(p) => p,
        Err(diags) => {
            if diags.iter().any(|d| d.code.starts_with("provider::")) {
                metrics::counter!("cairn_provider_errors_total").increment(1);
            }
            return finish(shared, &label, started, Err(first_message(&diags)), 0, 0);
        }
    };
    let (result, changes, applied) =
        apply_planned(shared, stack, batch, drift_only, &label, &mut planned).await;
    planned.state.unlock().await;
    finish(shared, &label, started, result, changes, applied);
}

/// The part of a reconcile under the state lock: report drift, check policies, apply.
/// Returns the result, the changes planned and the changes made.
async fn apply_planned(
    shared: &Arc<Shared>,
    stack: &Stack,
    batch: &[Trigger],
    drift_only: bool,
    label: &str,
    planned: &mut engine::Planned,
) -> (Result<(), String>, usize, usize) {
    let changes = planned.plan.changes.len() + planned.plan.state_fixes.len();
    if drift_only || shared.settings.report_only {
        report_drift(shared, batch, &planned.plan);
    }
    if changes == 0 || shared.settings.report_only {
        count_api_calls(&planned.providers);
        return (Ok(()), changes, 0);
    }
    // Changes from health-driven routing or drift still pass the hard-mandatory rules.
    if let Err(diags) = check_plan(stack, &planned.plan) {
        count_api_calls(&planned.providers);
        return (Err(first_message(&diags)), changes, 0);
    }
    let outcome = crate::apply::apply(
        &planned.plan,
        &planned.providers,
        planned.state.as_mut(),
        4,
        &Quiet,
    )
    .await;
    count_api_calls(&planned.providers);
    let (result, applied) = match outcome {
        Ok(o) => {
            record_audit(&planned.plan, &o, label);
            let result = if o.failed.is_empty() && o.skipped.is_empty() {
                Ok(())
            } else {
                metrics::counter!("cairn_provider_errors_total").increment(1);
                Err(format!(
                    "{} change(s) failed, {} skipped",
                    o.failed.len(),
                    o.skipped.len()
                ))
            };
            (result, o.applied.len())
        }
        Err(e) => {
            metrics::counter!("cairn_provider_errors_total").increment(1);
            (Err(format!("{e}")), 0)
        }
    };
    (result, changes, applied)
}

/// Records what differs, per kind checked: `/status`, the gauge, an event.
fn report_drift(shared: &Arc<Shared>, batch: &[Trigger], plan: &Plan) {
    let mut kinds: Vec<ResourceKind> = batch
        .iter()
        .flat_map(|t| match t {
            Trigger::Drift { kinds } => kinds.clone(),
            // A routing reconcile plans single records: it says nothing of drift elsewhere.
            Trigger::Routing { .. } => Vec::new(),
            _ => vec![
                ResourceKind::Zone,
                ResourceKind::Record,
                ResourceKind::Group,
            ],
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let mut all = Vec::new();
    for kind in kinds {
        let addresses: Vec<String> = plan
            .changes
            .iter()
            .filter(|c| c.address.kind == kind)
            .map(|c| c.address.to_string())
            .collect();
        metrics::gauge!("cairn_drift_resources", "kind" => kind.as_str())
            .set(addresses.len() as f64);
        shared
            .status
            .lock()
            .expect("status")
            .drift(kind.as_str(), &addresses);
        all.extend(addresses);
    }
    if !all.is_empty() {
        let n = all.len();
        shared.emit(
            "drift",
            format!(
                "{n} resource{} differ{} from the configuration",
                crate::diag::plural(n),
                if n == 1 { "s" } else { "" }
            ),
            serde_json::json!({ "resources": all, "corrected": !shared.settings.report_only }),
        );
    }
}

fn check_plan(stack: &Stack, plan: &Plan) -> Result<(), Vec<Diag>> {
    let hard = hard(&evaluate(stack, Some(plan))?);
    if hard.is_empty() { Ok(()) } else { Err(hard) }
}

/// Providers are opened per reconcile, so their counts are this reconcile's calls.
fn count_api_calls(providers: &crate::apply::ProviderSet) {
    for (provider, n) in providers.api_calls() {
        metrics::counter!("cairn_provider_api_calls_total", "provider" => provider).increment(n);
    }
}

fn record_audit(plan: &Plan, outcome: &crate::apply::Outcome, trigger: &str) {
    let Ok(Some(keys)) = crate::audit::Keys::from_env() else {
        return;
    };
    let record = crate::audit::Record {
        action: "enforce".into(),
        stack: plan.stack.clone(),
        environment: plan.environment.clone(),
        plan_digest: None,
        result: if outcome.failed.is_empty() {
            "ok".into()
        } else {
            format!("{} failed", outcome.failed.len())
        },
        details: serde_json::json!({
            "trigger": trigger,
            "changes": outcome.applied.iter().map(|a| a.address.to_string()).collect::<Vec<_>>(),
        }),
    };
    if let Err(e) = crate::audit::AuditLog::at(&plan.target.state_dir).append(&keys, record) {
        tracing::error!(error = %e, "cannot write the audit entry");
    }
}

fn first_message(diags: &[Diag]) -> String {
    diags
        .first()
        .map_or_else(|| "unknown error".into(), |d| d.message.clone())
}

fn finish(
    shared: &Arc<Shared>,
    trigger: &str,
    started: Instant,
    result: Result<(), String>,
    changes: usize,
    applied: usize,
) {
    let elapsed = started.elapsed();
    let label = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("cairn_reconciles_total", "result" => label).increment(1);
    metrics::histogram!("cairn_reconcile_duration_seconds").record(elapsed.as_secs_f64());
    let error = result.err();
    shared.status.lock().expect("status").reconciled(
        trigger,
        elapsed,
        changes,
        applied,
        error.clone(),
    );
    match error {
        Some(e) => {
            tracing::warn!(trigger, error = %e, "reconcile failed");
            shared.emit(
                "reconcile",
                format!("reconcile ({trigger}) failed: {e}"),
                serde_json::json!({ "trigger": trigger, "error": e, "applied": applied }),
            );
        }
        None if applied > 0 => shared.emit(
            "reconcile",
            format!(
                "reconcile ({trigger}) applied {applied} change{}",
                crate::diag::plural(applied)
            ),
            serde_json::json!({ "trigger": trigger, "applied": applied, "seconds": elapsed.as_secs_f64() }),
        ),
        None => {}
    }
}

fn trigger_label(batch: &[Trigger]) -> String {
    let mut labels: Vec<&str> = batch
        .iter()
        .map(|t| match t {
            Trigger::Start => "start",
            Trigger::Config => "config",
            Trigger::Drift { .. } => "drift",
            Trigger::Routing { .. } => "routing",
            Trigger::Scaling { .. } => "scaling",
            Trigger::Manual => "manual",
        })
        .collect();
    labels.sort();
    labels.dedup();
    labels.join("+")
}

/// What a batch of triggers needs planned: everything, unless every trigger names kinds or
/// records.
fn filter_for(batch: &[Trigger]) -> Filter {
    let mut targets = Vec::new();
    for t in batch {
        match t {
            Trigger::Drift { kinds } => {
                targets.extend(kinds.iter().map(|k| format!("{}.*", k.as_str())))
            }
            Trigger::Routing { records } => targets.extend(records.iter().cloned()),
            Trigger::Scaling { groups } => targets.extend(groups.iter().cloned()),
            _ => return Filter::default(),
        }
    }
    targets.sort();
    targets.dedup();
    Filter {
        targets,
        excludes: Vec::new(),
    }
}

/// Apply progress goes to the log, not a terminal.
struct Quiet;

impl crate::apply::Progress for Quiet {
    fn start(&self, total: usize) {
        tracing::debug!(total, "applying");
    }
    fn done(&self, change: &crate::plan::PlannedChange, result: &Result<(), String>) {
        match result {
            Ok(()) => {
                tracing::info!(address = %change.address, action = change.action.past(), "changed")
            }
            Err(e) => tracing::warn!(address = %change.address, error = %e, "change failed"),
        }
    }
    fn finish(&self) {}
}

/// Watches the stack directory and its `policies/`; a quiet period after the last change
/// triggers one reload.
async fn watch_files(shared: Arc<Shared>) {
    use notify_debouncer_full::notify::RecursiveMode;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let debouncer = notify_debouncer_full::new_debouncer(
        shared.settings.debounce,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            if let Ok(events) = result {
                // Writes only: reading the files (which every reconcile does) is an event too.
                let relevant = events.iter().any(|e| {
                    (e.kind.is_create() || e.kind.is_modify() || e.kind.is_remove())
                        && e.paths.iter().any(|p| {
                            p.extension().is_some_and(|x| x == "toml")
                                && !p.components().any(|c| c.as_os_str() == ".cairn")
                        })
                });
                if relevant {
                    let _ = tx.send(());
                }
            }
        },
    );
    let mut debouncer = match debouncer {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the stack's files; edits need SIGHUP");
            return;
        }
    };
    if let Err(e) = debouncer.watch(&shared.dir, RecursiveMode::Recursive) {
        tracing::error!(error = %e, "cannot watch the stack's files; edits need SIGHUP");
        return;
    }
    while rx.recv().await.is_some() {
        tracing::info!("the stack's files changed");
        shared.trigger(Trigger::Config);
    }
}

/// One timer per resource kind, each period jittered by up to 10% so checks do not align.
async fn drift_ticks(
    drift: BTreeMap<ResourceKind, Duration>,
    triggers: mpsc::UnboundedSender<Trigger>,
) {
    let mut set = tokio::task::JoinSet::new();
    for (kind, every) in drift {
        let triggers = triggers.clone();
        set.spawn(async move {
            loop {
                let jitter = every.mul_f64(fastrand::f64() * 0.1);
                tokio::time::sleep(every + jitter).await;
                if triggers.send(Trigger::Drift { kinds: vec![kind] }).is_err() {
                    return;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// SIGTERM/SIGINT: stop after the reconcile in flight (a second one stops at once; completed
/// changes are journaled either way); SIGHUP: reload the configuration.
async fn signals(shareds: Vec<Arc<Shared>>, shutdown: Arc<watch::Sender<bool>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                for shared in &shareds {
                    shared.trigger(Trigger::Config);
                }
            }
        }
    }
    tracing::info!("shutting down after the reconcile in flight (again to stop at once)");
    for shared in &shareds {
        shared.emit("stopping", "shutting down".into(), serde_json::Value::Null);
    }
    let _ = shutdown.send(true);
    // A second signal stops at once: every completed change is journaled already.
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: stopping now");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock: each kind is checked on its own period, never early, and
    /// jitter keeps it within 10% late.
    #[tokio::test(start_paused = true)]
    async fn drift_timers_fire_per_kind_within_their_jitter() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let drift = BTreeMap::from([
            (ResourceKind::Zone, Duration::from_secs(300)),
            (ResourceKind::Record, Duration::from_secs(60)),
        ]);
        let task = tokio::spawn(drift_ticks(drift, tx));
        let start = tokio::time::Instant::now();
        let mut record_ticks = Vec::new();
        let mut zone_ticks = Vec::new();
        while start.elapsed() < Duration::from_secs(660) {
            let Some(Trigger::Drift { kinds }) = rx.recv().await else {
                panic!("only drift triggers")
            };
            let at = start.elapsed();
            match kinds[..] {
                [ResourceKind::Record] => record_ticks.push(at),
                [ResourceKind::Zone] => zone_ticks.push(at),
                _ => panic!("one kind per trigger"),
            }
        }
        task.abort();
        // 60 s periods + up to 6 s jitter: 10 or 11 checks in 660 s, gaps in [60, 66] s.
        assert!((10..=11).contains(&record_ticks.len()), "{record_ticks:?}");
        let mut last = Duration::ZERO;
        for t in &record_ticks {
            let gap = *t - last;
            assert!(
                gap >= Duration::from_secs(60) && gap <= Duration::from_secs(66),
                "{gap:?}"
            );
            last = *t;
        }
        assert_eq!(zone_ticks.len(), 2, "{zone_ticks:?}");
        assert!(
            zone_ticks[0] >= Duration::from_secs(300) && zone_ticks[0] <= Duration::from_secs(330)
        );
    }

    #[test]
    fn triggers_naming_kinds_or_records_plan_only_those() {
        let f = filter_for(&[
            Trigger::Drift {
                kinds: vec![ResourceKind::Record],
            },
            Trigger::Routing {
                records: vec!["record.t.example.com/api/A".into()],
            },
        ]);
        assert_eq!(f.targets, ["record.*", "record.t.example.com/api/A"]);
        assert!(filter_for(&[Trigger::Drift { kinds: vec![] }, Trigger::Config]).is_empty());
    }
}
