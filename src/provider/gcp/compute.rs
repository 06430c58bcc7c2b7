//! Compute Engine: the size of regional managed instance groups, and the global health checks
//! Cloud DNS routing policies refer to.
//!
//! Groups are regional (`regionInstanceGroupManagers`), as cairn's deployments are per region.
//! cairn adopts existing groups (their instance templates stay where they are managed) and
//! sets their target size. A group keeps no labels: which groups are cairn's is recorded in the
//! state, and min, max, instance type and endpoint are cairn's own (the plan reads them from
//! the declaration). Writes carry a `requestId`, the same on every retry, so that Compute
//! Engine ignores a repeat of a request it already carried out.

use reqwest::Method;
use serde_json::{Value, json};

use super::{GCP, Gcp, GcpError, permanent};
use crate::model::{Address, Attrs, Cloud, GroupAttrs, HealthCheck};
use crate::provider::{Change, ChangeOp, GroupRef, LiveResource, Scope, digest};

/// Where a health check used by Cloud DNS probes from: Compute Engine wants exactly three
/// regions, and then a check interval of at least 30 seconds.
const SOURCE_REGIONS: [&str; 3] = ["us-central1", "europe-west1", "asia-southeast1"];
const MIN_INTERVAL_SECS: u64 = 30;

impl Gcp {
    fn group_url(&self, region: &str, name: &str, tail: &str) -> Result<reqwest::Url, GcpError> {
        let path = format!("/regions/{region}/instanceGroupManagers/{name}{tail}");
        Gcp::url(&self.compute, &path, &[])
    }

    pub(super) async fn refresh_groups(
        &self,
        scope: &Scope,
    ) -> Result<Vec<LiveResource>, GcpError> {
        let mut live = Vec::new();
        for g in scope.groups.iter().filter(|g| g.cloud == Cloud::Gcp) {
            if let Some(mig) = self.get(&self.group_url(&g.region, &g.name, "")?).await? {
                live.push(group_live(g, &mig));
            }
        }
        Ok(live)
    }

    pub(super) async fn apply_group(
        &self,
        change: &Change,
    ) -> Result<Option<LiveResource>, GcpError> {
        match (&change.op, change.op.attrs()) {
            (_, Some(Attrs::Group(g))) => {
                let name = g.group_name();
                let url = self.group_url(&g.region, name, "")?;
                let mig = self.get(&url).await?.ok_or_else(|| {
                    permanent(format!(
                        "no managed instance group `{name}` in {}: cairn adopts existing regional \
                         groups; create it (with its instance template) first, or set `group` on \
                         the deployment",
                        g.region
                    ))
                })?;
                let mig = if target_size(&mig) == g.desired {
                    mig
                } else {
                    let size = g.desired.to_string();
                    let request = uuid::Uuid::new_v4().to_string();
                    let resize = Gcp::url(
                        &self.compute,
                        &format!("/regions/{}/instanceGroupManagers/{name}/resize", g.region),
                        &[("size", &size), ("requestId", &request)],
                    )?;
                    // Setting a size is idempotent, and the request ID makes a retry the same
                    // request: safe to repeat when the outcome is unknown.
                    let op = self.call(true, Method::POST, &resize, None).await?;
                    self.wait_operation(&op.unwrap_or_default()).await?;
                    self.get(&url).await?.unwrap_or(mig)
                };
                Ok(Some(LiveResource {
                    provider: GCP,
                    id: format!("{}/{name}", g.region),
                    attrs: Attrs::Group(GroupAttrs {
                        instances: in_service(&mig),
                        ..g.clone()
                    }),
                    owner: None,
                    adoptable: false,
                }))
            }
            // An adopted group is only forgotten, never deleted: its instances may serve
            // other things.
            (ChangeOp::Delete { .. } | ChangeOp::Release { .. }, _) => Ok(None),
            (ChangeOp::Adopt { id }, _) => {
                let (region, name) = id
                    .split_once('/')
                    .ok_or_else(|| permanent(format!("`{id}` is not REGION/GROUP")))?;
                let gref = GroupRef {
                    address: change.address.clone(),
                    cloud: Cloud::Gcp,
                    region: region.to_string(),
                    name: name.to_string(),
                };
                let mig = self.get(&self.group_url(region, name, "")?).await?;
                Ok(mig.map(|m| group_live(&gref, &m)))
            }
            _ => Err(permanent(format!("{}: not a group change", change.address))),
        }
    }

    /// Waits for a Compute Engine operation to be `DONE`; its error, if any, is the result.
    async fn wait_operation(&self, op: &Value) -> Result<(), GcpError> {
        let name = op["name"].as_str().unwrap_or_default().to_string();
        let path = match op["region"].as_str().and_then(|r| r.rsplit('/').next()) {
            Some(region) => format!("/regions/{region}/operations/{name}"),
            None => format!("/global/operations/{name}"),
        };
        let url = &Gcp::url(&self.compute, &path, &[])?;
        let last = if op["status"] == "DONE" {
            op.clone()
        } else {
            self.wait_until(&format!("Compute Engine operation {name}"), || async move {
                let now = self.get(url).await?.unwrap_or_default();
                Ok((now["status"] == "DONE").then_some(now))
            })
            .await?
        };
        match last["error"]["errors"][0]["message"].as_str() {
            Some(message) => Err(permanent(format!(
                "Compute Engine operation {name} failed: {message}"
            ))),
            None => Ok(()),
        }
    }

    /// The URL Cloud DNS wants for a health check (whatever endpoint cairn talks to).
    fn check_url(&self, name: &str) -> String {
        format!(
            "https://www.googleapis.com/compute/v1/projects/{}/global/healthChecks/{name}",
            self.project
        )
    }

    /// What the health check `name` checks; `None` if it does not exist.
    pub(super) async fn read_check(&self, name: &str) -> Result<Option<HealthCheck>, GcpError> {
        let url = Gcp::url(&self.compute, &format!("/global/healthChecks/{name}"), &[])?;
        Ok(self.get(&url).await?.map(|c| spec_from(&c)))
    }

    /// The health check for `address` with `spec`, created if missing; returns its URL. Its
    /// name derives from both, so an equal one is reused and a changed spec is a new check.
    pub(super) async fn ensure_check(
        &self,
        address: &Address,
        spec: &HealthCheck,
    ) -> Result<String, GcpError> {
        let spec_json = serde_json::to_string(spec).expect("specs serialize");
        let name = format!("cairn-{}", digest(&[&address.to_string(), &spec_json]));
        let known = self.seen.lock().expect("seen").checks.get(&name).cloned();
        if known.flatten().is_none() && self.read_check(&name).await?.is_none() {
            let body = check_body(&name, address, spec);
            let request = uuid::Uuid::new_v4().to_string();
            let url = Gcp::url(
                &self.compute,
                "/global/healthChecks",
                &[("requestId", &request)],
            )?;
            // The request ID makes a retry after an unknown outcome the same request.
            match self.call(true, Method::POST, &url, Some(&body)).await {
                Ok(op) => self.wait_operation(&op.unwrap_or_default()).await?,
                Err(e) if e.reason == "alreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        self.seen
            .lock()
            .expect("seen")
            .checks
            .insert(name.clone(), Some(spec.clone()));
        Ok(self.check_url(&name))
    }

    pub(super) async fn delete_check(&self, name: &str) -> Result<(), GcpError> {
        let request = uuid::Uuid::new_v4().to_string();
        let url = Gcp::url(
            &self.compute,
            &format!("/global/healthChecks/{name}"),
            &[("requestId", &request)],
        )?;
        match self.call(true, Method::DELETE, &url, None).await {
            Ok(op) => self.wait_operation(&op.unwrap_or_default()).await?,
            Err(e) if e.status == 404 => {}
            Err(e) => return Err(e),
        }
        self.seen.lock().expect("seen").checks.remove(name);
        Ok(())
    }
}

fn target_size(mig: &Value) -> u32 {
    mig["targetSize"].as_u64().unwrap_or(0) as u32
}

/// Instances running with nothing scheduled for them, as observed (read-only).
fn in_service(mig: &Value) -> Option<u32> {
    mig["currentActions"]["none"].as_u64().map(|n| n as u32)
}

fn group_live(g: &GroupRef, mig: &Value) -> LiveResource {
    let service = g.address.name.split('@').next().unwrap_or_default();
    let size = target_size(mig);
    LiveResource {
        provider: GCP,
        id: format!("{}/{}", g.region, g.name),
        // Only the target size is the group's; the rest is cairn's (see `with_declared`).
        attrs: Attrs::Group(GroupAttrs {
            service: service.to_string(),
            cloud: Cloud::Gcp,
            region: g.region.clone(),
            instance_type: None,
            min: size,
            max: size,
            desired: size,
            endpoint: None,
            group_name: (g.name != service).then(|| g.name.clone()),
            instances: in_service(mig),
        }),
        owner: None,
        // No label marks a group: one not recorded in the state is adopted when declared.
        adoptable: true,
    }
}

/// The Compute Engine health check for `spec`. Compute Engine's limits for checks used by
/// Cloud DNS (30 s at least between probes, a timeout within the interval) may round the
/// declared spec; the declared spec is kept in the description, so it reads back as declared.
fn check_body(name: &str, address: &Address, spec: &HealthCheck) -> Value {
    let interval = spec.interval_secs.max(MIN_INTERVAL_SECS);
    let kind = match spec.protocol.as_str() {
        "http" => "HTTP",
        "https" => "HTTPS",
        _ => "TCP",
    };
    let mut body = json!({
        "name": name,
        "description": json!({ "address": address.to_string(), "spec": spec }).to_string(),
        "type": kind,
        "checkIntervalSec": interval,
        "timeoutSec": spec.timeout_secs.clamp(1, interval),
        "healthyThreshold": spec.recoveries,
        "unhealthyThreshold": spec.failures,
        "sourceRegions": SOURCE_REGIONS,
    });
    let mut probe = json!({ "port": spec.port });
    if let Some(path) = spec.path.as_ref().filter(|_| kind != "TCP") {
        probe["requestPath"] = json!(path);
    }
    let key = match kind {
        "HTTP" => "httpHealthCheck",
        "HTTPS" => "httpsHealthCheck",
        _ => "tcpHealthCheck",
    };
    body[key] = probe;
    body
}

/// The spec a health check stands for: the declared one kept in its description, or what its
/// fields say (a check cairn did not create).
fn spec_from(check: &Value) -> HealthCheck {
    let declared = check["description"]
        .as_str()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .and_then(|d| serde_json::from_value(d["spec"].clone()).ok());
    if let Some(spec) = declared {
        return spec;
    }
    let protocol = check["type"].as_str().unwrap_or("TCP").to_lowercase();
    let probe = &check[match protocol.as_str() {
        "http" => "httpHealthCheck",
        "https" => "httpsHealthCheck",
        _ => "tcpHealthCheck",
    }];
    let n = |v: &Value, default: u64| v.as_u64().unwrap_or(default);
    HealthCheck {
        port: n(&probe["port"], if protocol == "https" { 443 } else { 80 }) as u16,
        path: probe["requestPath"].as_str().map(str::to_string),
        interval_secs: n(&check["checkIntervalSec"], 5),
        timeout_secs: n(&check["timeoutSec"], 5),
        failures: n(&check["unhealthyThreshold"], 2) as u32,
        recoveries: n(&check["healthyThreshold"], 2) as u32,
        protocol,
    }
}
