//! Unvalidated configuration as written in the stack's TOML files, spans kept.
//!
//! These types are deserialized one top-level entry at a time (see `load`), so one bad entry
//! does not hide the errors in the others. The JSON Schema in `schemas/` is generated from them.

use std::collections::BTreeMap;
use std::ops::Range;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::model::{Cloud, RecordType};

/// A value with the byte range it came from. Delegates its schema to `T`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Sp<T>(pub serde_spanned::Spanned<T>);

impl<T> Sp<T> {
    pub fn get(&self) -> &T {
        self.0.get_ref()
    }
    pub fn span(&self) -> Range<usize> {
        self.0.span()
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let inner = T::json_schema(generator);
        // Plain strings already accept a reference; enums and other types get it added.
        if inner.get("type").and_then(|t| t.as_str()) == Some("string")
            && inner.get("enum").is_none()
        {
            return inner;
        }
        // Any value may also be a whole `${var.NAME}` reference, resolved before typing.
        schemars::json_schema!({
            "anyOf": [inner, { "type": "string", "pattern": "^\\$\\{[^}]+\\}$" }]
        })
    }
}

/// The JSON Schema of a stack file (draft 2020-12), generated from these types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RawFile);
    let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    text.push('\n');
    text
}

// Describes a whole file for the JSON Schema; the loader reads each top-level key on its own.
/// A cairn stack file. Every key is optional: a stack is the union of its directory's files.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, title = "cairn stack file")]
pub struct RawFile {
    /// The stack's identity. Exactly one file of the stack declares it.
    pub stack: Option<RawStack>,
    /// Where state is kept.
    pub backend: Option<RawBackend>,
    /// Which provider serves each cloud. Clouds without a real provider use the sandbox.
    pub provider: Option<RawProviders>,
    /// Values referenced as `${var.NAME}` in any string.
    pub variables: Option<BTreeMap<String, VariableValue>>,
    /// Per-environment overrides, selected with `--env NAME`.
    pub env: Option<BTreeMap<String, RawEnv>>,
    /// DNS zones.
    pub zone: Option<Vec<RawZone>>,
    /// Services and where they are deployed.
    pub service: Option<Vec<RawService>>,
    /// DNS records with routing and health checks.
    pub record: Option<Vec<RawRecord>>,
    /// Scaling policy per service name.
    pub scaling: Option<BTreeMap<String, RawScaling>>,
    /// Compliance settings.
    pub compliance: Option<RawCompliance>,
    /// Where metrics come from: the Prometheus server that `query` metrics are asked of.
    pub metrics: Option<RawMetrics>,
    /// Anomaly detection per service or deployment (`"api"` or `"api@aws/eu-west-1"`).
    pub monitoring: Option<BTreeMap<String, RawMonitoring>>,
}

/// The top-level keys a stack file may have, in the order they are read.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "stack",
    "backend",
    "provider",
    "variables",
    "env",
    "zone",
    "service",
    "record",
    "scaling",
    "compliance",
    "metrics",
    "monitoring",
];

/// A variable's value: any TOML scalar or array.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum VariableValue {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<VariableValue>),
    Table(BTreeMap<String, VariableValue>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Stack")]
pub struct RawStack {
    /// Stack name, e.g. `shop`.
    pub name: Sp<String>,
    /// Default environment when `--env` is not given (default: `default`).
    pub environment: Option<Sp<String>>,
    pub description: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `.cairn/` beside the stack.
    Local,
    /// Shared state in PostgreSQL (for teams).
    Postgres,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Backend")]
pub struct RawBackend {
    pub kind: Sp<BackendKind>,
    /// Local backend: state directory (default `.cairn` beside the stack).
    pub path: Option<Sp<String>>,
    /// Postgres backend: connection string (or the `CAIRN_PG_URL` environment variable).
    pub url: Option<Sp<String>>,
    /// Postgres backend: CA certificate(s) (PEM) the server's certificate must chain to
    /// (default: `sslrootcert=` in the URL, `PGSSLROOTCERT`, or the system's roots).
    pub ca_file: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Providers")]
pub struct RawProviders {
    /// The embedded simulated multi-cloud, stored under `.cairn/sandbox/`.
    pub sandbox: Option<RawSandboxProvider>,
    pub aws: Option<RawAwsProvider>,
    pub azure: Option<RawAzureProvider>,
    pub gcp: Option<RawGcpProvider>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "SandboxProvider")]
pub struct RawSandboxProvider {
    /// Sandbox directory (default `.cairn/sandbox` beside the stack).
    pub path: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "AwsProvider")]
pub struct RawAwsProvider {
    pub region: Sp<String>,
    /// Named profile from the shared AWS config files.
    pub profile: Option<Sp<String>>,
    /// Custom endpoint URL (e.g. a local emulator); `AWS_ENDPOINT_URL` works too.
    pub endpoint: Option<Sp<String>>,
    /// Client-side rate limit on API calls (default 10 per second, Route53's refill rate).
    pub requests_per_second: Option<Sp<i64>>,
    /// Calls allowed in a burst before the rate limit applies (default 50).
    pub burst: Option<Sp<i64>>,
    /// How long to wait for a Route53 change to become INSYNC (default `60s`).
    pub insync_timeout: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "AzureProvider")]
pub struct RawAzureProvider {
    pub subscription_id: Sp<String>,
    /// The resource group that holds the DNS zones and the scale sets.
    pub resource_group: Sp<String>,
    pub tenant_id: Option<Sp<String>>,
    /// Another ARM endpoint (default `https://management.azure.com`); HTTPS only.
    pub endpoint: Option<Sp<String>>,
    /// Client-side rate limit on ARM requests (default 20 per second).
    pub requests_per_second: Option<Sp<i64>>,
    /// Requests allowed in a burst before the rate limit applies (default 100).
    pub burst: Option<Sp<i64>>,
    /// How long to wait for a scale set update to finish, e.g. `10m` (the default).
    pub operation_timeout: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "GcpProvider")]
pub struct RawGcpProvider {
    /// The Google Cloud project ID that holds the managed zones and instance groups.
    pub project: Sp<String>,
    /// Another base URL for Cloud DNS and Compute Engine (default `https://dns.googleapis.com`
    /// and `https://compute.googleapis.com`), e.g. a private endpoint or a local fake.
    pub endpoint: Option<Sp<String>>,
    /// Client-side rate limit on API requests (default 20 per second).
    pub requests_per_second: Option<Sp<i64>>,
    /// Requests allowed in a burst before the rate limit applies (default 100).
    pub burst: Option<Sp<i64>>,
    /// How long to wait for a Cloud DNS change to be `done` or a Compute Engine operation to
    /// be `DONE` (default `60s`).
    pub change_timeout: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Env")]
pub struct RawEnv {
    /// Variable values for this environment; they override `[variables]`.
    #[serde(default)]
    pub variables: BTreeMap<String, VariableValue>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Zone")]
pub struct RawZone {
    /// Fully qualified zone name, e.g. `shop.example.com`.
    pub name: Sp<String>,
    /// Cloud hosting the zone.
    pub cloud: Sp<Cloud>,
    /// Protected from deletion: policies refuse plans that delete or replace it.
    pub protected: Option<Sp<bool>>,
    /// Addresses (or `service.NAME`) this zone must wait for.
    #[serde(default)]
    pub depends_on: Vec<Sp<String>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DataClassification {
    Public,
    Internal,
    Confidential,
    Personal,
    Health,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Service")]
pub struct RawService {
    pub name: Sp<String>,
    /// What data the service handles; compliance rules read it.
    pub data_classification: Option<Sp<DataClassification>>,
    /// Protected from deletion: policies refuse plans that delete or replace its groups.
    pub protected: Option<Sp<bool>>,
    /// What the service's endpoint serves: `https`, `http` or `tcp`.
    pub protocol: Option<Sp<Protocol>>,
    /// Lowest TLS version the endpoint accepts: `1.0`, `1.1`, `1.2` or `1.3`.
    pub tls_min_version: Option<Sp<String>>,
    /// Whether the service's stored data is encrypted at rest.
    pub encryption_at_rest: Option<Sp<bool>>,
    /// Days backups of the service's data are kept (0: no backups).
    pub backup_retention_days: Option<Sp<i64>>,
    /// Whether access to the service's data is written to an audit log.
    pub audit_logging: Option<Sp<bool>>,
    /// Days the service's logs are kept.
    pub log_retention_days: Option<Sp<i64>>,
    #[serde(default)]
    pub depends_on: Vec<Sp<String>>,
    /// Where the service runs: one scaling group per cloud and region.
    #[serde(default)]
    pub deployment: Vec<RawDeployment>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Deployment")]
pub struct RawDeployment {
    pub cloud: Sp<Cloud>,
    pub region: Sp<String>,
    pub instance_type: Option<Sp<String>>,
    pub min: Sp<i64>,
    pub max: Sp<i64>,
    /// Initial desired capacity (default: `min`).
    pub desired: Option<Sp<i64>>,
    /// Public address of the deployment's load balancer; records route to it.
    pub endpoint: Option<Sp<String>>,
    /// Name of the existing scaling group to manage (AWS Auto Scaling group, Azure scale set,
    /// GCP managed instance group). Default: the service name.
    pub group: Option<Sp<String>>,
}

impl RawDeployment {
    /// From its first value to its last: the deployment's own lines within its service.
    pub fn span(&self) -> Range<usize> {
        let spans = [
            Some(self.cloud.span()),
            Some(self.region.span()),
            self.instance_type.as_ref().map(Sp::span),
            Some(self.min.span()),
            Some(self.max.span()),
            self.desired.as_ref().map(Sp::span),
            self.endpoint.as_ref().map(Sp::span),
            self.group.as_ref().map(Sp::span),
        ];
        let spans = spans.into_iter().flatten();
        let start = spans.clone().map(|s| s.start).min().unwrap_or(0);
        let end = spans.map(|s| s.end).max().unwrap_or(start);
        start..end
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoutingPolicy {
    Simple,
    Weighted,
    Failover,
    Latency,
    Geolocation,
    Multivalue,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Record")]
pub struct RawRecord {
    pub zone: Sp<String>,
    /// Name relative to the zone (`@` for the apex).
    pub name: Sp<String>,
    #[serde(rename = "type")]
    pub rtype: Sp<RecordType>,
    /// Seconds (1 to 604800). Default 300.
    pub ttl: Option<Sp<i64>>,
    /// Literal values (simple routing).
    pub values: Option<Vec<Sp<String>>>,
    /// A deployment whose endpoint is the value (simple routing), e.g. `api@aws/us-east-1`.
    pub target: Option<Sp<String>>,
    pub routing: Option<Sp<RawRouting>>,
    pub health_check: Option<Sp<RawHealthCheck>>,
    #[serde(default)]
    pub depends_on: Vec<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Routing")]
pub struct RawRouting {
    pub policy: Sp<RoutingPolicy>,
    /// Failover: the deployment that answers while healthy.
    pub primary: Option<Sp<String>>,
    /// Failover: the deployment that answers when the primary is unhealthy.
    pub secondary: Option<Sp<String>>,
    /// Weighted, latency and geolocation routing: the answers.
    pub members: Option<Vec<Sp<RawMember>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Member")]
pub struct RawMember {
    /// A deployment, e.g. `api@gcp/europe-west1`.
    pub target: Option<Sp<String>>,
    /// Literal values instead of a target.
    pub values: Option<Vec<Sp<String>>>,
    /// Set identifier (default: the target).
    pub id: Option<Sp<String>>,
    /// Weighted routing: 0 to 255.
    pub weight: Option<Sp<i64>>,
    /// Geolocation routing: continent (`EU`), country (`DE`) or `*`.
    pub location: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
    Tcp,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "HealthCheck")]
pub struct RawHealthCheck {
    pub protocol: Sp<Protocol>,
    /// Default 80 (http), 443 (https); required for tcp.
    pub port: Option<Sp<i64>>,
    /// HTTP(S) path, e.g. `/healthz`.
    pub path: Option<Sp<String>>,
    /// Probe interval, 1s to 5m (default `10s`).
    pub interval: Option<Sp<String>>,
    /// Probe timeout, at most the interval (default: the interval, at most 5s).
    pub timeout: Option<Sp<String>>,
    /// Consecutive failures before unhealthy, 1 to 10 (default 3).
    pub failures: Option<Sp<i64>>,
    /// Consecutive successes before healthy again, 1 to 10 (default 3).
    pub recoveries: Option<Sp<i64>>,
    /// HTTP(S): the status a healthy endpoint answers (default: any 2xx or 3xx). Checked by
    /// `cairn enforce`'s probes.
    pub expect_status: Option<Sp<i64>>,
    /// HTTP(S): text a healthy endpoint's body contains. Checked by `cairn enforce`'s probes.
    pub expect_body: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Scaling")]
pub struct RawScaling {
    /// Target utilization per replica, above 0 and at most 1.
    pub target_utilization: Sp<f64>,
    /// Time for a new replica to become ready, e.g. `3m`.
    pub startup: Option<Sp<String>>,
    /// Wait before scaling in, e.g. `5m`.
    pub scale_in_stabilization: Option<Sp<String>>,
    pub predictive: Option<Sp<RawPredictive>>,
    pub cost: Option<Sp<RawCost>>,
    /// The service's load (requests/s, jobs queued, …): what predictive scaling forecasts
    /// and `cairn recommend` sizes from.
    pub load: Option<Sp<RawMetric>>,
    /// Load one replica serves at 100% utilization, in the load metric's unit.
    pub per_replica: Option<Sp<f64>>,
    /// Multiplies the load before sizing (default 1): the share of a shared metric this
    /// service serves, or a safety margin such as `1.2`.
    pub load_factor: Option<Sp<f64>>,
    /// At most this share of the replicas removed per period, e.g.
    /// `{ percent = 50, period = "5m" }` (default: no limit beyond the stabilization).
    pub scale_in_limit: Option<Sp<RawScaleInLimit>>,
    /// Scale to zero replicas once the load has been zero this long, e.g. `30m`; the
    /// service wakes as soon as load appears again (default: never to zero).
    pub scale_to_zero_after: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "ScaleInLimit")]
pub struct RawScaleInLimit {
    /// Share of the replicas present at the start of a period, above 0 and at most 100.
    pub percent: Sp<f64>,
    /// The period, e.g. `5m`.
    pub period: Sp<String>,
}

/// A metric's source: exactly one of `query`, `file` or `trace`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Metric")]
pub struct RawMetric {
    /// PromQL asked of `[metrics].prometheus`, e.g. `sum(rate(http_requests_total[5m]))`.
    pub query: Option<Sp<String>>,
    /// A `timestamp,value` CSV file (relative to the stack directory) holding the history.
    pub file: Option<Sp<String>>,
    /// Sandbox only: a `timestamp,value` CSV replayed, looping, as the live load.
    pub trace: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Monitoring")]
pub struct RawMonitoring {
    pub cpu: Option<Sp<RawMetric>>,
    pub memory: Option<Sp<RawMetric>>,
    pub latency: Option<Sp<RawMetric>>,
    pub error_rate: Option<Sp<RawMetric>>,
    pub disk: Option<Sp<RawMetric>>,
    pub network: Option<Sp<RawMetric>>,
    /// Anomaly score, above 0 and below 1, at which an alert is raised (default: the
    /// detector's operating threshold, see docs/anomaly.md).
    pub threshold: Option<Sp<f64>>,
    /// What `cairn enforce` does on an alert besides the event: `alert` (nothing more, the
    /// default) or `route_away` (a deployment only: its routed records answer without it).
    pub on_anomaly: Option<Sp<AnomalyAction>>,
    /// How long a deployment is routed away from after an alert (default `15m`).
    pub route_away_for: Option<Sp<String>>,
}

/// A self-healing action on an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyAction {
    Alert,
    RouteAway,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Metrics")]
pub struct RawMetrics {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`.
    pub prometheus: Option<Sp<String>>,
    /// Time limit for one query, e.g. `10s` (default 10 s).
    pub timeout: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Predictive")]
pub struct RawPredictive {
    /// How far ahead to forecast, e.g. `30m`.
    pub horizon: Sp<String>,
    /// How much history to fit on, e.g. `14d`.
    pub history: Option<Sp<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Cost")]
pub struct RawCost {
    pub per_replica_hour: Sp<f64>,
    pub max_per_hour: Option<Sp<f64>>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    Soc2,
    Gdpr,
    Hipaa,
}

impl Framework {
    /// The name of the framework's built-in policy pack.
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Soc2 => "soc2",
            Framework::Gdpr => "gdpr",
            Framework::Hipaa => "hipaa",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Compliance")]
pub struct RawCompliance {
    #[serde(default)]
    pub frameworks: Vec<Sp<Framework>>,
    /// Regions allowed per data classification, e.g. `personal = ["eu-west-1"]`.
    #[serde(default)]
    pub allowed_regions: BTreeMap<String, Vec<Sp<String>>>,
    /// Who approves production changes (names or e-mail addresses).
    #[serde(default)]
    pub change_approvers: Vec<Sp<String>>,
    /// Enforcement per rule ID, replacing the rule's own: `"SOC2-…" = "hard"`.
    #[serde(default)]
    pub enforcement: BTreeMap<String, Sp<Enforcement>>,
}

/// How a policy finding is enforced by `cairn plan`, `apply` and `review`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    serde::Serialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Reported; never blocks.
    Advisory,
    /// Blocks unless overridden with `--override RULE --reason TEXT`, which is audit-logged.
    Soft,
    /// Blocks; only a waiver in the stack's policies can excuse it.
    Hard,
}
