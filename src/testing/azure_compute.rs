//! Virtual Machine Scale Sets in the Azure fake (Microsoft.Compute, api-version 2024-07-01),
//! served by [`super::azure_dns`]'s server on the same endpoint, with its TLS, token endpoint,
//! contract checks and injected faults.
//!
//! What the fake models is what cairn touches: a scale set's `sku` (VM size and capacity),
//! tags, location, ETag and provisioning state. An update (`VirtualMachineScaleSets_Update`,
//! PATCH) is a long-running operation as in Azure: the answer is a 200 with the new model and
//! `provisioningState: Updating`, the operation runs for [`super::azure_dns::Options::operation_time`]
//! and the client learns its end the way [`AsyncHeader`] says: an `Azure-AsyncOperation`
//! status resource (checked against ARM's `OperationStatusResult`), a `Location` answering 202
//! until done, or the scale set's own `provisioningState`. `If-Match` is honoured (412 on a
//! stale ETag); the `stale_etag` fault makes another writer touch the scale set first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::azure_dns::{AsyncHeader, Inner, Outcome, contract_header, contract_query, error};
use super::contract::{self, Contract};

const API_VERSION: &str = "2024-07-01";

/// A scale set as tests seed and read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSet {
    pub name: String,
    /// `westeurope`.
    pub location: String,
    /// The VM size (`sku.name`), e.g. `Standard_D2s_v3`.
    pub vm_size: String,
    pub capacity: u64,
    pub tags: BTreeMap<String, String>,
}

impl ScaleSet {
    pub fn new(name: &str, location: &str, capacity: u64) -> ScaleSet {
        ScaleSet {
            name: name.into(),
            location: location.into(),
            vm_size: "Standard_D2s_v3".into(),
            capacity,
            tags: BTreeMap::new(),
        }
    }
}

struct Stored {
    set: ScaleSet,
    etag: String,
    unique_id: String,
    /// The update running now, if any.
    running: Option<String>,
    /// The capacities it was updated to.
    history: Vec<u64>,
    fail_next: Option<(String, String)>,
}

struct Operation {
    started: Instant,
    started_at: jiff::Timestamp,
    failure: Option<(String, String)>,
}

pub(super) struct Compute {
    pub(super) contract: Contract,
    /// Lower-case name → scale set (ARM names are case-insensitive).
    sets: Mutex<BTreeMap<String, Stored>>,
    operations: Mutex<HashMap<String, Operation>>,
    next_operation: AtomicU64,
}

/// A request for an operation status: `GET /subscriptions/S/providers/Microsoft.Compute/
/// locations/L/operations/ID`, with `monitor=true` for the `Location` form.
pub(super) struct OperationRequest {
    pub(super) subscription: String,
    id: String,
    monitor: bool,
}

impl OperationRequest {
    pub(super) fn parse(req: &contract::Request<'_>) -> Option<OperationRequest> {
        let rest = req.path.strip_prefix("/subscriptions/")?;
        let (subscription, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix("providers/Microsoft.Compute/locations/")?;
        let (_location, id) = rest.split_once("/operations/")?;
        (req.method == "GET" && !id.contains('/')).then(|| OperationRequest {
            subscription: subscription.to_string(),
            id: id.to_string(),
            monitor: contract_query(req, "monitor") == Some("true"),
        })
    }
}

impl Compute {
    pub(super) fn new() -> Compute {
        Compute {
            contract: Contract::azure_compute(),
            sets: Mutex::new(BTreeMap::new()),
            operations: Mutex::new(HashMap::new()),
            next_operation: AtomicU64::new(1),
        }
    }

    pub(super) fn add(&self, inner: &Inner, set: ScaleSet) {
        let stored = Stored {
            etag: inner.next_etag(),
            unique_id: uuid::Uuid::new_v4().to_string(),
            running: None,
            history: Vec::new(),
            fail_next: None,
            set,
        };
        let key = stored.set.name.to_lowercase();
        self.sets.lock().expect("sets").insert(key, stored);
    }

    pub(super) fn get(&self, name: &str) -> Option<ScaleSet> {
        let sets = self.sets.lock().expect("sets");
        sets.get(&name.to_lowercase()).map(|s| s.set.clone())
    }

    pub(super) fn set_capacity(&self, inner: &Inner, name: &str, capacity: u64) {
        let mut sets = self.sets.lock().expect("sets");
        let s = sets
            .get_mut(&name.to_lowercase())
            .expect("add_scale_set first");
        s.set.capacity = capacity;
        s.etag = inner.next_etag();
    }

    pub(super) fn fail_next(&self, name: &str, code: &str, message: &str) {
        let mut sets = self.sets.lock().expect("sets");
        let s = sets
            .get_mut(&name.to_lowercase())
            .expect("add_scale_set first");
        s.fail_next = Some((code.into(), message.into()));
    }

    pub(super) fn history(&self, name: &str) -> Vec<u64> {
        let sets = self.sets.lock().expect("sets");
        sets.get(&name.to_lowercase())
            .map(|s| s.history.clone())
            .unwrap_or_default()
    }

    /// Whether an operation is over, and how: `None` while it runs.
    fn outcome(&self, inner: &Inner, op: &Operation) -> Option<Result<(), (String, String)>> {
        (op.started.elapsed() >= inner.options.operation_time)
            .then(|| op.failure.clone().map_or(Ok(()), Err))
    }

    /// The provisioning state of a stored scale set, finishing its update if its time is up.
    fn provisioning_state(&self, inner: &Inner, s: &mut Stored) -> &'static str {
        let Some(id) = s.running.clone() else {
            return "Succeeded";
        };
        let operations = self.operations.lock().expect("operations");
        match operations.get(&id).map(|op| self.outcome(inner, op)) {
            Some(None) => "Updating",
            Some(Some(Err(_))) => "Failed",
            _ => {
                s.running = None;
                "Succeeded"
            }
        }
    }

    pub(super) fn operation(
        &self,
        inner: &Inner,
        m: &contract::Matched<'_>,
        req: &contract::Request<'_>,
    ) -> Outcome {
        let mut sets = self.sets.lock().expect("sets");
        match m.operation.id.as_str() {
            "VirtualMachineScaleSets_List" => {
                let page = inner.options.page_size.max(1);
                let skip: usize = contract_query(req, "$skipToken")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let keys: Vec<String> = sets.keys().cloned().collect();
                let value: Vec<Value> = keys
                    .iter()
                    .skip(skip)
                    .take(page)
                    .map(|k| {
                        let s = sets.get_mut(k).expect("listed");
                        self.json(inner, s)
                    })
                    .collect();
                let mut body = json!({ "value": value });
                if skip + page < keys.len() {
                    body["nextLink"] = json!(format!(
                        "{}{}?api-version={API_VERSION}&$skipToken={}",
                        inner.url,
                        req.path,
                        skip + page
                    ));
                }
                Outcome::Answer(200, Some(body), Vec::new())
            }
            "VirtualMachineScaleSets_Get" | "VirtualMachineScaleSets_Update" => {
                let name = &m.path_params["vmScaleSetName"];
                let Some(s) = sets.get_mut(&name.to_lowercase()) else {
                    return error(
                        404,
                        "ResourceNotFound",
                        format!(
                            "The Resource 'Microsoft.Compute/virtualMachineScaleSets/{name}' under resource group '{}' was not found.",
                            inner.options.resource_group
                        ),
                    );
                };
                if m.operation.id == "VirtualMachineScaleSets_Get" {
                    return Outcome::Answer(200, Some(self.json(inner, s)), Vec::new());
                }
                self.update(inner, s, req)
            }
            other => error(
                400,
                "NotImplemented",
                format!("the fake does not serve {other}"),
            ),
        }
    }

    fn update(&self, inner: &Inner, s: &mut Stored, req: &contract::Request<'_>) -> Outcome {
        let if_match = contract_header(req, "if-match");
        if if_match.is_some() && inner.draw(inner.options.faults.stale_etag) {
            // Another writer (the portal, an autoscale rule) got there first.
            inner.counts.stale_etags.fetch_add(1, Ordering::Relaxed);
            s.etag = inner.next_etag();
        }
        if let Some(want) = if_match
            && want != "*"
            && want != s.etag
        {
            return error(
                412,
                "PreconditionFailed",
                "The specified precondition 'If-Match' failed.",
            );
        }
        if contract_header(req, "if-none-match") == Some("*") {
            return error(
                412,
                "PreconditionFailed",
                "The specified precondition 'If-None-Match' failed: the scale set exists.",
            );
        }
        let body = req.body.cloned().unwrap_or_default();
        if let Some(sku) = body.get("sku") {
            if let Some(size) = sku["name"].as_str() {
                s.set.vm_size = size.to_string();
            }
            if let Some(capacity) = sku["capacity"].as_u64() {
                s.set.capacity = capacity;
                s.history.push(capacity);
            }
        }
        if let Some(tags) = body["tags"].as_object() {
            s.set.tags = tags
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
        }
        inner
            .counts
            .scale_set_updates
            .fetch_add(1, Ordering::Relaxed);
        s.etag = inner.next_etag();
        let id = format!(
            "{:08x}-0000-0000-0000-{:012x}",
            self.next_operation.fetch_add(1, Ordering::Relaxed),
            inner.options.seed
        );
        self.operations.lock().expect("operations").insert(
            id.clone(),
            Operation {
                started: Instant::now(),
                started_at: jiff::Timestamp::now(),
                failure: s.fail_next.take(),
            },
        );
        s.running = Some(id.clone());
        let status = format!(
            "{}/subscriptions/{}/providers/Microsoft.Compute/locations/{}/operations/{id}?p={}&api-version={API_VERSION}",
            inner.url, inner.options.subscription, s.set.location, s.unique_id
        );
        let headers = match inner.options.async_header {
            AsyncHeader::AzureAsyncOperation => vec![("azure-asyncoperation", status)],
            AsyncHeader::Location => vec![("location", format!("{status}&monitor=true"))],
            AsyncHeader::None => Vec::new(),
        };
        Outcome::Answer(200, Some(self.json(inner, s)), headers)
    }

    /// An operation status: the `Azure-AsyncOperation` form (200 with an
    /// `OperationStatusResult`, checked against ARM's common types) or the `Location` form (202
    /// while it runs; 200 when it succeeded; the error when it failed).
    pub(super) fn operation_status(
        &self,
        inner: &Inner,
        r: &OperationRequest,
        req: &contract::Request<'_>,
    ) -> Outcome {
        inner.counts.operation_polls.fetch_add(1, Ordering::Relaxed);
        let version = contract_query(req, "api-version");
        let unknown = req
            .query
            .iter()
            .find(|(k, _)| !matches!(k.as_str(), "api-version" | "p" | "monitor"));
        if version != Some(API_VERSION) || unknown.is_some() || req.body.is_some() {
            let v = format!(
                "operation status {}: api-version {version:?}, query {:?}: not what the fake handed out",
                req.path, req.query
            );
            inner.violation(v.clone());
            return error(400, "BadRequest", v);
        }
        let operations = self.operations.lock().expect("operations");
        let Some(op) = operations.get(&r.id) else {
            return error(404, "NotFound", format!("no operation {}", r.id));
        };
        let outcome = self.outcome(inner, op);
        let retry = vec![("retry-after", inner.options.poll_after_secs.to_string())];
        if r.monitor {
            return match outcome {
                None => Outcome::Answer(202, None, retry),
                Some(Ok(())) => Outcome::Answer(200, None, Vec::new()),
                Some(Err((code, message))) => error(409, &code, message),
            };
        }
        let mut body = json!({
            "name": r.id,
            "startTime": op.started_at.to_string(),
            "status": match &outcome {
                None => "InProgress",
                Some(Ok(())) => "Succeeded",
                Some(Err(_)) => "Failed",
            },
        });
        if outcome.is_some() {
            body["endTime"] = json!(jiff::Timestamp::now().to_string());
        }
        if let Some(Err((code, message))) = &outcome {
            body["error"] = json!({ "code": code, "message": message });
        }
        if let Err(e) = self.contract.check_body("OperationStatusResult", &body) {
            inner.violation(format!("the fake's own operation status: {e}"));
        }
        Outcome::Answer(200, Some(body), retry)
    }

    fn json(&self, inner: &Inner, s: &mut Stored) -> Value {
        let state = self.provisioning_state(inner, s);
        let o = &inner.options;
        json!({
            "id": format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{}",
                o.subscription, o.resource_group, s.set.name
            ),
            "name": s.set.name,
            "type": "Microsoft.Compute/virtualMachineScaleSets",
            "location": s.set.location,
            "tags": s.set.tags,
            "etag": s.etag,
            "sku": { "name": s.set.vm_size, "tier": "Standard", "capacity": s.set.capacity },
            "properties": {
                "provisioningState": state,
                "orchestrationMode": "Uniform",
                "upgradePolicy": { "mode": "Manual" },
                "overprovision": false,
                "singlePlacementGroup": true,
                "uniqueId": s.unique_id,
            },
        })
    }
}
