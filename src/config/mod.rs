//! Configuration: TOML stack files → validated `Stack`.
//!
//! `load` keeps spans and reads every entry it can; `compile` validates everything and is
//! the only way to get a `Stack`. Errors come back all at once as diagnostics.

mod compile;
mod load;
pub mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use compile::compile;
pub(crate) use compile::is_gcp_region;
pub use load::{Entry, FileReader, RawConfig, load, read_dir, suggest};

use crate::diag::{Diag, Location, SourceFile};
use crate::model::{Address, Attrs, Cloud, ProviderKind, ProviderRef};
use raw::{DataClassification, Enforcement, Framework};

/// A validated stack: the only input to graph building and planning.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub environment: String,
    pub dir: PathBuf,
    pub backend: Backend,
    pub providers: Providers,
    /// Zones, groups and records, in declaration order.
    pub resources: Vec<Desired>,
    pub services: Vec<Service>,
    pub scaling: BTreeMap<String, ScalingPolicy>,
    pub compliance: Compliance,
    pub metrics: MetricsConfig,
    pub monitoring: Vec<Monitor>,
    pub files: Vec<Arc<SourceFile>>,
    /// The `[stack]` table, where stack-wide findings point.
    pub origin: Option<Location>,
    /// What `cairn enforce`'s probes expect of routed records' endpoints, when declared.
    pub health_expectations: BTreeMap<Address, HealthExpectation>,
}

/// A health check's expectations beyond answering (not part of the resource's attributes:
/// clouds' own health checks do not all support them).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthExpectation {
    pub status: Option<u16>,
    pub body: Option<String>,
}

/// One resource the stack wants to exist.
#[derive(Debug, Clone)]
pub struct Desired {
    pub address: Address,
    pub provider: ProviderRef,
    pub attrs: Attrs,
    pub depends_on: Vec<Dependency>,
    /// Declared `protected`: policies refuse to delete or replace it.
    pub protected: bool,
    /// The declaration, for diagnostics.
    pub origin: Location,
}

#[derive(Debug, Clone)]
pub struct Dependency {
    pub address: Address,
    /// Where an explicit `depends_on` names it; `None` for references implied by fields.
    pub origin: Option<Location>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Local {
        dir: PathBuf,
    },
    Postgres {
        db: crate::state::pg::Db,
        /// Where this machine keeps the stack's local files (audit log, failovers in force):
        /// `.cairn/` beside the stack.
        dir: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct Providers {
    /// Which implementation serves each cloud.
    pub by_cloud: BTreeMap<Cloud, ProviderKind>,
    pub sandbox_dir: PathBuf,
    pub aws: Option<AwsSettings>,
    pub azure: Option<AzureSettings>,
    pub gcp: Option<GcpSettings>,
}

impl Providers {
    pub fn for_cloud(&self, cloud: Cloud) -> ProviderRef {
        ProviderRef {
            kind: self
                .by_cloud
                .get(&cloud)
                .copied()
                .unwrap_or(ProviderKind::Sandbox),
            cloud,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AwsSettings {
    pub region: String,
    pub profile: Option<String>,
    pub endpoint: Option<String>,
    pub requests_per_second: u32,
    pub burst: u32,
    pub insync_timeout: Duration,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AzureSettings {
    pub subscription_id: String,
    pub resource_group: String,
    pub tenant_id: Option<String>,
    pub endpoint: Option<String>,
    pub requests_per_second: u32,
    pub burst: u32,
    /// How long a long-running ARM operation (a scale set update) may take.
    #[serde(default = "default_azure_operation_timeout")]
    pub operation_timeout: Duration,
}

/// Azure's own clients wait minutes for a scale set to add VMs; ten is ample for most.
pub const DEFAULT_AZURE_OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

fn default_azure_operation_timeout() -> Duration {
    DEFAULT_AZURE_OPERATION_TIMEOUT
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GcpSettings {
    pub project: String,
    pub endpoint: Option<String>,
    pub requests_per_second: u32,
    pub burst: u32,
    pub change_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub data_classification: Option<DataClassification>,
    /// Group addresses, one per deployment.
    pub groups: Vec<Address>,
    pub protected: bool,
    pub protocol: Option<raw::Protocol>,
    pub tls_min_version: Option<String>,
    pub encryption_at_rest: Option<bool>,
    pub backup_retention_days: Option<u32>,
    pub audit_logging: Option<bool>,
    pub log_retention_days: Option<u32>,
    pub origin: Location,
}

#[derive(Debug, Clone)]
pub struct ScalingPolicy {
    pub target_utilization: f64,
    pub startup: Duration,
    pub scale_in_stabilization: Duration,
    pub predictive: Option<Predictive>,
    pub cost: Option<Cost>,
    /// The service's load and what one replica serves (both or neither).
    pub load: Option<Load>,
    /// Multiplies the load before sizing.
    pub load_factor: f64,
    /// At most `percent` of the replicas removed per `period`.
    pub scale_in_limit: Option<(f64, Duration)>,
    pub scale_to_zero_after: Option<Duration>,
    pub origin: Location,
}

#[derive(Debug, Clone)]
pub struct Load {
    pub metric: Metric,
    /// Load one replica serves at 100% utilization.
    pub per_replica: f64,
}

/// Where a metric's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// PromQL asked of `[metrics].prometheus`.
    Query(String),
    /// A `timestamp,value` CSV history (path relative to the stack directory).
    File(PathBuf),
    /// A `timestamp,value` CSV the sandbox replays, looping, as the live value.
    Trace(PathBuf),
}

/// A `[monitoring.KEY]` table: anomaly detection on a service's or a deployment's metrics.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub service: String,
    /// The deployment (`api@aws/eu-west-1`) when the key names one.
    pub deployment: Option<String>,
    /// Metric name (`cpu`, `memory`, `latency`, `error_rate`, `disk`, `network`) and source.
    pub metrics: Vec<(String, Metric)>,
    pub threshold: Option<f64>,
    pub on_anomaly: raw::AnomalyAction,
    pub route_away_for: Duration,
    pub origin: Location,
}

/// The `[metrics]` table.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    pub prometheus: Option<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Predictive {
    pub horizon: Duration,
    pub history: Duration,
}

#[derive(Debug, Clone)]
pub struct Cost {
    pub per_replica_hour: f64,
    pub max_per_hour: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Compliance {
    pub frameworks: Vec<Framework>,
    pub allowed_regions: BTreeMap<DataClassification, Vec<String>>,
    pub change_approvers: Vec<String>,
    /// Per-rule enforcement set by the stack, with where it was set.
    pub enforcement: BTreeMap<String, (Enforcement, Location)>,
    /// The `[compliance]` table.
    pub origin: Option<Location>,
}

/// Reads, loads and compiles the stack in `dir`: the whole front half of the pipeline.
/// Returns the stack and its warnings, or every diagnostic when there is an error.
pub fn load_stack(dir: &Path, env: Option<&str>) -> Result<(Stack, Vec<Diag>), Vec<Diag>> {
    let files = read_dir(dir).map_err(|d| vec![d])?;
    compile_files(files, dir, env)
}

/// Loads and compiles already-read files as the stack in `dir` (which locates its state).
pub fn compile_files(
    files: Vec<Arc<SourceFile>>,
    dir: &Path,
    env: Option<&str>,
) -> Result<(Stack, Vec<Diag>), Vec<Diag>> {
    let (raw, mut diags) = load(files, env);
    let explicit_env = env.is_some();
    match compile(raw, dir, explicit_env) {
        Ok((stack, warnings)) => {
            diags.extend(warnings);
            if diags.iter().any(Diag::is_error) {
                Err(diags)
            } else {
                Ok((stack, diags))
            }
        }
        Err(more) => {
            diags.extend(more);
            Err(diags)
        }
    }
}
