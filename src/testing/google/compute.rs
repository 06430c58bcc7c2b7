//! Compute Engine in the Google fake: regional managed instance groups (get, resize), global
//! health checks (get, insert, delete) and the operations those writes return.
//!
//! Semantics follow Compute Engine: writes return an operation that is `RUNNING` for a moment,
//! then `DONE`; a `requestId` used before returns the operation it started instead of acting
//! again; a resized group's instances come up (`currentActions.creating`) until the operation
//! is done; a health check with `sourceRegions` must list exactly three and probe at most every
//! 30 seconds (the limits the discovery document states); a health check a Cloud DNS routing
//! policy uses cannot be deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Call, Counts, Outcome, error, now_rfc3339, ok, settled};

const API: &str = "https://www.googleapis.com/compute/v1/projects";

#[derive(Default)]
pub(super) struct Compute {
    /// (region, name) → group.
    groups: BTreeMap<(String, String), Group>,
    checks: BTreeMap<String, Value>,
    /// Operation name → operation.
    operations: HashMap<String, Op>,
    /// requestId → operation name.
    requests: HashMap<String, String>,
    next_id: u64,
}

struct Group {
    id: u64,
    target: u32,
    /// Instances running before the last resize.
    before: u32,
    resized: Instant,
    created: String,
}

struct Op {
    json: Value,
    at: Instant,
}

impl Compute {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        7_000_000_000_000_000_000 + self.next_id
    }

    pub(super) fn add_group(&mut self, region: &str, name: &str, size: u32) {
        let id = self.id();
        self.groups.insert(
            (region.to_string(), name.to_string()),
            Group {
                id,
                target: size,
                before: size,
                resized: Instant::now(),
                created: now_rfc3339(),
            },
        );
    }

    pub(super) fn group_size(&self, region: &str, name: &str) -> Option<u32> {
        self.groups
            .get(&(region.to_string(), name.to_string()))
            .map(|g| g.target)
    }

    pub(super) fn health_checks(&self) -> Vec<Value> {
        self.checks.values().cloned().collect()
    }

    pub(super) fn has_check(&self, name: &str) -> bool {
        self.checks.contains_key(name)
    }

    pub(super) fn serve(
        &mut self,
        call: &Call<'_>,
        counts: &Counts,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Outcome {
        let project = &call.options.project;
        // A write repeated with its requestId: the operation it started.
        if let Some(r) = call.query("requestId")
            && let Some(op) = self.requests.get(r).and_then(|n| self.operations.get(n))
        {
            counts.replays.fetch_add(1, Ordering::Relaxed);
            return ok(op_json(op, call));
        }
        match call.op {
            "compute.regionInstanceGroupManagers.get" => {
                let (region, name) = (&call.path["region"], &call.path["instanceGroupManager"]);
                match self.groups.get(&(region.clone(), name.clone())) {
                    Some(g) => ok(group_json(project, region, name, g, call)),
                    None => not_found("instanceGroupManagers", name),
                }
            }
            "compute.regionInstanceGroupManagers.resize" => {
                let (region, name) = (&call.path["region"], &call.path["instanceGroupManager"]);
                let key = (region.clone(), name.clone());
                let Some(size) = call.query("size").and_then(|s| s.parse::<u32>().ok()) else {
                    return error(400, "invalid", "Invalid value for field 'size'");
                };
                let Some(g) = self.groups.get_mut(&key) else {
                    return not_found("instanceGroupManagers", name);
                };
                g.before = if settled(g.resized, call.options) {
                    g.target
                } else {
                    g.before
                };
                g.target = size;
                g.resized = Instant::now();
                let (id, target) = (
                    g.id,
                    format!("{API}/{project}/regions/{region}/instanceGroupManagers/{name}"),
                );
                self.operation(
                    call,
                    "compute.instanceGroupManagers.resize",
                    &target,
                    id,
                    Some(region),
                )
            }
            "compute.regionOperations.get" | "compute.globalOperations.get" => {
                match self.operations.get(&call.path["operation"]) {
                    Some(op) => ok(op_json(op, call)),
                    None => not_found("operations", &call.path["operation"]),
                }
            }
            "compute.healthChecks.get" => match self.checks.get(&call.path["healthCheck"]) {
                Some(c) => ok(c.clone()),
                None => not_found("healthChecks", &call.path["healthCheck"]),
            },
            "compute.healthChecks.insert" => {
                let body = call.body.cloned().unwrap_or_default();
                let name = body["name"].as_str().unwrap_or_default().to_string();
                if let Err(why) = valid_check(&body) {
                    return error(
                        400,
                        "invalid",
                        format!("Invalid value for field 'resource': {why}"),
                    );
                }
                if self.checks.contains_key(&name) {
                    return error(
                        409,
                        "alreadyExists",
                        format!(
                            "The resource 'projects/{project}/global/healthChecks/{name}' already exists"
                        ),
                    );
                }
                let id = self.id();
                let target = format!("{API}/{project}/global/healthChecks/{name}");
                let mut check = body;
                check["kind"] = json!("compute#healthCheck");
                check["id"] = json!(id.to_string());
                check["creationTimestamp"] = json!(now_rfc3339());
                check["selfLink"] = json!(target);
                self.checks.insert(name, check);
                self.operation(call, "insert", &target, id, None)
            }
            "compute.healthChecks.delete" => {
                let name = call.path["healthCheck"].clone();
                if in_use(&name) {
                    return error(
                        400,
                        "resourceInUseByAnotherResource",
                        format!(
                            "The health_check resource '{name}' is already being used by a Cloud DNS record set"
                        ),
                    );
                }
                let Some(check) = self.checks.remove(&name) else {
                    return not_found("healthChecks", &name);
                };
                let id = check["id"]
                    .as_str()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                let target = format!("{API}/{project}/global/healthChecks/{name}");
                self.operation(call, "delete", &target, id, None)
            }
            other => error(400, "invalid", format!("the fake does not serve {other}")),
        }
    }

    /// Records a write's operation (under its requestId) and answers it.
    fn operation(
        &mut self,
        call: &Call<'_>,
        kind: &str,
        target: &str,
        target_id: u64,
        region: Option<&str>,
    ) -> Outcome {
        let id = self.id();
        let name = format!("operation-{id}");
        let project = &call.options.project;
        let scope = match region {
            Some(r) => format!("regions/{r}"),
            None => "global".into(),
        };
        let mut json = json!({
            "kind": "compute#operation",
            "id": id.to_string(),
            "name": name,
            "operationType": kind,
            "targetLink": target,
            "targetId": target_id.to_string(),
            "user": format!("cairn@{project}.iam.gserviceaccount.com"),
            "insertTime": now_rfc3339(),
            "startTime": now_rfc3339(),
            "selfLink": format!("{API}/{project}/{scope}/operations/{name}"),
        });
        if let Some(r) = region {
            json["region"] = json!(format!("{API}/{project}/regions/{r}"));
        }
        if let Some(r) = call.query("requestId") {
            json["clientOperationId"] = json!(r);
            self.requests.insert(r.to_string(), name.clone());
        }
        let op = Op {
            json,
            at: Instant::now(),
        };
        let answer = op_json(&op, call);
        self.operations.insert(name, op);
        ok(answer)
    }
}

fn not_found(kind: &str, name: &str) -> Outcome {
    error(
        404,
        "notFound",
        format!("The resource '{kind}/{name}' was not found"),
    )
}

fn op_json(op: &Op, call: &Call<'_>) -> Value {
    let mut v = op.json.clone();
    let done = settled(op.at, call.options);
    v["status"] = json!(if done { "DONE" } else { "RUNNING" });
    v["progress"] = json!(if done { 100 } else { 0 });
    if done {
        v["endTime"] = json!(now_rfc3339());
    }
    v
}

fn group_json(project: &str, region: &str, name: &str, g: &Group, call: &Call<'_>) -> Value {
    let running = if settled(g.resized, call.options) {
        g.target
    } else {
        g.before
    };
    let link = format!("{API}/{project}/regions/{region}/instanceGroupManagers/{name}");
    json!({
        "kind": "compute#instanceGroupManager",
        "id": g.id.to_string(),
        "creationTimestamp": g.created,
        "name": name,
        "region": format!("{API}/{project}/regions/{region}"),
        "instanceTemplate": format!("{API}/{project}/global/instanceTemplates/{name}-template"),
        "instanceGroup": format!("{API}/{project}/regions/{region}/instanceGroups/{name}"),
        "baseInstanceName": name,
        "fingerprint": "Y2Fpcm4tdGVzdA==",
        "currentActions": {
            "none": running.min(g.target),
            "creating": g.target.saturating_sub(running),
            "deleting": running.saturating_sub(g.target),
        },
        "status": { "isStable": running == g.target },
        "targetSize": g.target,
        "selfLink": link,
    })
}

/// What Compute Engine checks of a health check beyond the contract's schema.
fn valid_check(c: &Value) -> Result<(), String> {
    let name = c["name"].as_str().unwrap_or_default();
    let name_ok = name.starts_with(|ch: char| ch.is_ascii_lowercase())
        && name.len() <= 63
        && !name.ends_with('-')
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    if !name_ok {
        return Err(format!(
            "name '{name}' does not match [a-z]([-a-z0-9]*[a-z0-9])?"
        ));
    }
    let kind = c["type"].as_str().unwrap_or_default();
    let probes: Vec<&str> = ["httpHealthCheck", "httpsHealthCheck", "tcpHealthCheck"]
        .into_iter()
        .filter(|k| c[*k].is_object())
        .collect();
    let expected = match kind {
        "HTTP" => "httpHealthCheck",
        "HTTPS" => "httpsHealthCheck",
        "TCP" => "tcpHealthCheck",
        other => return Err(format!("type '{other}' is not supported here")),
    };
    if probes != [expected] {
        return Err(format!("a {kind} health check needs exactly `{expected}`"));
    }
    let interval = c["checkIntervalSec"].as_u64().unwrap_or(5);
    if c["timeoutSec"].as_u64().unwrap_or(5) > interval {
        return Err("timeoutSec is greater than checkIntervalSec".into());
    }
    if let Some(regions) = c["sourceRegions"].as_array() {
        if regions.len() != 3 {
            return Err("sourceRegions must list exactly 3 regions".into());
        }
        if interval < 30 {
            return Err("with sourceRegions, checkIntervalSec must be at least 30".into());
        }
    }
    Ok(())
}
