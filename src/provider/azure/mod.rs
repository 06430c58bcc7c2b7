//! The Azure provider: Azure DNS zones and record sets through ARM (api-version 2018-05-01),
//! and the capacity of Virtual Machine Scale Sets (Microsoft.Compute, 2024-07-01, in
//! [`vmss`]), on azure_core's HTTP pipeline, authenticated by azure_identity.
//!
//! Like the AWS provider, the client library's own retries are off: calls refused without
//! effect (429, 503) are retried here after `Retry-After` (or a jittered backoff); a write
//! whose outcome is unknown (5xx, timeout, dropped connection) is re-read before anything
//! else is sent. Every write is conditional on what was last read (`If-Match` with the record
//! set's ETag, `If-None-Match: *` to create), so a write never lands on a record set that
//! changed since, and a retried write that had in fact succeeded is recognised, not repeated.
//!
//! Azure DNS serves plain record sets: it has no weighted or failover routing of its own. A
//! routed record is written with the values it answers now (a failover record's primary, the
//! other policies' members together) and its routing in the record set's metadata, so that
//! refresh reads back what was declared; `cairn enforce` keeps the values current from its
//! health checks. Ownership is the `cairn_owner` metadata key (record sets) or tag (zones).

mod vmss;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions,
    Transport, Url,
};
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};

use super::{Change, ChangeOp, ChangeResult, LiveResource, Provider, Scope, error_chain};
use crate::config::AzureSettings;
use crate::model::{
    Attrs, Cloud, HealthCheck, ProviderKind, ProviderRef, RecordAttrs, RecordType, ResourceKind,
    Routing, ZoneAttrs,
};

const AZURE: ProviderRef = ProviderRef {
    kind: ProviderKind::Azure,
    cloud: Cloud::Azure,
};
const API_VERSION: &str = "2018-05-01";
const ARM: &str = "https://management.azure.com";
const SCOPE: &str = "https://management.azure.com/.default";
/// Metadata keys (record sets) and tag keys (zones) cairn writes. Azure metadata keys are
/// identifiers: no colon, unlike the AWS tags.
pub const OWNER_KEY: &str = "cairn_owner";
const ROUTING_KEY: &str = "cairn_routing";
/// Conditional writes retried after a 412 (another writer) before giving up.
const MAX_CONFLICTS: usize = 5;

/// How a failed call may be retried (as in the AWS provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Refused without effect (429, 503): retry after a pause.
    Rejected,
    /// May or may not have taken effect (other 5xx, timeout, reset): re-read first.
    Ambiguous,
    /// A precondition (ETag) failed: someone else wrote it; re-read.
    Conflict,
    /// Will fail again.
    Permanent,
}

#[derive(Debug, Clone)]
struct AzureError {
    failure: Failure,
    status: u16,
    message: String,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for AzureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "HTTP {}: {}", self.status, self.message)
        }
    }
}

/// A successful answer: its status, JSON body, and what ARM says about a long-running
/// operation it started.
struct Answer {
    status: u16,
    body: Option<Value>,
    /// `Azure-AsyncOperation`: the operation status resource to poll.
    async_operation: Option<String>,
    /// `Location`: polled until it stops answering 202.
    location: Option<String>,
    retry_after: Option<Duration>,
}

pub struct Azure {
    pipeline: Pipeline,
    /// `https://management.azure.com/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/dnsZones`.
    zones_url: String,
    limiter: DefaultDirectRateLimiter,
    backoff: ExponentialBuilder,
    calls: AtomicU64,
    /// What the last refresh saw of each record set: (zone, type, name) → ETag.
    etags: Mutex<HashMap<(String, RecordType, String), String>>,
    /// `https://management.azure.com/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachineScaleSets`.
    scale_sets_url: String,
    /// The ARM endpoint's origin: polling URLs elsewhere are refused (they would get the token).
    origin: String,
    /// What the last refresh saw of each scale set: lower-case name → the scale set.
    scale_sets: Mutex<HashMap<String, Value>>,
    /// How long a long-running operation (a scale set update) may take.
    operation_timeout: Duration,
    /// First pause between polls of an operation that names no `Retry-After`.
    poll_interval: Duration,
}

impl Azure {
    /// Builds the pipeline with the standard credential chain (see [`Credentials`]).
    pub fn new(settings: &AzureSettings) -> Result<Azure, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let options = || ClientOptions {
            transport: Some(Transport::new(Arc::new(http.clone()))),
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let credential = Credentials::new(settings.tenant_id.clone(), options())?;
        Ok(Azure::with_credential(
            settings,
            Arc::new(credential),
            options(),
        ))
    }

    pub fn with_credential(
        settings: &AzureSettings,
        credential: Arc<dyn TokenCredential>,
        options: ClientOptions,
    ) -> Azure {
        let auth: Arc<dyn Policy> =
            Arc::new(BearerTokenAuthorizationPolicy::new(credential, [SCOPE]));
        let pipeline = Pipeline::new(
            Some("cairn"),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            vec![auth],
            None,
        );
        let arm = settings
            .endpoint
            .as_deref()
            .unwrap_or(ARM)
            .trim_end_matches('/');
        // `requests_per_second` and `burst` default to 20 and 100: inside ARM's per-principal
        // limits for a plan's reads.
        let rate = NonZeroU32::new(settings.requests_per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(settings.burst.max(1)).expect("at least 1");
        let quota = Quota::per_second(rate).allow_burst(burst);
        let group_url = format!(
            "{arm}/subscriptions/{}/resourceGroups/{}/providers",
            settings.subscription_id, settings.resource_group
        );
        Azure {
            pipeline,
            zones_url: format!("{group_url}/Microsoft.Network/dnsZones"),
            scale_sets_url: format!("{group_url}/Microsoft.Compute/virtualMachineScaleSets"),
            origin: Url::parse(arm)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default(),
            scale_sets: Mutex::new(HashMap::new()),
            operation_timeout: settings.operation_timeout,
            poll_interval: Duration::from_secs(1),
            limiter: RateLimiter::direct(quota),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(10)
                .with_jitter(),
            calls: AtomicU64::new(0),
            etags: Mutex::new(HashMap::new()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}?api-version={API_VERSION}", self.zones_url)
    }

    /// One request: waits for the rate limiter, counts it, classifies a failure.
    async fn once(
        &self,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, AzureError> {
        self.limiter.until_ready().await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let url = Url::parse(url).map_err(|e| permanent(format!("{url}: {e}")))?;
        let mut req = Request::new(url, method);
        for (k, v) in headers {
            req.insert_header(*k, v.clone());
        }
        if let Some(b) = body {
            req.insert_header("content-type", "application/json");
            req.set_body(serde_json::to_vec(b).expect("JSON"));
        }
        let options = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        let res = self
            .pipeline
            .send(&Context::new(), &mut req, Some(options))
            .await
            .map_err(|e| AzureError {
                // No token is not a network blip: retrying would only repeat the wait.
                failure: if matches!(e.kind(), azure_core::error::ErrorKind::Credential) {
                    Failure::Permanent
                } else {
                    Failure::Ambiguous
                },
                status: 0,
                message: error_chain(&e),
                retry_after: None,
            })?;
        let status = u16::from(res.status());
        let header = |name: &'static str| {
            res.headers()
                .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
                .map(str::to_string)
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        let async_operation = header("azure-asyncoperation");
        let location = header("location");
        let bytes = res.into_body();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if (200..300).contains(&status) {
            return Ok(Answer {
                status,
                body,
                async_operation,
                location,
                retry_after,
            });
        }
        let message = body
            .as_ref()
            .and_then(|b| {
                Some(format!(
                    "{}: {}",
                    b["error"]["code"].as_str()?,
                    b["error"]["message"].as_str().unwrap_or_default()
                ))
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let failure = match status {
            429 | 503 => Failure::Rejected,
            412 => Failure::Conflict,
            s if s >= 500 => Failure::Ambiguous,
            _ => Failure::Permanent,
        };
        Err(AzureError {
            failure,
            status,
            message,
            retry_after,
        })
    }

    /// A request retried while refused without effect; with `idempotent` (reads), also
    /// when its outcome is unknown.
    async fn call(
        &self,
        idempotent: bool,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, AzureError> {
        (|| self.once(method, url, headers, body))
            .retry(self.backoff)
            .when(|e: &AzureError| {
                e.failure == Failure::Rejected || (idempotent && e.failure == Failure::Ambiguous)
            })
            .adjust(|e: &AzureError, backoff| match (e.retry_after, backoff) {
                (Some(after), Some(b)) => Some(after.max(b)),
                (_, b) => b,
            })
            .await
    }

    async fn get(&self, url: &str) -> Result<Option<Value>, AzureError> {
        match self.call(true, Method::Get, url, &[], None).await {
            Ok(a) => Ok(a.body),
            Err(e) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn refresh_dns(&self, scope: &Scope) -> Result<Vec<LiveResource>, AzureError> {
        let mut live = Vec::new();
        let mut etags = HashMap::new();
        for (_, zone) in scope.zones.iter().filter(|(c, _)| *c == Cloud::Azure) {
            let Some(z) = self.get(&self.url(&format!("/{zone}"))).await? else {
                continue;
            };
            let owner = z["tags"][OWNER_KEY].as_str().map(str::to_string);
            live.push(LiveResource {
                provider: AZURE,
                id: z["id"].as_str().unwrap_or_default().to_string(),
                attrs: Attrs::Zone(ZoneAttrs { name: zone.clone() }),
                adoptable: owner.is_none(),
                owner,
            });
            let mut next = Some(self.url(&format!("/{zone}/all")) + "&$top=1000");
            while let Some(url) = next {
                let page = self.get(&url).await?.unwrap_or(Value::Null);
                for set in page["value"].as_array().into_iter().flatten() {
                    if let Some((attrs, owner)) = record_from(zone, set) {
                        let etag = set["etag"].as_str().unwrap_or_default().to_string();
                        etags.insert((zone.clone(), attrs.rtype, attrs.name.clone()), etag);
                        live.push(LiveResource {
                            provider: AZURE,
                            id: set["id"].as_str().unwrap_or_default().to_string(),
                            attrs: Attrs::Record(attrs),
                            owner,
                            adoptable: false,
                        });
                    }
                }
                // The next link already carries the api-version and the skip token.
                next = page["nextLink"].as_str().map(str::to_string);
            }
        }
        *self.etags.lock().expect("etags") = etags;
        Ok(live)
    }

    async fn apply_zone(&self, change: &Change, owner: &str) -> ChangeResult {
        let name = &change.address.name;
        let url = self.url(&format!("/{name}"));
        // The zone's other tags are kept: only cairn's own key is set or removed.
        let existing = self.get(&url).await.map_err(|e| e.to_string())?;
        let tagged = |owner: Option<&str>| {
            let mut tags = existing
                .as_ref()
                .and_then(|z| z["tags"].as_object().cloned())
                .unwrap_or_default();
            match owner {
                Some(o) => tags.insert(OWNER_KEY.into(), json!(o)),
                None => tags.remove(OWNER_KEY),
            };
            json!({ "tags": tags })
        };
        let live = |z: Value, owner: Option<&str>| LiveResource {
            provider: AZURE,
            id: z["id"].as_str().unwrap_or_default().to_string(),
            attrs: Attrs::Zone(ZoneAttrs { name: name.clone() }),
            owner: owner.map(str::to_string),
            adoptable: false,
        };
        let result = match &change.op {
            ChangeOp::Create { .. } | ChangeOp::Update { .. } | ChangeOp::Replace { .. } => {
                // Creating a zone that exists unowned adopts it; PUT is idempotent.
                if let Some(other) = existing
                    .as_ref()
                    .and_then(|z| z["tags"][OWNER_KEY].as_str())
                    && other != owner
                {
                    return Err(format!("zone {name} is owned by another stack ({other})"));
                }
                let mut body = tagged(Some(owner));
                body["location"] = json!("global");
                self.call(true, Method::Put, &url, &[], Some(&body))
                    .await
                    .map(|a| Some(live(a.body.unwrap_or_default(), Some(owner))))
            }
            ChangeOp::Adopt { .. } => self
                .call(true, Method::Patch, &url, &[], Some(&tagged(Some(owner))))
                .await
                .map(|a| Some(live(a.body.unwrap_or_default(), Some(owner)))),
            ChangeOp::Release { .. } => self
                .call(true, Method::Patch, &url, &[], Some(&tagged(None)))
                .await
                .map(|_| None),
            ChangeOp::Delete { .. } => match self.call(true, Method::Delete, &url, &[], None).await
            {
                Err(e) if e.status == 404 => Ok(None),
                r => r.map(|_| None),
            },
        };
        result.map_err(|e| e.to_string())
    }

    /// Brings one record set to `desired` (or deletes it), conditional on its ETag: on a
    /// conflict or an unknown outcome it re-reads and decides again.
    async fn converge_record(
        &self,
        zone: &str,
        rtype: RecordType,
        name: &str,
        desired: Option<(&RecordAttrs, &str)>,
    ) -> Result<Option<LiveResource>, AzureError> {
        let url = self.url(&format!("/{zone}/{rtype}/{name}"));
        let key = (zone.to_string(), rtype, name.to_string());
        let mut etag = self.etags.lock().expect("etags").get(&key).cloned();
        let mut fresh = false;
        for _ in 0..MAX_CONFLICTS {
            if fresh {
                // What is there now decides: maybe our own earlier write.
                let current = self.get(&url).await?;
                etag = current
                    .as_ref()
                    .and_then(|c| c["etag"].as_str())
                    .map(str::to_string);
                let same = match (&current, desired) {
                    (None, None) => true,
                    (Some(c), Some((attrs, owner))) => record_from(zone, c)
                        .is_some_and(|(a, o)| &a == attrs && o.as_deref() == Some(owner)),
                    _ => false,
                };
                if same {
                    return Ok(current.and_then(|c| self.live_record(zone, &c)));
                }
            }
            let condition = match &etag {
                Some(e) => ("if-match", e.clone()),
                None => ("if-none-match", "*".to_string()),
            };
            let result = match desired {
                Some((attrs, owner)) => {
                    let body = record_body(attrs, owner);
                    self.call(false, Method::Put, &url, &[condition], Some(&body))
                        .await
                }
                None if etag.is_none() => return Ok(None),
                None => {
                    self.call(false, Method::Delete, &url, &[condition], None)
                        .await
                }
            };
            match result {
                Ok(a) => {
                    let live = a.body.as_ref().and_then(|b| self.live_record(zone, b));
                    let mut etags = self.etags.lock().expect("etags");
                    match a.body.as_ref().and_then(|b| b["etag"].as_str()) {
                        Some(e) => etags.insert(key.clone(), e.to_string()),
                        None => etags.remove(&key),
                    };
                    return Ok(live);
                }
                Err(e) if matches!(e.failure, Failure::Conflict | Failure::Ambiguous) => {
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(AzureError {
            failure: Failure::Permanent,
            status: 412,
            message: format!("{rtype} {name}.{zone} kept changing under cairn's writes"),
            retry_after: None,
        })
    }

    fn live_record(&self, zone: &str, set: &Value) -> Option<LiveResource> {
        let (attrs, owner) = record_from(zone, set)?;
        Some(LiveResource {
            provider: AZURE,
            id: set["id"].as_str().unwrap_or_default().to_string(),
            attrs: Attrs::Record(attrs),
            owner,
            adoptable: false,
        })
    }

    async fn apply_record(&self, change: &Change, owner: &str) -> ChangeResult {
        let (zone, rtype, name) = record_key(change)?;
        let outcome = match (&change.op, change.op.attrs()) {
            (_, Some(Attrs::Record(attrs))) => {
                self.converge_record(&zone, rtype, &name, Some((attrs, owner)))
                    .await
            }
            (ChangeOp::Delete { .. }, _) => self.converge_record(&zone, rtype, &name, None).await,
            (ChangeOp::Adopt { .. } | ChangeOp::Release { .. }, _) => {
                let url = self.url(&format!("/{zone}/{rtype}/{name}"));
                let Some(current) = self.get(&url).await.map_err(|e| e.to_string())? else {
                    return Err(format!("{rtype} {name}.{zone} does not exist"));
                };
                let (attrs, _) = record_from(&zone, &current)
                    .ok_or_else(|| format!("{rtype} {name}.{zone} cannot be read"))?;
                let adopt = matches!(change.op, ChangeOp::Adopt { .. });
                let new_owner = if adopt { owner } else { "" };
                let result = self
                    .converge_record(&zone, rtype, &name, Some((&attrs, new_owner)))
                    .await;
                if adopt { result } else { result.map(|_| None) }
            }
            _ => return Err(format!("{}: not a record change", change.address)),
        };
        outcome.map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl Provider for Azure {
    async fn refresh(&self, scope: &Scope) -> Result<Vec<LiveResource>, String> {
        let mut live = self
            .refresh_dns(scope)
            .await
            .map_err(|e| format!("Azure DNS: {e}"))?;
        live.extend(
            self.refresh_groups(scope)
                .await
                .map_err(|e| format!("Azure scale sets: {e}"))?,
        );
        Ok(live)
    }

    async fn apply(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult> {
        // A batch holds one kind (see `batch_key`); scale sets are updated side by side,
        // since each update waits for its long-running operation.
        if changes
            .first()
            .is_some_and(|c| c.address.kind == ResourceKind::Group)
        {
            return self.apply_groups(changes, owner).await;
        }
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            out.push(match c.address.kind {
                ResourceKind::Zone => self.apply_zone(c, owner).await,
                ResourceKind::Record => self.apply_record(c, owner).await,
                ResourceKind::Group => Err(format!("{}: not in a group batch", c.address)),
            });
        }
        out
    }

    fn batch_key(&self, change: &Change) -> String {
        // Azure DNS has no batch API: each record set is its own request, so batches only
        // group work; zones first is the engine's ordering.
        match change.address.kind {
            ResourceKind::Record => format!(
                "zone/{}",
                change.address.name.split('/').next().unwrap_or_default()
            ),
            kind => format!("{kind:?}"),
        }
    }

    fn max_batch(&self) -> usize {
        100
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

fn permanent(message: String) -> AzureError {
    AzureError {
        failure: Failure::Permanent,
        status: 0,
        message,
        retry_after: None,
    }
}

/// (zone, type, relative name) of a record change's address `zone/name/TYPE`.
fn record_key(change: &Change) -> Result<(String, RecordType, String), String> {
    if let Some(Attrs::Record(r)) = change.op.attrs() {
        return Ok((r.zone.clone(), r.rtype, r.name.clone()));
    }
    let mut parts = change.address.name.splitn(3, '/');
    let (Some(zone), Some(name), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{}: not a record address", change.address));
    };
    let rtype = serde_json::from_value(json!(t)).map_err(|_| format!("record type {t}"))?;
    Ok((zone.to_string(), rtype, name.to_string()))
}

/// The values a record answers now: a failover record's primary, the other policies'
/// members together.
fn answering(routing: &Routing) -> Vec<String> {
    match routing {
        Routing::Simple { values } => values.clone(),
        Routing::Failover { primary, .. } => primary.values.clone(),
        Routing::Weighted { members }
        | Routing::Latency { members }
        | Routing::Geolocation { members }
        | Routing::Multivalue { members } => {
            let mut v: Vec<String> = Vec::new();
            for m in members {
                for x in &m.values {
                    if !v.contains(x) {
                        v.push(x.clone());
                    }
                }
            }
            v
        }
    }
}

/// The ARM record set body for `attrs`, with the owner and routing in its metadata.
fn record_body(attrs: &RecordAttrs, owner: &str) -> Value {
    let mut metadata = serde_json::Map::new();
    if !owner.is_empty() {
        metadata.insert(OWNER_KEY.into(), json!(owner));
    }
    if !matches!(attrs.routing, Routing::Simple { .. }) || attrs.health_check.is_some() {
        let routing = json!({ "routing": attrs.routing, "health_check": attrs.health_check });
        metadata.insert(ROUTING_KEY.into(), json!(routing.to_string()));
    }
    let values = answering(&attrs.routing);
    let mut properties = json!({ "TTL": attrs.ttl, "metadata": metadata });
    let (key, records) = records_json(attrs.rtype, &values);
    properties[key] = records;
    json!({ "properties": properties })
}

/// The property holding `rtype`'s records, and the records.
fn records_json(rtype: RecordType, values: &[String]) -> (&'static str, Value) {
    let each = |f: &dyn Fn(&str) -> Value| Value::Array(values.iter().map(|v| f(v)).collect());
    match rtype {
        RecordType::A => ("ARecords", each(&|v| json!({ "ipv4Address": v }))),
        RecordType::AAAA => ("AAAARecords", each(&|v| json!({ "ipv6Address": v }))),
        RecordType::CNAME => (
            "CNAMERecord",
            json!({ "cname": values.first().cloned().unwrap_or_default() }),
        ),
        RecordType::TXT => ("TXTRecords", each(&|v| json!({ "value": [v] }))),
        RecordType::NS => ("NSRecords", each(&|v| json!({ "nsdname": v }))),
        RecordType::MX => (
            "MXRecords",
            each(&|v| {
                let (pref, host) = v.split_once(' ').unwrap_or(("10", v));
                json!({ "preference": pref.parse::<u32>().unwrap_or(10), "exchange": host })
            }),
        ),
        RecordType::SRV => (
            "SRVRecords",
            each(&|v| {
                let p: Vec<&str> = v.split_whitespace().collect();
                let n = |i: usize| p.get(i).and_then(|x| x.parse::<u32>().ok()).unwrap_or(0);
                json!({ "priority": n(0), "weight": n(1), "port": n(2),
                        "target": p.get(3).copied().unwrap_or_default() })
            }),
        ),
        RecordType::CAA => (
            "caaRecords",
            each(&|v| {
                let mut p = v.splitn(3, ' ');
                let flags = p.next().and_then(|f| f.parse::<u32>().ok()).unwrap_or(0);
                let tag = p.next().unwrap_or_default();
                let value = p.next().unwrap_or_default().trim_matches('"');
                json!({ "flags": flags, "tag": tag, "value": value })
            }),
        ),
    }
}

/// The values of an ARM record set of `rtype`, in cairn's text form.
fn values_of(rtype: RecordType, properties: &Value) -> Vec<String> {
    let (key, _) = records_json(rtype, &[]);
    let list = |f: &dyn Fn(&Value) -> Option<String>| -> Vec<String> {
        properties[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(f)
            .collect()
    };
    let s = |v: &Value| v.as_str().map(str::to_string);
    match rtype {
        RecordType::A => list(&|r| s(&r["ipv4Address"])),
        RecordType::AAAA => list(&|r| s(&r["ipv6Address"])),
        RecordType::CNAME => s(&properties[key]["cname"]).into_iter().collect(),
        RecordType::TXT => list(&|r| {
            Some(
                r["value"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<String>(),
            )
        }),
        RecordType::NS => list(&|r| s(&r["nsdname"])),
        RecordType::MX => {
            list(&|r| Some(format!("{} {}", r["preference"], r["exchange"].as_str()?)))
        }
        RecordType::SRV => list(&|r| {
            Some(format!(
                "{} {} {} {}",
                r["priority"],
                r["weight"],
                r["port"],
                r["target"].as_str()?
            ))
        }),
        RecordType::CAA => list(&|r| {
            Some(format!(
                "{} {} \"{}\"",
                r["flags"],
                r["tag"].as_str()?,
                r["value"].as_str()?
            ))
        }),
    }
}

/// A record set as cairn's attributes and owner; `None` for the zone's own SOA and apex NS,
/// and for types cairn does not manage.
fn record_from(zone: &str, set: &Value) -> Option<(RecordAttrs, Option<String>)> {
    let name = set["name"].as_str()?.to_string();
    let rtype_text = set["type"].as_str()?.rsplit('/').next()?;
    let rtype: RecordType = serde_json::from_value(json!(rtype_text)).ok()?;
    if name == "@" && rtype == RecordType::NS {
        return None;
    }
    let p = &set["properties"];
    let values = values_of(rtype, p);
    let owner = p["metadata"][OWNER_KEY].as_str().map(str::to_string);
    let declared: Option<(Routing, Option<HealthCheck>)> = p["metadata"][ROUTING_KEY]
        .as_str()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|v| {
            Some((
                serde_json::from_value(v["routing"].clone()).ok()?,
                serde_json::from_value(v["health_check"].clone()).ok()?,
            ))
        });
    // The declared routing stands while the values are what it answers; edited values
    // show as a plain record, so the plan puts them back.
    let (routing, health_check) = match declared {
        Some((routing, hc)) if answering(&routing) == values => (routing, hc),
        _ => (Routing::Simple { values }, None),
    };
    Some((
        RecordAttrs {
            zone: zone.to_string(),
            name,
            rtype,
            ttl: p["TTL"].as_u64().unwrap_or(0) as u32,
            routing,
            health_check,
        },
        owner,
    ))
}

/// The credential chain cairn uses for Azure, in order: a service principal from the
/// environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), the Azure CLI's
/// login, then a managed identity. The first that gives a token is used from then on.
#[derive(Debug)]
pub struct Credentials {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: Mutex<Option<usize>>,
}

impl Credentials {
    pub fn new(tenant: Option<String>, options: ClientOptions) -> Result<Credentials, String> {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(tenant), Some(client), Some(secret)) = (
            env("AZURE_TENANT_ID").or(tenant.clone()),
            env("AZURE_CLIENT_ID"),
            env("AZURE_CLIENT_SECRET"),
        ) {
            let c = azure_identity::ClientSecretCredential::new(
                &tenant,
                client,
                secret.into(),
                Some(azure_identity::ClientSecretCredentialOptions {
                    client_options: options,
                }),
            )
            .map_err(|e| format!("Azure service principal: {e}"))?;
            sources.push(("service principal (AZURE_CLIENT_ID)", c));
        }
        let cli = azure_identity::AzureCliCredential::new(Some(
            azure_identity::AzureCliCredentialOptions {
                tenant_id: tenant,
                ..Default::default()
            },
        ))
        .map_err(|e| format!("Azure CLI credential: {e}"))?;
        sources.push(("Azure CLI (az login)", cli));
        let mi = azure_identity::ManagedIdentityCredential::new(None)
            .map_err(|e| format!("managed identity: {e}"))?;
        sources.push(("managed identity", mi));
        Ok(Credentials {
            sources,
            chosen: Mutex::new(None),
        })
    }
}

#[async_trait::async_trait]
impl TokenCredential for Credentials {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = *self.chosen.lock().expect("chosen");
        if let Some(i) = chosen {
            return self.sources[i].1.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (i, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    *self.chosen.lock().expect("chosen") = Some(i);
                    return Ok(token);
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no Azure credential worked (set AZURE_TENANT_ID, AZURE_CLIENT_ID and \
                 AZURE_CLIENT_SECRET, or run `az login`; see docs/azure.md): {}",
                failures.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, Member};
    use crate::testing::azure_dns::{AzureDnsFake, Faults, Options};
    use crate::testing::contract::Contract;

    /// A credential that hands out the fake's token.
    #[derive(Debug)]
    pub(super) struct StaticToken;

    #[async_trait::async_trait]
    impl TokenCredential for StaticToken {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            Ok(AccessToken::new(
                "test-token".to_string(),
                azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
            ))
        }
    }

    fn fake(faults: Faults, seed: u64) -> AzureDnsFake {
        let fake = AzureDnsFake::start(
            Contract::azure_dns(),
            Options {
                faults,
                seed,
                page_size: 7,
                ..Options::default()
            },
        );
        fake.add_zone("example.com");
        fake
    }

    pub(super) fn options(fake: &AzureDnsFake) -> ClientOptions {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry: RetryOptions::none(),
            ..Default::default()
        }
    }

    pub(super) fn settings(fake: &AzureDnsFake) -> AzureSettings {
        let o = Options::default();
        AzureSettings {
            subscription_id: o.subscription,
            resource_group: o.resource_group,
            tenant_id: None,
            endpoint: Some(fake.url.clone()),
            requests_per_second: 1000,
            burst: 1000,
            operation_timeout: Duration::from_secs(10),
        }
    }

    pub(super) fn provider(fake: &AzureDnsFake) -> Azure {
        let mut azure =
            Azure::with_credential(&settings(fake), Arc::new(StaticToken), options(fake));
        // Tests do not wait out real backoff or polling.
        azure.backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(5))
            .with_max_times(30);
        azure.poll_interval = Duration::from_millis(5);
        azure
    }

    fn simple(name: &str, ip: &str) -> RecordAttrs {
        RecordAttrs {
            zone: "example.com".into(),
            name: name.into(),
            rtype: RecordType::A,
            ttl: 60,
            routing: Routing::Simple {
                values: vec![ip.into()],
            },
            health_check: None,
        }
    }

    fn create(attrs: &RecordAttrs) -> Change {
        Change {
            address: Address::record(&attrs.zone, &attrs.name, attrs.rtype),
            provider: AZURE,
            op: ChangeOp::Create {
                attrs: Attrs::Record(attrs.clone()),
            },
        }
    }

    fn scope() -> Scope {
        Scope {
            zones: vec![(Cloud::Azure, "example.com".into())],
            groups: Vec::new(),
        }
    }

    fn records(live: &[LiveResource]) -> Vec<(RecordAttrs, Option<String>)> {
        live.iter()
            .filter_map(|l| match &l.attrs {
                Attrs::Record(r) => Some((r.clone(), l.owner.clone())),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn records_round_trip_with_their_routing_and_owner() {
        let fake = fake(Faults::default(), 1);
        let azure = provider(&fake);
        let failover = RecordAttrs {
            name: "api".into(),
            routing: Routing::Failover {
                primary: Member {
                    id: "api@aws/eu-west-1".into(),
                    values: vec!["192.0.2.1".into()],
                    weight: None,
                    location: None,
                },
                secondary: Member {
                    id: "api@gcp/europe-west1".into(),
                    values: vec!["198.51.100.1".into()],
                    weight: None,
                    location: None,
                },
            },
            ..simple("api", "unused")
        };
        let www = simple("www", "192.0.2.7");
        let results = azure
            .apply(&[create(&failover), create(&www)], "lineage-1")
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");

        let live = azure.refresh(&scope()).await.unwrap();
        let got = records(&live);
        assert_eq!(
            got,
            [
                (failover.clone(), Some("lineage-1".to_string())),
                (www.clone(), Some("lineage-1".to_string()))
            ]
        );
        // What Azure DNS answers: the failover record's primary.
        let api = fake
            .records("example.com")
            .into_iter()
            .find(|(t, n, _)| t == "A" && n == "api")
            .unwrap();
        assert_eq!(api.2["ARecords"], json!([{ "ipv4Address": "192.0.2.1" }]));

        // A value edited outside cairn reads back as a plain record: the plan restores it.
        fake.put_record(
            "example.com",
            "A",
            "api",
            json!({ "TTL": 60, "ARecords": [{ "ipv4Address": "203.0.113.9" }],
                    "metadata": api.2["metadata"].clone() }),
        );
        let live = azure.refresh(&scope()).await.unwrap();
        let edited = records(&live)
            .into_iter()
            .find(|(r, _)| r.name == "api")
            .unwrap();
        assert_eq!(
            edited.0.routing,
            Routing::Simple {
                values: vec!["203.0.113.9".into()]
            }
        );

        let delete = Change {
            address: Address::record("example.com", "www", RecordType::A),
            provider: AZURE,
            op: ChangeOp::Delete { id: String::new() },
        };
        assert!(azure.apply(&[delete], "lineage-1").await[0].is_ok());
        assert!(
            fake.records("example.com")
                .iter()
                .all(|(_, n, _)| n != "www")
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn writes_converge_through_throttling_errors_resets_and_concurrent_writers() {
        let fake = fake(
            Faults {
                throttle: 0.15,
                retry_after_secs: 0,
                server_error: 0.1,
                reset: 0.1,
                stale_etag: 0.2,
            },
            7,
        );
        let azure = provider(&fake);
        let wanted: Vec<RecordAttrs> = (0..40)
            .map(|i| simple(&format!("r{i}"), &format!("192.0.2.{i}")))
            .collect();
        let changes: Vec<Change> = wanted.iter().map(create).collect();
        let results = azure.apply(&changes, "lineage-1").await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        // Then every one changes, conditional on the ETags the refresh saw.
        azure.refresh(&scope()).await.unwrap();
        let changed: Vec<RecordAttrs> = wanted
            .iter()
            .map(|r| RecordAttrs {
                ttl: 300,
                ..r.clone()
            })
            .collect();
        let updates: Vec<Change> = changed
            .iter()
            .map(|r| Change {
                op: ChangeOp::Update {
                    id: String::new(),
                    attrs: Attrs::Record(r.clone()),
                },
                ..create(r)
            })
            .collect();
        let results = azure.apply(&updates, "lineage-1").await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");

        let c = fake.counts();
        assert!(c.throttled.load(Ordering::Relaxed) > 0);
        assert!(c.server_errors.load(Ordering::Relaxed) > 0);
        assert!(c.resets.load(Ordering::Relaxed) > 0);
        assert!(c.stale_etags.load(Ordering::Relaxed) > 0);
        // Exactly the wanted record sets, each once, as wanted.
        let mut fresh = provider(&fake);
        fresh.backoff = azure.backoff;
        let live = loop {
            // The refresh itself may meet a reset: reads are retried, so it returns.
            if let Ok(l) = fresh.refresh(&scope()).await {
                break l;
            }
        };
        let got: Vec<RecordAttrs> = records(&live).into_iter().map(|(r, _)| r).collect();
        let mut want = changed.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(got, want);
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn a_service_principal_gets_its_token_from_entra_id() {
        let fake = fake(Faults::default(), 1);
        let mut o = options(&fake);
        let mut cloud = azure_core::cloud::CustomConfiguration::default();
        cloud.authority_host = fake.url.clone();
        o.cloud = Some(Arc::new(cloud.into()));
        let credential = azure_identity::ClientSecretCredential::new(
            "00000000-0000-0000-0000-0000000000aa",
            "cairn-test".into(),
            "test-token".to_string().into(),
            Some(azure_identity::ClientSecretCredentialOptions {
                client_options: o.clone(),
            }),
        )
        .unwrap();
        let azure = Azure::with_credential(&settings(&fake), credential, o);
        let results = azure
            .apply(&[create(&simple("www", "192.0.2.1"))], "l")
            .await;
        assert!(results[0].is_ok(), "{results:?}");
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
}
