//! Cloud DNS: managed zones, record sets and their routing policies, written as changes.
//!
//! A change (`changes.create`) carries deletions and additions applied atomically; an update
//! is the old record set deleted and the new one added in the same change, and Cloud DNS
//! refuses the whole change when a deletion does not match what is there (412) or an addition
//! already exists (409). Record sets keep no labels, so which ones are cairn's is the state's
//! business (recorded IDs and write-ahead intents), as for Route53 record sets.

use std::collections::{HashMap, HashSet};

use reqwest::Method;
use serde_json::{Value, json};

use super::{Failure, GCP, Gcp, GcpError, OWNER_LABEL, permanent};
use crate::model::{
    Attrs, Cloud, HealthCheck, Member, RecordAttrs, RecordType, Routing, ZoneAttrs,
};
use crate::provider::{Change, ChangeOp, ChangeResult, LiveResource, Scope, digest};

/// The backup of a failover record is one geo bucket, which every client falls into; Cloud
/// DNS wants a Google Cloud region as its location.
const BACKUP_LOCATION: &str = "us-central1";
/// Record sets asked per page when listing.
const PAGE: &str = "1000";
/// Conditional changes retried after another writer changed the record set first.
const MAX_CONFLICTS: usize = 5;

type RecordKey = (String, String, RecordType);

/// What the last refresh (and later changes) showed: deletions must match exactly.
#[derive(Default)]
pub(super) struct Seen {
    /// Zone name (no final dot) → managed zone name.
    zones: HashMap<String, String>,
    /// (zone, relative name, type) → the record set as Cloud DNS listed it.
    rrsets: HashMap<RecordKey, Value>,
    /// Health check name → what it checks (`None`: it does not exist).
    pub(super) checks: HashMap<String, Option<HealthCheck>>,
}

/// The project's Cloud DNS limits on one change (`projects.get`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ChangeQuota {
    additions: usize,
    deletions: usize,
    rrdata_bytes: usize,
}

impl Gcp {
    pub(super) async fn refresh_dns(&self, scope: &Scope) -> Result<Vec<LiveResource>, GcpError> {
        let mut live = Vec::new();
        for (_, zone) in scope.zones.iter().filter(|(c, _)| *c == Cloud::Gcp) {
            let Some(z) = self.find_zone(zone).await? else {
                continue;
            };
            let managed = z["name"].as_str().unwrap_or_default().to_string();
            live.push(zone_live(zone, &z));
            let sets = self
                .paged(&format!("/managedZones/{managed}/rrsets"), "rrsets")
                .await?;
            // The health checks the routing policies use, each read once.
            for name in sets.iter().filter_map(check_name_of) {
                let known = self.seen.lock().expect("seen").checks.contains_key(name);
                if !known {
                    let spec = self.read_check(name).await?;
                    let mut seen = self.seen.lock().expect("seen");
                    seen.checks.insert(name.to_string(), spec);
                }
            }
            let mut seen = self.seen.lock().expect("seen");
            seen.zones.insert(zone.clone(), managed.clone());
            seen.rrsets.retain(|(z, _, _), _| z != zone);
            for set in sets {
                let Some(attrs) = record_from(zone, &set, &seen.checks) else {
                    continue;
                };
                live.push(LiveResource {
                    provider: GCP,
                    id: record_id(&managed, &attrs.name, attrs.rtype),
                    attrs: Attrs::Record(attrs.clone()),
                    owner: None,
                    adoptable: false,
                });
                seen.rrsets
                    .insert((zone.clone(), attrs.name, attrs.rtype), set);
            }
        }
        Ok(live)
    }

    /// Every item of a Cloud DNS list, following `nextPageToken`.
    async fn paged(&self, path: &str, items: &str) -> Result<Vec<Value>, GcpError> {
        self.paged_with(path, items, &[]).await
    }

    async fn paged_with(
        &self,
        path: &str,
        items: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            if items == "rrsets" {
                q.push(("maxResults", PAGE));
            }
            if let Some(t) = &token {
                q.push(("pageToken", t));
            }
            let page = self
                .get(&Gcp::url(&self.dns, path, &q)?)
                .await?
                .unwrap_or_default();
            out.extend(page[items].as_array().into_iter().flatten().cloned());
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The public managed zone serving `zone`; of several, the one cairn labelled.
    async fn find_zone(&self, zone: &str) -> Result<Option<Value>, GcpError> {
        let dns_name = format!("{zone}.");
        let mut found: Vec<Value> = self
            .paged_with("/managedZones", "managedZones", &[("dnsName", &dns_name)])
            .await?
            .into_iter()
            .filter(|z| z["dnsName"] == dns_name.as_str() && z["visibility"] != "private")
            .collect();
        found.sort_by_key(|z| z["labels"][OWNER_LABEL].is_null());
        Ok(found.into_iter().next())
    }

    async fn managed_zone(&self, zone: &str) -> Result<Option<String>, GcpError> {
        if let Some(m) = self.seen.lock().expect("seen").zones.get(zone) {
            return Ok(Some(m.clone()));
        }
        let managed = self
            .find_zone(zone)
            .await?
            .and_then(|z| z["name"].as_str().map(str::to_string));
        if let Some(m) = &managed {
            let mut seen = self.seen.lock().expect("seen");
            seen.zones.insert(zone.to_string(), m.clone());
        }
        Ok(managed)
    }

    pub(super) async fn apply_zone(
        &self,
        change: &Change,
        owner: &str,
    ) -> Result<Option<LiveResource>, GcpError> {
        let zone = &change.address.name;
        let existing = self.find_zone(zone).await?;
        let z = match (&change.op, existing) {
            (ChangeOp::Delete { .. }, None) | (ChangeOp::Release { .. }, None) => return Ok(None),
            (ChangeOp::Delete { .. }, Some(z)) => return self.delete_zone(zone, &z).await,
            (ChangeOp::Release { .. }, Some(z)) => {
                self.label_owner(&z, None).await?;
                return Ok(None);
            }
            (ChangeOp::Adopt { .. }, None) => {
                return Err(permanent(format!(
                    "zone {zone} does not exist in Cloud DNS"
                )));
            }
            (_, Some(z)) => {
                // Creating a zone that exists unowned adopts it.
                match z["labels"][OWNER_LABEL].as_str() {
                    Some(o) if o == owner => {}
                    Some(other) => {
                        return Err(permanent(format!(
                            "zone {zone} is managed by another stack (owner {other})"
                        )));
                    }
                    None => self.label_owner(&z, Some(owner)).await?,
                }
                z
            }
            (_, None) => self.create_zone(zone, owner).await?,
        };
        let managed = z["name"].as_str().unwrap_or_default().to_string();
        self.seen
            .lock()
            .expect("seen")
            .zones
            .insert(zone.clone(), managed);
        let mut live = zone_live(zone, &z);
        live.owner = Some(owner.to_string());
        live.adoptable = false;
        Ok(Some(live))
    }

    /// Sets or removes cairn's label, keeping the zone's other labels.
    async fn label_owner(&self, z: &Value, owner: Option<&str>) -> Result<(), GcpError> {
        let mut labels = z["labels"].as_object().cloned().unwrap_or_default();
        match owner {
            Some(o) => labels.insert(OWNER_LABEL.into(), json!(o)),
            None => labels.remove(OWNER_LABEL),
        };
        let name = z["name"].as_str().unwrap_or_default();
        let url = Gcp::url(&self.dns, &format!("/managedZones/{name}"), &[])?;
        // Setting labels to a value is idempotent: safe to repeat when the outcome is unknown.
        self.call(
            true,
            Method::PATCH,
            &url,
            Some(&json!({ "labels": labels })),
        )
        .await
        .map(|_| ())
    }

    async fn create_zone(&self, zone: &str, owner: &str) -> Result<Value, GcpError> {
        let body = json!({
            "name": managed_zone_name(zone),
            "dnsName": format!("{zone}."),
            "description": "Managed by cairn",
            "labels": { OWNER_LABEL: owner },
            "visibility": "public",
        });
        let op = operation_id();
        let url = Gcp::url(&self.dns, "/managedZones", &[("clientOperationId", &op)])?;
        let mut last = None;
        for _ in 0..6 {
            match self.call(false, Method::POST, &url, Some(&body)).await {
                Ok(z) => return Ok(z.unwrap_or(body)),
                Err(e) if e.failure == Failure::Ambiguous || e.reason == "alreadyExists" => {
                    // Created by this attempt whose answer was lost, or by someone else?
                    match self.find_zone(zone).await? {
                        Some(z) if z["labels"][OWNER_LABEL] == owner => return Ok(z),
                        Some(_) => {
                            return Err(permanent(format!(
                                "zone {zone} was created by someone else meanwhile"
                            )));
                        }
                        // The name is taken by a zone for another DNS name.
                        None if e.reason == "alreadyExists" => return Err(e),
                        None => last = Some(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| permanent("the zone's creation stayed unknown")))
    }

    async fn delete_zone(&self, zone: &str, z: &Value) -> Result<Option<LiveResource>, GcpError> {
        let name = z["name"].as_str().unwrap_or_default();
        let url = Gcp::url(&self.dns, &format!("/managedZones/{name}"), &[])?;
        match self.call(false, Method::DELETE, &url, None).await {
            Ok(_) => Ok(None),
            Err(e) if e.status == 404 => Ok(None),
            Err(e) if e.failure == Failure::Ambiguous => match self.find_zone(zone).await? {
                None => Ok(None),
                Some(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn change_quota(&self) -> Result<ChangeQuota, GcpError> {
        self.quota
            .get_or_try_init(|| async {
                let project = self.get(&Gcp::url(&self.dns, "", &[])?).await?;
                let q = project.as_ref().map(|p| &p["quota"]);
                let n = |key: &str, default: usize| {
                    q.and_then(|q| q[key].as_u64())
                        .map_or(default, |v| (v as usize).max(1))
                };
                // Without an answer, Cloud DNS's documented defaults.
                Ok(ChangeQuota {
                    additions: n("rrsetAdditionsPerChange", 100),
                    deletions: n("rrsetDeletionsPerChange", 100),
                    rrdata_bytes: n("totalRrdataSizePerChange", 10_000),
                })
            })
            .await
            .copied()
    }

    pub(super) async fn apply_records(&self, changes: &[Change]) -> Vec<ChangeResult> {
        let zone = changes[0]
            .address
            .name
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let fail_all = |e: String| changes.iter().map(|_| Err(e.clone())).collect();
        let managed = match self.managed_zone(&zone).await {
            Ok(Some(m)) => m,
            Ok(None) => return fail_all(format!("zone {zone} does not exist in Cloud DNS")),
            Err(e) => return fail_all(e.to_string()),
        };
        let quota = match self.change_quota().await {
            Ok(q) => q,
            Err(e) => return fail_all(e.to_string()),
        };
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut plans = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            match self.plan_record(&zone, &managed, c).await {
                Ok(p) if p.is_noop() => results[i] = Some(Ok(p.live)),
                Ok(p) => plans.push((i, p)),
                Err(e) => results[i] = Some(Err(e.to_string())),
            }
        }
        for chunk in pack(plans, quota) {
            match self.submit(&managed, &chunk).await {
                Ok(()) => {
                    for (i, live) in self.settle(chunk).await {
                        results[i] = Some(Ok(live));
                    }
                }
                // One bad record fails an atomic change: the others go on their own.
                Err(e) if e.failure == Failure::Permanent && chunk.len() > 1 => {
                    for one in chunk {
                        let i = one.0;
                        results[i] = Some(self.submit_one(&managed, one).await);
                    }
                }
                Err(e) => {
                    for (i, _) in &chunk {
                        results[*i] = Some(Err(e.to_string()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("not applied".into())))
            .collect()
    }

    /// One record's change on its own: when the record set changed since it was read (412,
    /// 404, 409), reads it again and decides again.
    async fn submit_one(&self, managed: &str, (i, mut p): (usize, RecordPlan)) -> ChangeResult {
        for _ in 0..MAX_CONFLICTS {
            let one = vec![(i, p)];
            match self.submit(managed, &one).await {
                Ok(()) => return Ok(self.settle(one).await.remove(0).1),
                Err(e) if matches!(e.status, 404 | 409 | 412) => {
                    p = one.into_iter().next().expect("one").1;
                    let current = self
                        .read_rrset(managed, &p.key)
                        .await
                        .map_err(|e| e.to_string())?;
                    // Maybe our own earlier attempt: then it is done.
                    if current.as_ref().map(canonical) == p.addition.as_ref().map(canonical) {
                        return Ok(self.settle(vec![(i, p)]).await.remove(0).1);
                    }
                    if p.create_only && current.is_some() {
                        return Err(format!(
                            "{} {} exists already and is not managed by this stack",
                            p.key.2, p.key.1
                        ));
                    }
                    p.deletion = current;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!(
            "{} {} kept changing under cairn's changes",
            p.key.2, p.key.1
        ))
    }

    async fn read_rrset(&self, managed: &str, key: &RecordKey) -> Result<Option<Value>, GcpError> {
        let (zone, name, rtype) = key;
        let path = format!(
            "/managedZones/{managed}/rrsets/{}/{rtype}",
            fqdn(zone, name)
        );
        self.get(&Gcp::url(&self.dns, &path, &[])?).await
    }

    /// The deletion and addition one cairn change needs, creating its health check first.
    async fn plan_record(
        &self,
        zone: &str,
        managed: &str,
        change: &Change,
    ) -> Result<RecordPlan, GcpError> {
        let key = record_key(change).ok_or_else(|| permanent("not a record address"))?;
        let seen = self.seen.lock().expect("seen").rrsets.get(&key).cloned();
        let old = match (&change.op, seen) {
            (ChangeOp::Create { .. }, _) => None,
            (_, Some(s)) => Some(s),
            (_, None) => self.read_rrset(managed, &key).await?,
        };
        let id = record_id(managed, &key.1, key.2);
        let live = |attrs: RecordAttrs| LiveResource {
            provider: GCP,
            id: id.clone(),
            attrs: Attrs::Record(attrs),
            owner: None,
            adoptable: false,
        };
        let old_check = old.as_ref().and_then(check_name_of).map(str::to_string);
        let attrs = match (&change.op, change.op.attrs()) {
            (_, Some(Attrs::Record(r))) => r,
            (ChangeOp::Delete { .. }, _) => {
                return Ok(RecordPlan {
                    key,
                    deletion: old,
                    addition: None,
                    live: None,
                    create_only: false,
                    old_check,
                });
            }
            // Record sets carry no ownership marker: adopting or releasing one is the state's
            // business only.
            (ChangeOp::Adopt { .. } | ChangeOp::Release { .. }, _) => {
                let checks = self.seen.lock().expect("seen").checks.clone();
                let attrs = old.as_ref().and_then(|o| record_from(zone, o, &checks));
                return Ok(RecordPlan {
                    key,
                    deletion: None,
                    addition: None,
                    live: attrs
                        .filter(|_| matches!(change.op, ChangeOp::Adopt { .. }))
                        .map(live),
                    create_only: false,
                    old_check: None,
                });
            }
            _ => {
                return Err(permanent(format!(
                    "{}: not a record change",
                    change.address
                )));
            }
        };
        let check = match &attrs.health_check {
            Some(spec) => Some(self.ensure_check(&change.address, spec).await?),
            None => None,
        };
        let new = rrset_json(zone, attrs, check.as_deref()).map_err(permanent)?;
        let unchanged = old.as_ref().map(canonical) == Some(canonical(&new));
        Ok(RecordPlan {
            key,
            deletion: if unchanged { None } else { old },
            addition: (!unchanged).then_some(new),
            live: Some(live(attrs.clone())),
            create_only: matches!(change.op, ChangeOp::Create { .. }),
            old_check: old_check.filter(|c| Some(c.as_str()) != check_name(check.as_deref())),
        })
    }

    /// Sends one atomic change. When its outcome is unknown, reads the zone back: applied, it
    /// is done; untouched, it is sent again (same `clientOperationId`); anything else is a
    /// conflict for the next run to sort out.
    async fn submit(&self, managed: &str, chunk: &[(usize, RecordPlan)]) -> Result<(), GcpError> {
        let additions: Vec<&Value> = chunk
            .iter()
            .filter_map(|(_, p)| p.addition.as_ref())
            .collect();
        let deletions: Vec<&Value> = chunk
            .iter()
            .filter_map(|(_, p)| p.deletion.as_ref())
            .collect();
        let body = json!({ "additions": additions, "deletions": deletions });
        let op = operation_id();
        let path = format!("/managedZones/{managed}/changes");
        let url = Gcp::url(&self.dns, &path, &[("clientOperationId", &op)])?;
        let mut last = None;
        for _ in 0..6 {
            match self.call(false, Method::POST, &url, Some(&body)).await {
                Ok(change) => return self.wait_change(managed, &change.unwrap_or_default()).await,
                Err(e) if e.failure == Failure::Ambiguous => {
                    match self.outcome(managed, chunk).await? {
                        Outcome::Applied => return Ok(()),
                        Outcome::NotApplied => last = Some(e),
                        Outcome::Neither => {
                            return Err(permanent(format!(
                                "zone {managed} changed while a change was in flight; run plan again"
                            )));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| permanent("the change's outcome stayed unknown")))
    }

    /// Waits for a change to be `done` (its records sent to Cloud DNS's name servers).
    async fn wait_change(&self, managed: &str, change: &Value) -> Result<(), GcpError> {
        if change["status"] == "done" {
            return Ok(());
        }
        let id = change["id"].as_str().unwrap_or_default().to_string();
        let url = Gcp::url(
            &self.dns,
            &format!("/managedZones/{managed}/changes/{id}"),
            &[],
        )?;
        let url = &url;
        self.wait_until(&format!("Cloud DNS change {id}"), || async move {
            let now = self.get(url).await?.unwrap_or_default();
            Ok((now["status"] == "done").then_some(()))
        })
        .await
    }

    async fn outcome(
        &self,
        managed: &str,
        chunk: &[(usize, RecordPlan)],
    ) -> Result<Outcome, GcpError> {
        let now: HashMap<(String, String), Value> = self
            .paged(&format!("/managedZones/{managed}/rrsets"), "rrsets")
            .await?
            .into_iter()
            .map(|s| (set_key(&s), canonical(&s)))
            .collect();
        let (mut after, mut before) = (true, true);
        for (_, p) in chunk {
            let added: HashSet<(String, String)> = p.addition.iter().map(set_key).collect();
            if let Some(d) = &p.deletion {
                let current = now.get(&set_key(d));
                before &= current == Some(&canonical(d));
                after &= added.contains(&set_key(d)) || current.is_none();
            }
            if let Some(a) = &p.addition {
                let current = now.get(&set_key(a));
                after &= current == Some(&canonical(a));
                before &= p.deletion.is_some() || current.is_none();
            }
        }
        Ok(if after {
            Outcome::Applied
        } else if before {
            Outcome::NotApplied
        } else {
            Outcome::Neither
        })
    }

    /// After a change: remember the new record sets; delete health checks no longer used.
    /// Returns what each record is now.
    async fn settle(&self, chunk: Vec<(usize, RecordPlan)>) -> Vec<(usize, Option<LiveResource>)> {
        let mut out = Vec::with_capacity(chunk.len());
        for (i, p) in chunk {
            {
                let mut seen = self.seen.lock().expect("seen");
                match &p.addition {
                    Some(a) => seen.rrsets.insert(p.key.clone(), a.clone()),
                    None => seen.rrsets.remove(&p.key),
                };
            }
            // Best effort: a check left behind is named after its record and harmless.
            if let Some(check) = &p.old_check
                && check.starts_with("cairn-")
            {
                let _ = self.delete_check(check).await;
            }
            out.push((i, p.live));
        }
        out
    }
}

enum Outcome {
    Applied,
    NotApplied,
    Neither,
}

struct RecordPlan {
    key: RecordKey,
    /// The record set as it is now, to delete (exactly as listed).
    deletion: Option<Value>,
    addition: Option<Value>,
    live: Option<LiveResource>,
    /// A create: an existing record set is someone else's, not ours to replace.
    create_only: bool,
    /// A health check the old record set used and the new one does not.
    old_check: Option<String>,
}

impl RecordPlan {
    fn is_noop(&self) -> bool {
        self.deletion.is_none() && self.addition.is_none()
    }

    /// Bytes of record data it adds and deletes (the quota counts both).
    fn rrdata_bytes(&self) -> usize {
        self.deletion
            .iter()
            .chain(&self.addition)
            .map(rrdata_bytes)
            .sum()
    }
}

/// Bytes of record data in a record set, as Cloud DNS's `totalRrdataSizePerChange` counts
/// them: its answers and health-checked endpoints.
pub(crate) fn rrdata_bytes(v: &Value) -> usize {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("rrdatas" | "externalEndpoints", Value::Array(a)) => {
                    a.iter().filter_map(Value::as_str).map(str::len).sum()
                }
                _ => rrdata_bytes(v),
            })
            .sum(),
        Value::Array(a) => a.iter().map(rrdata_bytes).sum(),
        _ => 0,
    }
}

/// Packs whole record changes into Cloud DNS changes within the quota.
fn pack(plans: Vec<(usize, RecordPlan)>, quota: ChangeQuota) -> Vec<Vec<(usize, RecordPlan)>> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<(usize, RecordPlan)> = Vec::new();
    let (mut adds, mut dels, mut bytes) = (0, 0, 0);
    for (i, p) in plans {
        let (a, d, b) = (
            usize::from(p.addition.is_some()),
            usize::from(p.deletion.is_some()),
            p.rrdata_bytes(),
        );
        if !chunk.is_empty()
            && (adds + a > quota.additions
                || dels + d > quota.deletions
                || bytes + b > quota.rrdata_bytes)
        {
            chunks.push(std::mem::take(&mut chunk));
            (adds, dels, bytes) = (0, 0, 0);
        }
        (adds, dels, bytes) = (adds + a, dels + d, bytes + b);
        chunk.push((i, p));
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

fn zone_live(zone: &str, z: &Value) -> LiveResource {
    let owner = z["labels"][OWNER_LABEL].as_str().map(str::to_string);
    LiveResource {
        provider: GCP,
        id: z["name"].as_str().unwrap_or_default().to_string(),
        attrs: Attrs::Zone(ZoneAttrs {
            name: zone.to_string(),
        }),
        adoptable: owner.is_none(),
        owner,
    }
}

/// A managed zone name for `zone`: lower-case letters, digits and dashes, starting with a
/// letter, at most 63 characters (`shop.example.com` → `shop-example-com`).
pub(super) fn managed_zone_name(zone: &str) -> String {
    let mut name: String = zone
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "z-");
    }
    if name.len() > 63 {
        name = format!("{}-{}", &name[..50], &digest(&[zone])[..12]);
    }
    name.trim_end_matches('-').to_string()
}

/// A fresh `clientOperationId`: 1 to 63 of `[-a-z0-9]`.
fn operation_id() -> String {
    format!("cairn-{}", uuid::Uuid::new_v4().simple())
}

fn record_id(managed: &str, name: &str, rtype: RecordType) -> String {
    format!("{managed}/{name}/{rtype}")
}

/// (zone, relative name, type) of a record change's address `zone/name/TYPE`.
fn record_key(change: &Change) -> Option<RecordKey> {
    if let Some(Attrs::Record(r)) = change.op.attrs() {
        return Some((r.zone.clone(), r.name.clone(), r.rtype));
    }
    let (rest, t) = change.address.name.rsplit_once('/')?;
    let (zone, name) = rest.split_once('/')?;
    Some((zone.to_string(), name.to_string(), parse_type(t)?))
}

fn parse_type(s: &str) -> Option<RecordType> {
    serde_json::from_value(Value::String(s.to_string())).ok()
}

fn fqdn(zone: &str, name: &str) -> String {
    if name == "@" {
        format!("{zone}.")
    } else {
        format!("{name}.{zone}.")
    }
}

fn relative(zone: &str, fqdn: &str) -> Option<String> {
    let name = fqdn.trim_end_matches('.');
    if name.eq_ignore_ascii_case(zone) {
        return Some("@".into());
    }
    name.strip_suffix(&format!(".{zone}")).map(str::to_string)
}

fn set_key(set: &Value) -> (String, String) {
    (
        set["name"].as_str().unwrap_or_default().to_string(),
        set["type"].as_str().unwrap_or_default().to_string(),
    )
}

/// A record set as compared: without `kind`, numbers as floats, lists of strings sorted.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| k.as_str() != "kind")
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect(),
        ),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            let mut a = a.clone();
            a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            Value::Array(a)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Number(n) => json!(n.as_f64()),
        other => other.clone(),
    }
}

/// The health check a record set's routing policy uses, by name.
fn check_name_of(set: &Value) -> Option<&str> {
    check_name(set["routingPolicy"]["healthCheck"].as_str())
}

fn check_name(url: Option<&str>) -> Option<&str> {
    url.and_then(|u| u.rsplit('/').next())
}

/// Host names are written fully qualified; TXT strings quoted.
fn encode_value(t: RecordType, v: &str) -> String {
    let dotted = |h: &str| {
        if h.ends_with('.') {
            h.to_string()
        } else {
            format!("{h}.")
        }
    };
    match t {
        RecordType::TXT => format!("\"{}\"", v.replace('"', "\\\"")),
        RecordType::CNAME | RecordType::NS => dotted(v),
        RecordType::MX | RecordType::SRV => match v.rsplit_once(' ') {
            Some((head, host)) => format!("{head} {}", dotted(host)),
            None => v.to_string(),
        },
        _ => v.to_string(),
    }
}

fn decode_value(t: RecordType, v: &str) -> String {
    match t {
        // Several strings of one record are one value.
        RecordType::TXT => {
            let mut out = String::new();
            let mut rest = v.trim();
            while let Some(start) = rest.strip_prefix('"') {
                let mut end = None;
                let mut escaped = false;
                for (i, c) in start.char_indices() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => {
                            end = Some(i);
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                let Some(end) = end else { break };
                out.push_str(&start[..end].replace("\\\"", "\""));
                rest = start[end + 1..].trim_start();
            }
            if out.is_empty() && !v.starts_with('"') {
                v.to_string()
            } else {
                out
            }
        }
        RecordType::CNAME | RecordType::NS | RecordType::MX | RecordType::SRV => {
            v.trim_end_matches('.').to_string()
        }
        _ => v.to_string(),
    }
}

/// The Cloud DNS record set for a cairn record; `check` is the health check's URL.
fn rrset_json(zone: &str, r: &RecordAttrs, check: Option<&str>) -> Result<Value, String> {
    let rtype = r.rtype;
    let enc = |values: &[String]| -> Vec<String> {
        values.iter().map(|v| encode_value(rtype, v)).collect()
    };
    // Health-checked answers are IP addresses Cloud DNS probes; the others are plain data.
    let targets = |values: &[String]| match check {
        Some(_) => json!({ "healthCheckedTargets": { "externalEndpoints": values } }),
        None => json!({ "rrdatas": enc(values) }),
    };
    let mut set = json!({ "name": fqdn(zone, &r.name), "type": rtype.to_string(), "ttl": r.ttl });
    let policy = match &r.routing {
        Routing::Simple { values } => {
            if check.is_some() {
                return Err("Cloud DNS health-checks routed records only".into());
            }
            set["rrdatas"] = json!(enc(values));
            return Ok(set);
        }
        Routing::Weighted { members } => json!({ "wrr": { "items": members.iter().map(|m| {
            let mut item = targets(&m.values);
            item["weight"] = json!(f64::from(m.weight.unwrap_or(0)));
            item
        }).collect::<Vec<_>>() } }),
        Routing::Geolocation { members } => json!({ "geo": { "items": members.iter().map(|m| {
            let mut item = targets(&m.values);
            item["location"] = json!(m.location.as_deref().unwrap_or_default());
            item
        }).collect::<Vec<_>>() } }),
        Routing::Failover { primary, secondary } => {
            if check.is_none() {
                return Err(
                    "Cloud DNS failover routing (primaryBackup) health-checks its primary: \
                     declare a health_check"
                        .into(),
                );
            }
            json!({ "primaryBackup": {
                "primaryTargets": { "externalEndpoints": primary.values },
                "backupGeoTargets": { "items": [
                    { "location": BACKUP_LOCATION, "rrdatas": enc(&secondary.values) }
                ] },
            } })
        }
        Routing::Latency { .. } | Routing::Multivalue { .. } => {
            return Err(format!("Cloud DNS has no {} routing", r.routing.policy()));
        }
    };
    set["routingPolicy"] = policy;
    if let Some(url) = check {
        set["routingPolicy"]["healthCheck"] = json!(url);
    }
    Ok(set)
}

/// A record set as cairn's attributes; `None` for SOA, the apex NS and types cairn does not
/// manage. Member IDs are not kept by Cloud DNS: they read back empty (the plan takes them
/// from the declaration, see `with_declared`).
fn record_from(
    zone: &str,
    set: &Value,
    checks: &HashMap<String, Option<HealthCheck>>,
) -> Option<RecordAttrs> {
    let name = relative(zone, set["name"].as_str()?)?;
    let rtype = parse_type(set["type"].as_str()?)?;
    if name == "@" && rtype == RecordType::NS {
        return None;
    }
    let decode = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| decode_value(rtype, s))
            .collect()
    };
    let targets = |item: &Value| {
        let mut v = decode(&item["rrdatas"]);
        v.extend(decode(&item["healthCheckedTargets"]["externalEndpoints"]));
        v
    };
    let member = |values: Vec<String>, weight: Option<u32>, location: Option<String>| Member {
        id: String::new(),
        values,
        weight,
        location,
    };
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    let policy = &set["routingPolicy"];
    let routing = if policy.is_null() {
        Routing::Simple {
            values: decode(&set["rrdatas"]),
        }
    } else if policy["wrr"].is_object() {
        Routing::Weighted {
            members: items(&policy["wrr"])
                .iter()
                .map(|i| {
                    let w = i["weight"].as_f64().unwrap_or(0.0).round().max(0.0) as u32;
                    member(targets(i), Some(w), None)
                })
                .collect(),
        }
    } else if policy["geo"].is_object() {
        Routing::Geolocation {
            members: items(&policy["geo"])
                .iter()
                .map(|i| member(targets(i), None, i["location"].as_str().map(str::to_string)))
                .collect(),
        }
    } else if policy["primaryBackup"].is_object() {
        let pb = &policy["primaryBackup"];
        Routing::Failover {
            primary: member(
                decode(&pb["primaryTargets"]["externalEndpoints"]),
                None,
                None,
            ),
            secondary: member(
                items(&pb["backupGeoTargets"])
                    .iter()
                    .flat_map(targets)
                    .collect(),
                None,
                None,
            ),
        }
    } else {
        return None;
    };
    let health_check = check_name_of(set).and_then(|c| checks.get(c).cloned().flatten());
    Some(RecordAttrs {
        zone: zone.to_string(),
        name,
        rtype,
        ttl: set["ttl"].as_u64().unwrap_or(300) as u32,
        routing: routing.normalized(),
        health_check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(routing: Routing, check: bool) -> RecordAttrs {
        RecordAttrs {
            zone: "example.com".into(),
            name: "api".into(),
            rtype: RecordType::A,
            ttl: 30,
            routing: routing.normalized(),
            health_check: check.then(|| HealthCheck {
                protocol: "http".into(),
                port: 8080,
                path: Some("/healthz".into()),
                interval_secs: 10,
                timeout_secs: 2,
                failures: 2,
                recoveries: 3,
            }),
        }
    }

    fn m(id: &str, ip: &str, weight: Option<u32>, location: Option<&str>) -> Member {
        Member {
            id: id.into(),
            values: vec![ip.into()],
            weight,
            location: location.map(str::to_string),
        }
    }

    /// Written, read back and filled from the declaration: equal to what was declared.
    #[test]
    fn routed_records_round_trip_through_their_record_sets() {
        let url = "https://www.googleapis.com/compute/v1/projects/p/global/healthChecks/cairn-x";
        let routings = [
            Routing::Failover {
                primary: m("api@aws/eu-west-1", "192.0.2.1", None, None),
                secondary: m("api@gcp/europe-west1", "198.51.100.1", None, None),
            },
            Routing::Weighted {
                members: vec![
                    m("b", "192.0.2.2", Some(20), None),
                    m("a", "192.0.2.1", Some(80), None),
                ],
            },
            Routing::Geolocation {
                members: vec![
                    m("eu", "192.0.2.1", None, Some("europe-west1")),
                    m("us", "192.0.2.2", None, Some("us-east1")),
                ],
            },
        ];
        for routing in routings {
            let declared = record(routing, true);
            let set = rrset_json("example.com", &declared, Some(url)).unwrap();
            let checks = HashMap::from([("cairn-x".to_string(), declared.health_check.clone())]);
            let read = record_from("example.com", &set, &checks).unwrap();
            assert_ne!(read, declared, "member IDs are not stored");
            let filled =
                super::super::with_declared(&Attrs::Record(read), &Attrs::Record(declared.clone()));
            assert_eq!(filled, Attrs::Record(declared));
        }
    }

    #[test]
    fn values_are_written_as_cloud_dns_wants_them_and_read_back_as_declared() {
        let cases = [
            (
                RecordType::TXT,
                "v=spf1 \"x\" -all",
                "\"v=spf1 \\\"x\\\" -all\"",
            ),
            (RecordType::CNAME, "www.example.com", "www.example.com."),
            (
                RecordType::MX,
                "10 mail.example.com",
                "10 mail.example.com.",
            ),
            (RecordType::A, "192.0.2.1", "192.0.2.1"),
        ];
        for (t, v, wire) in cases {
            assert_eq!(encode_value(t, v), wire);
            assert_eq!(decode_value(t, wire), v);
        }
        assert_eq!(decode_value(RecordType::TXT, "\"a\" \"b\""), "ab");
        assert_eq!(managed_zone_name("shop.example.com"), "shop-example-com");
        assert_eq!(managed_zone_name("1.example.com"), "z-1-example-com");
    }

    #[test]
    fn changes_are_packed_within_the_quota() {
        let plan = |i: usize| {
            (
                i,
                RecordPlan {
                    key: ("z".into(), format!("r{i}"), RecordType::A),
                    deletion: i
                        .is_multiple_of(2)
                        .then(|| json!({ "rrdatas": ["192.0.2.1"] })),
                    addition: Some(json!({ "rrdatas": ["192.0.2.2"] })),
                    live: None,
                    create_only: false,
                    old_check: None,
                },
            )
        };
        let quota = ChangeQuota {
            additions: 3,
            deletions: 1,
            rrdata_bytes: 10_000,
        };
        let sizes: Vec<usize> = pack((0..6).map(plan).collect(), quota)
            .iter()
            .map(Vec::len)
            .collect();
        // Deletions (every other record) bind first: one per change.
        assert_eq!(sizes, [2, 2, 2]);
    }
}
