//! Command-line arguments (clap). Help text teaches; each command maps to one function.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Getting started:
  cairn validate examples/quickstart     check a stack
  cairn plan examples/quickstart         see what would change
  cairn apply examples/quickstart        make it so (on the embedded sandbox cloud)

Exit codes: 0 success · 1 error · 2 changes pending (plan --detailed-exitcode)
            or blocking policy findings (review, policy check)
Docs: docs/README.md";

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Declarative multi-cloud infrastructure: TOML stacks → plan → apply",
    long_about = "cairn reads a stack (a directory of TOML files declaring DNS zones, records with routing and \
health checks, services deployed across clouds, scaling and compliance settings), compares it with the live \
state of each cloud, and applies the difference. With no cloud configured it uses the embedded sandbox, a \
simulated multi-cloud stored under .cairn/sandbox/.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Disable colors (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a stack's files: syntax, types, values, references, duplicates and cycles.
    #[command(
        after_help = "Every error is reported at once, with file:line:col. Exit code 1 when there are errors."
    )]
    Validate(StackArgs),

    /// Show what apply would change, without changing anything.
    #[command(
        after_help = "Symbols: + create, ~ update in place, -/+ replace, - destroy.\n\
Save a plan with --out and apply exactly it later with `cairn apply FILE`; it is refused if the state or \
the live resources changed in between.\n\
Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error, 2 changes pending (--detailed-exitcode)."
    )]
    Plan(PlanArgs),

    /// Apply a stack (or a saved plan file) to the live clouds.
    #[command(
        after_help = "Asks for confirmation unless --auto-approve. Every completed change is recorded at once, \
so an interrupted apply loses nothing: run it again and it converges.\n\
Policy findings are checked first: a hard-mandatory one stops the apply; a soft-mandatory one stops it \
unless overridden with --override RULE --reason TEXT (recorded in the audit log)."
    )]
    Apply(ApplyArgs),

    /// Destroy every resource the stack manages.
    Destroy(DestroyArgs),

    /// Run the daemon: keep a stack true, correct drift, probe health, fail DNS over.
    #[command(
        after_help = "Example:\n  cairn enforce examples/quickstart --token-file tokens.txt\n\
Reconciles at start, when a stack or policy file changes (an edit that does not validate or fails a \
hard-mandatory policy is rejected and the last good configuration stays in force), on each kind's \
drift interval, and when a routed record's members change health. SIGTERM/SIGINT stop it after the \
reconcile in flight (a second signal stops at once); SIGHUP reloads. The API is described in \
docs/enforce.md.\n\
Exit codes: 0 stopped by a signal · 1 could not start, or stopped by a second signal."
    )]
    Enforce(EnforceArgs),

    /// Review a change between two git revisions: semantic diff, plan and new policy findings.
    #[command(after_help = "Example (in a pull request's CI job):\n  \
cairn review --base origin/main --format github examples/quickstart\n\
Loads the stack at --base and at HEAD from git, compares declarations and policies, and reports the \
findings HEAD adds (all of them with --all). Weakened rules and new waivers are called out.\n\
Exit codes: 0 nothing blocking · 1 error · 2 blocking findings (hard- or soft-mandatory, not waived).")]
    Review(ReviewArgs),

    /// Rightsize services from their load history: minimum replicas, scaling target, instance size.
    #[command(
        after_help = "Example:\n  cairn recommend examples/quickstart --out rightsizing.diff\n\
Reads each service's `load` metric (scaling policy) over --history and replays it: the target \
keeps enough headroom for the load's growth over the startup delay; the minimum is what the \
quietest 1% of the history needs; a smaller or larger instance size is proposed when it is \
at least 5% cheaper. Prints the figures with a confidence, and the proposal as a unified diff \
of the stack's files (--out writes it for `git apply`). Values set with ${var.…} are not edited.\n\
Exit codes: 0 success · 1 error."
    )]
    Recommend(RecommendArgs),

    /// Explain scaling decisions.
    #[command(subcommand)]
    Scale(ScaleCommand),

    /// List the compliance rules in force, or check a stack against them.
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// Show the recorded state, or a saved plan file.
    Show(ShowArgs),

    /// Print the dependency graph in Graphviz DOT (`cairn graph | dot -Tsvg > graph.svg`).
    Graph(StackArgs),

    /// Inspect and edit recorded state.
    #[command(subcommand)]
    State(StateCommand),

    /// Adopt an existing live resource into the stack's state.
    #[command(
        after_help = "Example: cairn import record.shop.example.com/www/A aws/record.shop.example.com/www/A\n\
The ID is the provider's identifier (`cairn sandbox list` shows sandbox IDs). The resource should also be \
declared in the stack, or the next apply deletes it."
    )]
    Import(ImportArgs),

    /// Change the embedded sandbox cloud behind cairn's back (to see and test drift).
    #[command(subcommand)]
    Sandbox(SandboxCommand),

    /// Check and read the tamper-evident audit log (needs CAIRN_AUDIT_KEY or CAIRN_AUDIT_KEY_FILE).
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Print the JSON Schema of stack files (for editors; also in schemas/).
    Schema,

    /// Print shell completions: `cairn completions bash > /etc/bash_completion.d/cairn`.
    Completions { shell: clap_complete::Shell },

    /// Replay a demand trace against a scaling policy: overload, unserved demand, replica-hours, waste.
    #[command(
        after_help = "Example:\n  cairn simulate --trace demand.csv --policy predictive --startup 5m --target 0.6\n\
The trace is a `timestamp,value` CSV file, one row per step (e.g. 5 minutes). Before each step the \
policy sees the demand of the steps before it only; replicas it adds serve after --startup. The report \
compares the policy with static provisioning at the trace's peak. --steps writes every step (timestamp, \
demand, ready capacity, desired replicas, forecast) so the figures can be recomputed; a chart of demand, \
capacity and forecast is saved as SVG. See docs/scaling.md."
    )]
    Simulate(SimulateArgs),
    /// Numenta Anomaly Benchmark: run an anomaly detector over NAB's data and score it.
    #[command(subcommand)]
    Nab(super::nab::NabCommand),
}

#[derive(Debug, Args, Clone)]
pub struct StackArgs {
    /// The stack directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,

    /// Environment (default: [stack] environment): selects variable overrides, state and sandbox.
    #[arg(long, short = 'e', env = "CAIRN_ENV")]
    pub env: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct LockArgs {
    /// Wait this long for the state lock instead of failing at once (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
}

#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only this address and what it depends on (repeatable; a trailing * matches a prefix).
    #[arg(long, value_name = "ADDRESS")]
    pub target: Vec<String>,

    /// Leave out this address and everything that depends on it (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PolicyArgs {
    /// Evaluate policies as if no waiver were written (an audit of everything waived).
    #[arg(long)]
    pub no_waivers: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct OverrideArgs {
    /// Proceed despite a soft-mandatory finding of this rule (`RULE` or `RULE=RESOURCE`;
    /// repeatable). Needs --reason and an audit key: every override is audit-logged.
    #[arg(long = "override", value_name = "RULE[=RESOURCE]")]
    pub overrides: Vec<String>,

    /// Why the overrides are justified; recorded with them in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Save the plan to this file, for `cairn apply FILE`.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Plan the destruction of everything the stack manages.
    #[arg(long)]
    pub destroy: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A stack directory, or a plan file saved by `cairn plan --out`.
    #[arg(default_value = ".", value_name = "DIR|PLANFILE")]
    pub path: PathBuf,

    /// Environment (default: [stack] environment): selects variable overrides, state and sandbox.
    #[arg(long, short = 'e', env = "CAIRN_ENV")]
    pub env: Option<String>,

    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub overrides: OverrideArgs,

    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,

    /// How many change batches may be in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many change batches may be in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct EnforceArgs {
    /// The stack directories to enforce. Replicas sharing stacks (postgres backend) are all
    /// given the same list; each stack is led by one of them at a time.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Environment (default: each stack's [stack] environment).
    #[arg(long, short = 'e', env = "CAIRN_ENV")]
    pub env: Option<String>,
    /// Address of the HTTP API (status, events, metrics, operator actions).
    #[arg(long, default_value = "127.0.0.1:7373", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// Report drift (events, /status, metrics) without correcting it.
    #[arg(long)]
    pub report_only: bool,
    /// How often zones are checked for drift (each check jittered by up to 10%).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub zone_interval: Duration,
    /// How often records are checked for drift.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub record_interval: Duration,
    /// How often scaling groups are checked for drift.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub group_interval: Duration,
    /// When a failed-over record returns to its primary: as soon as it recovers, or only when
    /// an operator asks (POST /failback).
    #[arg(long, value_enum, default_value = "auto")]
    pub failback: crate::enforce::failover::Failback,
    /// How endpoints are probed: `auto` probes sandbox deployments through the sandbox's
    /// simulated endpoints (`cairn sandbox endpoint down`), `network` probes every endpoint
    /// over HTTP(S)/TCP.
    #[arg(long, value_enum, default_value = "auto")]
    pub probes: crate::enforce::ProbeMode,
    /// File of `ROLE TOKEN` lines (roles: viewer, operator, admin) for the API's bearer tokens.
    /// Without one, reading is open and operator actions are refused.
    #[arg(long, env = "CAIRN_ENFORCE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Quiet time after a file change before reloading.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Wait this long for the state lock on each reconcile.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// How often scaling is decided for each service whose scaling policy has a load metric.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub scale_interval: Duration,
    /// Log lines on stderr as text or as JSON objects (level filter: CAIRN_LOG, e.g. `debug`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Postgres backend: how long a stack's lease lasts without renewal (renewed every
    /// quarter of it). A stack whose leader dies is taken over within about 1.25 times this.
    #[arg(long, default_value = "3s", value_parser = parse_lease)]
    pub lease: Duration,
    /// Postgres backend: this replica's name, as /status shows it (default: HOST-PID).
    #[arg(long, env = "CAIRN_REPLICA_ID", value_name = "NAME")]
    pub replica_id: Option<String>,
    /// Postgres backend: the URL of this replica's API that other replicas report (default:
    /// http://LISTEN).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
}

fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(400) {
        return Err("a lease shorter than 400ms cannot be renewed reliably".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewFormat {
    /// Text for a terminal, findings as diagnostics.
    Human,
    /// One JSON document.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning (`github/codeql-action/upload-sarif`).
    Sarif,
    /// GitHub Actions workflow commands: an annotation per finding (most severe first) and note.
    Github,
    /// A pull-request comment, with the plan collapsed.
    Markdown,
}

#[derive(Debug, Subcommand)]
pub enum ScaleCommand {
    /// Show a service's load history, forecast and scaling decision now, and why.
    #[command(
        after_help = "Example:\n  cairn scale explain api examples/quickstart --chart api.svg\n\
Reads the service's `load` metric over its predictive history (14 days by default), forecasts \
it over the horizon, and decides replicas as `cairn enforce` would: the reactive (HPA) \
recommendation, the forecast's, and the constraint that bound the decision (min, max, cost \
cap, stabilization, scale-in limit, scale to zero). Current replicas come from the recorded \
state, else the declaration. Writes an SVG chart of the last two days, the forecast and the \
desired capacity (default SERVICE-scale.svg).\n\
Exit codes: 0 success · 1 error."
    )]
    Explain(ScaleExplainArgs),
}

#[derive(Debug, Args)]
pub struct ScaleExplainArgs {
    /// The service, as named in `[scaling.SERVICE]`.
    pub service: String,

    #[command(flatten)]
    pub stack: StackArgs,

    /// Where to write the SVG chart (default: SERVICE-scale.svg in the current directory).
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// How much load history to size from (at least a day is needed; up to 14 days count
    /// towards confidence).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "14d")]
    pub history: Duration,

    /// Write the proposed change, a unified diff, to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The git revision to compare HEAD with (e.g. `origin/main`, a commit).
    #[arg(long, value_name = "REV")]
    pub base: String,
    /// The revision under review.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub head: String,
    /// Report every finding at HEAD, not only those the change adds.
    #[arg(long)]
    pub all: bool,
    /// Output format (`--json` is the same as `--format json`).
    #[arg(long, value_enum, default_value = "human")]
    pub format: ReviewFormat,
    /// Do not compute the plan (no provider is contacted).
    #[arg(long)]
    pub no_plan: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// List the rules in force for a stack (built-in packs from its frameworks, and its own).
    List(StackArgs),
    /// Check a stack's declarations against its rules (no plan; see `cairn plan` for changes).
    #[command(after_help = "Exit codes: 0 nothing blocking · 1 error · 2 blocking findings.")]
    Check {
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A stack directory (shows its state) or a saved plan file.
    #[arg(default_value = ".", value_name = "DIR|PLANFILE")]
    pub path: PathBuf,
    /// Environment (default: [stack] environment): selects variable overrides, state and sandbox.
    #[arg(long, short = 'e', env = "CAIRN_ENV")]
    pub env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the addresses in state.
    List(StackArgs),
    /// Show one resource as recorded.
    Show {
        /// The resource's address, e.g. `record.shop.example.com/api/A`.
        address: String,
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Stop managing resources: forget them and clear their ownership marker (the live
    /// resources stay).
    Rm {
        /// Addresses to forget, e.g. `group.api@aws/us-east-1`.
        #[arg(required = true)]
        addresses: Vec<String>,
        #[arg(long, short = 'C', default_value = ".")]
        dir: PathBuf,
        /// Environment (default: [stack] environment): selects variable overrides, state and sandbox.
        #[arg(long, short = 'e', env = "CAIRN_ENV")]
        env: Option<String>,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Show who holds the state lock; explain how to release it.
    Unlock(StackArgs),
    /// Copy the state to the other backend (local ⇄ postgres), then read both back and
    /// compare them.
    #[command(
        after_help = "The source is the backend the stack's [backend] names; the copy goes to \
--to. Both are locked while copying; the source is left as it was. A destination that \
already holds state is refused unless --force. After migrating to postgres, set \
[backend] kind = \"postgres\" in the stack.

Exit codes: 0 copied and verified, 1 refused or failed (nothing is left half-written: the \
copy is one transaction or one atomic snapshot)."
    )]
    Migrate(MigrateArgs),
    /// The batches written to the state, newest first: serial, time, writer, operations
    /// (postgres backend).
    History {
        #[command(flatten)]
        stack: StackArgs,
        /// How many batches to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Local,
    Postgres,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The backend to copy the state to.
    #[arg(long, value_enum)]
    pub to: BackendArg,
    /// Postgres: connection string (default: [backend] url, CAIRN_PG_URL, DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Postgres: CA certificate(s) (PEM) the server's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Local: the directory to keep state under, relative to the stack (default: `.cairn`).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Overwrite a destination that already holds state.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the chain of MACs and the checkpoint; name the first bad entry.
    #[command(after_help = "Exit codes: 0 intact, 1 tampered or unverifiable.")]
    Verify(StackArgs),
    /// Print entries (JSON lines with --json).
    Log {
        #[command(flatten)]
        stack: StackArgs,
        /// Only entries of this action (apply, destroy, import, state rm, override, waiver,
        /// enforce, failover, failback, alert, config_rejected, scale, route_away).
        #[arg(long)]
        action: Option<String>,
        /// Only entries at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        since: Option<jiff::Timestamp>,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Address to record it under, e.g. `record.shop.example.com/www/A`.
    pub address: String,
    /// The provider's ID of the live resource.
    pub id: String,
    #[arg(long, short = 'C', default_value = ".")]
    pub dir: PathBuf,
    /// Environment (default: [stack] environment): selects variable overrides, state and sandbox.
    #[arg(long, short = 'e', env = "CAIRN_ENV")]
    pub env: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// List everything in the sandbox, with IDs and owners.
    List(SandboxDir),
    /// Create or edit a record out of band.
    #[command(after_help = "Example: cairn sandbox set-record shop.example.com api A --ttl 60")]
    SetRecord {
        zone: String,
        name: String,
        #[arg(value_name = "TYPE")]
        rtype: String,
        /// New TTL in seconds.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=604_800))]
        ttl: Option<u32>,
        /// New value(s) for a simple record (repeatable).
        #[arg(long = "value")]
        values: Vec<String>,
        /// Cloud namespace, when the zone exists in several.
        #[arg(long)]
        cloud: Option<String>,
        #[command(flatten)]
        dir: SandboxDir,
    },
    /// Delete a record, zone or group out of band, by sandbox ID or address.
    Delete {
        /// e.g. `aws/record.shop.example.com/api/A` or `record.shop.example.com/api/A`.
        what: String,
        #[command(flatten)]
        dir: SandboxDir,
    },
    /// Change a scaling group's capacity out of band.
    Resize {
        /// The deployment, e.g. `api@aws/us-east-1`.
        deployment: String,
        #[arg(long)]
        desired: u32,
        #[command(flatten)]
        dir: SandboxDir,
    },
    /// Mark a deployment's endpoint healthy (`up`) or unhealthy (`down`).
    Endpoint {
        #[arg(value_parser = ["up", "down"])]
        state: String,
        /// The deployment, e.g. `api@aws/us-east-1`.
        deployment: String,
        #[command(flatten)]
        dir: SandboxDir,
    },
}

#[derive(Debug, Args, Clone)]
pub struct SandboxDir {
    /// The stack whose sandbox to use.
    #[arg(long = "dir", short = 'C', default_value = ".")]
    pub dir: PathBuf,
    /// Environment (default: [stack] environment): selects variable overrides, state and sandbox.
    #[arg(long, short = 'e', env = "CAIRN_ENV")]
    pub env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimPolicy {
    /// The Kubernetes HPA algorithm on the last observed demand.
    Reactive,
    /// The forecast over the startup delay, never below the reactive recommendation.
    Predictive,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The demand trace: a `timestamp,value` CSV file.
    #[arg(long, value_name = "CSV")]
    pub trace: PathBuf,

    #[arg(long, value_enum)]
    pub policy: SimPolicy,

    /// Time from asking for a replica to its serving.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub startup: Duration,

    /// The utilization replicas are sized for (above 0, at most 1).
    #[arg(long, default_value_t = 0.6)]
    pub target: f64,

    /// Demand one replica serves at 100% utilization [default: the trace's mean demand needs 10
    /// replicas at the target].
    #[arg(long, value_name = "DEMAND")]
    pub capacity: Option<f64>,

    /// Per-service factor applied to the demand before sizing (a share or a safety margin).
    #[arg(long, default_value_t = 1.0)]
    pub load_factor: f64,

    #[arg(long, default_value_t = 1)]
    pub min: u32,

    #[arg(long)]
    pub max: Option<u32>,

    /// Scale in only to the highest recommendation made within this window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub stabilization: Duration,

    /// Remove at most this percentage of the replicas within each --scale-in-period.
    #[arg(long, value_name = "PERCENT")]
    pub scale_in_limit: Option<f64>,

    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    pub scale_in_period: Duration,

    /// Price of one replica for an hour (with --max-cost-per-hour: the cost cap).
    #[arg(long, requires = "max_cost_per_hour")]
    pub cost_per_replica_hour: Option<f64>,

    /// Budget per hour: never more replicas than it pays for.
    #[arg(long, requires = "cost_per_replica_hour")]
    pub max_cost_per_hour: Option<f64>,

    /// Scale to zero after this long without demand; wake when demand returns.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub scale_to_zero_after: Option<Duration>,

    /// How far ahead the predictive policy forecasts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    pub horizon: Duration,

    /// How much history the forecast is fitted on, at most.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "14d")]
    pub history: Duration,

    /// The quantile of demand the forecast's upper bound is, which must fit in the ready capacity.
    #[arg(long, default_value_t = 0.95)]
    pub quantile: f64,

    /// Write every step as CSV: timestamp, demand, ready capacity, desired replicas, forecast.
    #[arg(long, value_name = "FILE")]
    pub steps: Option<PathBuf>,

    /// Where to save the chart [default: TRACE-POLICY.svg in the current directory].
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,

    /// Do not save a chart.
    #[arg(long, conflicts_with = "chart")]
    pub no_chart: bool,
}
