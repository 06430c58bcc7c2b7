//! Cloud DNS in the Google fake: managed zones, record sets, atomic changes.
//!
//! Semantics follow Cloud DNS: a change's deletions must match the record sets exactly (404
//! `notFound` when missing, 412 `conditionNotMet` when different) and its additions must not
//! exist (409 `alreadyExists`), all checked before anything is applied, so a change applies
//! whole or not at all; a `clientOperationId` used before returns the change it created;
//! changes are `pending` for a moment, then `done`; lists page with `pageToken`; the project's
//! quota per change is enforced (403 `quotaExceeded`); routing policies that health-check
//! endpoints must name an existing Compute Engine health check.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use super::compute::Compute;
use super::{Call, Counts, Outcome, error, now_rfc3339, ok, settled};
use crate::provider::gcp::rrdata_bytes;

#[derive(Default)]
pub(super) struct Dns {
    /// Managed zone name → zone.
    zones: BTreeMap<String, Zone>,
    next_id: u64,
}

struct Zone {
    id: u64,
    dns_name: String,
    description: String,
    labels: BTreeMap<String, String>,
    created: String,
    /// (name, type) → the record set as stored.
    rrsets: BTreeMap<(String, String), Value>,
    changes: Vec<ChangeRec>,
    /// clientOperationId → index in `changes`.
    operations: HashMap<String, usize>,
}

struct ChangeRec {
    json: Value,
    at: Instant,
}

const TYPES: [&str; 8] = ["A", "AAAA", "CNAME", "TXT", "MX", "NS", "SRV", "CAA"];

impl Dns {
    pub(super) fn add_zone(&mut self, dns_name: &str, labels: &[(&str, &str)]) -> String {
        let name = dns_name
            .trim_end_matches('.')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>();
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.insert_zone(&name, dns_name, "", labels);
        name
    }

    fn insert_zone(
        &mut self,
        name: &str,
        dns_name: &str,
        description: &str,
        labels: BTreeMap<String, String>,
    ) {
        self.next_id += 1;
        let mut rrsets = BTreeMap::new();
        for (t, data) in [
            (
                "SOA",
                json!([
                    "ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"
                ]),
            ),
            (
                "NS",
                json!([
                    "ns-cloud-a1.googledomains.com.",
                    "ns-cloud-a2.googledomains.com."
                ]),
            ),
        ] {
            rrsets.insert(
                (dns_name.to_string(), t.to_string()),
                json!({ "kind": "dns#resourceRecordSet", "name": dns_name, "type": t,
                        "ttl": 21600, "rrdatas": data }),
            );
        }
        self.zones.insert(
            name.to_string(),
            Zone {
                id: 5_000_000_000_000_000_000 + self.next_id,
                dns_name: dns_name.to_string(),
                description: description.to_string(),
                labels,
                created: now_rfc3339(),
                rrsets,
                changes: Vec::new(),
                operations: HashMap::new(),
            },
        );
    }

    fn by_dns_name(&self, dns_name: &str) -> Option<&Zone> {
        self.zones.values().find(|z| z.dns_name == dns_name)
    }

    pub(super) fn zone_labels(&self, dns_name: &str) -> Vec<(String, String)> {
        self.by_dns_name(dns_name)
            .map(|z| z.labels.clone().into_iter().collect())
            .unwrap_or_default()
    }

    pub(super) fn put_rrset(&mut self, dns_name: &str, mut set: Value) {
        set["kind"] = json!("dns#resourceRecordSet");
        let key = key(&set);
        let zone = self
            .zones
            .values_mut()
            .find(|z| z.dns_name == dns_name)
            .expect("add_zone first");
        zone.rrsets.insert(key, set);
    }

    pub(super) fn rrsets(&self, dns_name: &str) -> Vec<Value> {
        self.by_dns_name(dns_name)
            .map(|z| z.rrsets.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn changes(&self, dns_name: &str) -> Vec<Value> {
        self.by_dns_name(dns_name)
            .map(|z| z.changes.iter().map(|c| c.json.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether a record set's routing policy uses the health check `name`.
    pub(super) fn uses_check(&self, name: &str) -> bool {
        self.zones
            .values()
            .flat_map(|z| z.rrsets.values())
            .any(|s| {
                s["routingPolicy"]["healthCheck"]
                    .as_str()
                    .is_some_and(|u| u.rsplit('/').next() == Some(name))
            })
    }

    pub(super) fn serve(&mut self, call: &Call<'_>, compute: &Compute, counts: &Counts) -> Outcome {
        let zone_name = call.path.get("managedZone").cloned().unwrap_or_default();
        match call.op {
            "dns.projects.get" => {
                let (additions, deletions, bytes) = call.options.quota;
                ok(json!({ "kind": "dns#project", "id": call.options.project,
                    "number": "100000000001",
                    "quota": { "kind": "dns#quota", "managedZones": 10000,
                        "rrsetsPerManagedZone": 10000, "rrsetAdditionsPerChange": additions,
                        "rrsetDeletionsPerChange": deletions, "totalRrdataSizePerChange": bytes,
                        "resourceRecordsPerRrset": 100 } }))
            }
            "dns.managedZones.list" => {
                let all: Vec<Value> = self
                    .zones
                    .iter()
                    .filter(|(_, z)| call.query("dnsName").is_none_or(|d| d == z.dns_name))
                    .map(|(n, z)| zone_json(n, z))
                    .collect();
                let (page, next) = call.page(&all);
                let mut body =
                    json!({ "kind": "dns#managedZonesListResponse", "managedZones": page });
                if let Some(t) = next {
                    body["nextPageToken"] = json!(t);
                }
                ok(body)
            }
            "dns.managedZones.create" => self.create_zone(call, counts),
            _ => {
                let Some(zone) = self.zones.get_mut(&zone_name) else {
                    return error(
                        404,
                        "notFound",
                        format!(
                            "The 'parameters.managedZone' resource named '{zone_name}' does not exist."
                        ),
                    );
                };
                let outcome = zone.serve(&zone_name, call, compute, counts);
                outcome.unwrap_or_else(|| self.delete_zone(&zone_name))
            }
        }
    }

    fn create_zone(&mut self, call: &Call<'_>, counts: &Counts) -> Outcome {
        let body = call.body.cloned().unwrap_or_default();
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let dns_name = body["dnsName"].as_str().unwrap_or_default().to_string();
        if let Some(op) = call.query("clientOperationId")
            && let Some((n, z)) = self
                .zones
                .iter()
                .find(|(_, z)| z.operations.contains_key(op))
        {
            counts.replays.fetch_add(1, Ordering::Relaxed);
            return ok(zone_json(n, z));
        }
        let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_name || !dns_name.ends_with('.') || body["visibility"] == "private" {
            return error(400, "invalid", "Invalid value for 'entity.managedZone'");
        }
        if self.zones.contains_key(&name) {
            return error(
                409,
                "alreadyExists",
                format!("The resource 'entity.managedZone' named '{name}' already exists"),
            );
        }
        let labels = body["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let description = body["description"].as_str().unwrap_or_default();
        self.insert_zone(&name, &dns_name, description, labels);
        let zone = self.zones.get_mut(&name).expect("inserted");
        if let Some(op) = call.query("clientOperationId") {
            zone.operations.insert(op.to_string(), usize::MAX);
        }
        ok(zone_json(&name, zone))
    }

    /// `managedZones.delete`: only an empty zone (its SOA and NS aside).
    fn delete_zone(&mut self, name: &str) -> Outcome {
        let zone = &self.zones[name];
        if zone
            .rrsets
            .keys()
            .any(|(n, t)| *n != zone.dns_name || (t != "SOA" && t != "NS"))
        {
            return error(
                400,
                "containerNotEmpty",
                format!("The resource named '{name}' cannot be deleted because it is not empty"),
            );
        }
        self.zones.remove(name);
        Outcome::Answer(204, None, Vec::new())
    }
}

impl Zone {
    /// The zone's operations; `None` asks the caller to delete the zone.
    fn serve(
        &mut self,
        name: &str,
        call: &Call<'_>,
        compute: &Compute,
        counts: &Counts,
    ) -> Option<Outcome> {
        Some(match call.op {
            "dns.managedZones.get" => ok(zone_json(name, self)),
            "dns.managedZones.delete" => return None,
            "dns.managedZones.patch" => {
                let body = call.body.cloned().unwrap_or_default();
                let old = zone_json(name, self);
                if let Some(labels) = body["labels"].as_object() {
                    self.labels = labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                }
                if let Some(d) = body["description"].as_str() {
                    self.description = d.to_string();
                }
                let id = call
                    .query("clientOperationId")
                    .map_or_else(|| format!("{}", self.changes.len() + 1000), str::to_string);
                ok(json!({ "kind": "dns#operation", "id": id, "type": "UPDATE",
                    "status": "done", "startTime": now_rfc3339(), "user": "cairn-test",
                    "zoneContext": { "oldValue": old, "newValue": zone_json(name, self) } }))
            }
            "dns.resourceRecordSets.list" => {
                let all: Vec<Value> = self
                    .rrsets
                    .iter()
                    .filter(|((n, t), _)| {
                        call.query("name").is_none_or(|q| q == n)
                            && call.query("type").is_none_or(|q| q == t)
                    })
                    .map(|(_, s)| s.clone())
                    .collect();
                let (page, next) = call.page(&all);
                let mut body =
                    json!({ "kind": "dns#resourceRecordSetsListResponse", "rrsets": page });
                if let Some(t) = next {
                    body["nextPageToken"] = json!(t);
                }
                ok(body)
            }
            "dns.resourceRecordSets.get" => {
                let k = (call.path["name"].clone(), call.path["type"].clone());
                match self.rrsets.get(&k) {
                    Some(s) => ok(s.clone()),
                    None => error(
                        404,
                        "notFound",
                        format!(
                            "The 'parameters.name' resource named '{} ({})' does not exist.",
                            k.0, k.1
                        ),
                    ),
                }
            }
            "dns.changes.create" => self.change(call, compute, counts),
            "dns.changes.get" => {
                let id = &call.path["changeId"];
                match self.changes.iter().find(|c| c.json["id"] == id.as_str()) {
                    Some(c) => ok(change_json(c, call)),
                    None => error(
                        404,
                        "notFound",
                        format!("The 'parameters.changeId' resource named '{id}' does not exist."),
                    ),
                }
            }
            other => error(400, "invalid", format!("the fake does not serve {other}")),
        })
    }

    /// `changes.create`: everything checked first, then applied whole.
    fn change(&mut self, call: &Call<'_>, compute: &Compute, counts: &Counts) -> Outcome {
        if let Some(op) = call.query("clientOperationId")
            && let Some(&i) = self.operations.get(op)
        {
            counts.replays.fetch_add(1, Ordering::Relaxed);
            return ok(change_json(&self.changes[i], call));
        }
        let body = call.body.cloned().unwrap_or_default();
        let list = |k: &str| body[k].as_array().cloned().unwrap_or_default();
        let (additions, deletions) = (list("additions"), list("deletions"));
        let (max_add, max_del, max_bytes) = call.options.quota;
        let bytes: usize = additions.iter().chain(&deletions).map(rrdata_bytes).sum();
        if additions.len() > max_add || deletions.len() > max_del || bytes > max_bytes {
            return error(
                403,
                "quotaExceeded",
                "Quota exceeded for quota metric 'rrsetAdditionsPerChange', 'rrsetDeletionsPerChange' or 'totalRrdataSizePerChange'",
            );
        }
        if additions.is_empty() && deletions.is_empty() {
            return error(
                400,
                "required",
                "The change has no additions and no deletions.",
            );
        }
        let mut rrsets = self.rrsets.clone();
        for (i, d) in deletions.iter().enumerate() {
            let k = key(d);
            match rrsets.get(&k) {
                None => {
                    return error(
                        404,
                        "notFound",
                        format!(
                            "The 'entity.change.deletions[{i}]' resource named '{} ({})' does not exist.",
                            k.0, k.1
                        ),
                    );
                }
                Some(s) if !same(s, d) => {
                    return error(
                        412,
                        "conditionNotMet",
                        format!("Precondition not met for 'entity.change.deletions[{i}]'"),
                    );
                }
                Some(_) => {
                    rrsets.remove(&k);
                }
            }
        }
        for (i, a) in additions.iter().enumerate() {
            if let Err(why) = self.valid(a, compute) {
                return error(
                    400,
                    "invalid",
                    format!("Invalid value for 'entity.change.additions[{i}]': {why}"),
                );
            }
            let k = key(a);
            if rrsets.contains_key(&k) {
                return error(
                    409,
                    "alreadyExists",
                    format!(
                        "The resource 'entity.change.additions[{i}]' named '{} ({})' already exists",
                        k.0, k.1
                    ),
                );
            }
            let mut stored = a.clone();
            stored["kind"] = json!("dns#resourceRecordSet");
            rrsets.insert(k, stored);
        }
        self.rrsets = rrsets;
        let rec = ChangeRec {
            json: json!({ "kind": "dns#change", "id": (self.changes.len() + 1).to_string(),
                "startTime": now_rfc3339(), "additions": additions, "deletions": deletions,
                "isServing": true }),
            at: Instant::now(),
        };
        self.changes.push(rec);
        if let Some(op) = call.query("clientOperationId") {
            self.operations
                .insert(op.to_string(), self.changes.len() - 1);
        }
        ok(change_json(self.changes.last().expect("pushed"), call))
    }

    /// What Cloud DNS checks of a record set beyond the contract's schema.
    fn valid(&self, set: &Value, compute: &Compute) -> Result<(), String> {
        let name = set["name"].as_str().unwrap_or_default();
        let rtype = set["type"].as_str().unwrap_or_default();
        if !(name == self.dns_name || name.ends_with(&format!(".{}", self.dns_name))) {
            return Err(format!("'{name}' is not within the zone {}", self.dns_name));
        }
        if !TYPES.contains(&rtype) {
            return Err(format!("type '{rtype}' cannot be added"));
        }
        if set["ttl"].as_i64().is_none_or(|t| t < 0) {
            return Err("a ttl is required".into());
        }
        let data = |v: &Value| v.as_array().cloned().unwrap_or_default();
        let hosts_qualified = |rrdatas: &[Value]| {
            rrdatas
                .iter()
                .filter_map(Value::as_str)
                .all(|d| !matches!(rtype, "CNAME" | "NS" | "MX" | "SRV") || d.ends_with('.'))
        };
        let policy = &set["routingPolicy"];
        match (data(&set["rrdatas"]).is_empty(), policy.is_null()) {
            (false, true) if hosts_qualified(&data(&set["rrdatas"])) => return Ok(()),
            (false, true) => return Err("host names in rrdata must end with '.'".into()),
            (true, false) => {}
            _ => return Err("give either rrdatas or a routingPolicy".into()),
        }
        let kinds = ["wrr", "geo", "primaryBackup"]
            .iter()
            .filter(|k| policy[**k].is_object())
            .count();
        if kinds != 1 {
            return Err("a routingPolicy has exactly one of wrr, geo, primaryBackup".into());
        }
        let items = |p: &Value| data(&p["items"]);
        // primaryBackup's primary targets are always health-checked.
        let mut checked = policy["primaryBackup"].is_object();
        let mut target = |item: &Value| -> Result<(), String> {
            let endpoints = data(&item["healthCheckedTargets"]["externalEndpoints"]);
            checked |= !endpoints.is_empty();
            let rrdatas = data(&item["rrdatas"]);
            if rrdatas.is_empty() && endpoints.is_empty() {
                return Err("an item needs rrdatas or healthCheckedTargets".into());
            }
            if !hosts_qualified(&rrdatas) {
                return Err("host names in rrdata must end with '.'".into());
            }
            Ok(())
        };
        let regions = |list: &[Value]| -> Result<(), String> {
            let mut seen = std::collections::HashSet::new();
            for i in list {
                let l = i["location"].as_str().unwrap_or_default();
                if !crate::config::is_gcp_region(l) || !seen.insert(l.to_string()) {
                    return Err(format!("location '{l}' is not a region, or repeated"));
                }
            }
            Ok(())
        };
        if policy["wrr"].is_object() {
            let list = items(&policy["wrr"]);
            if list.is_empty()
                || list
                    .iter()
                    .any(|i| i["weight"].as_f64().is_none_or(|w| w < 0.0))
            {
                return Err("wrr items need a non-negative weight".into());
            }
            list.iter().try_for_each(&mut target)?;
        } else if policy["geo"].is_object() {
            let list = items(&policy["geo"]);
            regions(&list)?;
            list.iter().try_for_each(&mut target)?;
        } else {
            let pb = &policy["primaryBackup"];
            if data(&pb["primaryTargets"]["externalEndpoints"]).is_empty() {
                return Err("primaryBackup needs primaryTargets".into());
            }
            let backup = items(&pb["backupGeoTargets"]);
            if backup.is_empty() {
                return Err("primaryBackup needs backupGeoTargets".into());
            }
            regions(&backup)?;
            backup.iter().try_for_each(&mut target)?;
        }
        match policy["healthCheck"].as_str() {
            None if checked => Err("health-checked targets need a healthCheck".into()),
            Some(url) if !compute.has_check(url.rsplit('/').next().unwrap_or_default()) => {
                Err(format!("health check '{url}' does not exist"))
            }
            _ => Ok(()),
        }
    }
}

fn zone_json(name: &str, z: &Zone) -> Value {
    json!({
        "kind": "dns#managedZone",
        "name": name,
        "dnsName": z.dns_name,
        "description": z.description,
        "id": z.id.to_string(),
        "nameServers": ["ns-cloud-a1.googledomains.com.", "ns-cloud-a2.googledomains.com."],
        "creationTime": z.created,
        "visibility": "public",
        "labels": z.labels,
    })
}

fn change_json(c: &ChangeRec, call: &Call<'_>) -> Value {
    let mut v = c.json.clone();
    let status = if settled(c.at, call.options) {
        "done"
    } else {
        "pending"
    };
    v["status"] = json!(status);
    v
}

fn key(set: &Value) -> (String, String) {
    (
        set["name"].as_str().unwrap_or_default().to_string(),
        set["type"].as_str().unwrap_or_default().to_string(),
    )
}

/// A deletion matches the stored record set exactly (`kind` aside, which clients may omit).
fn same(stored: &Value, given: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("kind");
        }
        v
    };
    strip(stored) == strip(given)
}
