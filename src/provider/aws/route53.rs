//! Route53: hosted zones, record sets and health checks.
//!
//! A cairn record (zone, name, type) is one record set for simple routing, or one record set
//! per member (SetIdentifier) for weighted, failover, latency, geolocation and multivalue
//! routing. Health checks are Route53 health checks, one per member, tagged with the cairn
//! address and the declared spec so they read back exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{
    Change as R53Change, ChangeAction, ChangeBatch, ChangeStatus, GeoLocation, HealthCheckConfig,
    HealthCheckType, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover,
    ResourceRecordSetRegion, RrType, Tag, TagResourceType,
};

use super::{ADDRESS_TAG, Aws, AwsError, Failure, OWNER_TAG};
use crate::model::{
    Address, Attrs, Cloud, HealthCheck, Member, ProviderKind, ProviderRef, RecordAttrs, RecordType,
    Routing, ZoneAttrs,
};
use crate::provider::{Change, ChangeOp, ChangeResult, LiveResource, Scope, digest};

const MEMBER_TAG: &str = "cairn:member";
const SPEC_TAG: &str = "cairn:spec";
/// Route53 limits per ChangeResourceRecordSets request (UPSERT counts twice in both).
pub(super) const MAX_ELEMENTS: usize = 1000;
const MAX_CHARS: usize = 32_000;
const PAGE: i32 = 300;

const AWS: ProviderRef = ProviderRef {
    kind: ProviderKind::Aws,
    cloud: Cloud::Aws,
};

/// What the last refresh (and later changes) showed, kept for exact DELETEs.
#[derive(Default)]
pub(super) struct Seen {
    /// Zone name → hosted zone ID (without the `/hostedzone/` prefix).
    zones: HashMap<String, String>,
    /// (zone, name, type) → its record sets.
    rrsets: HashMap<(String, String, RecordType), Vec<ResourceRecordSet>>,
    health_checks: HashMap<String, SeenCheck>,
}

#[derive(Clone)]
struct SeenCheck {
    config: HealthCheckConfig,
    tags: HashMap<String, String>,
}

type RecordKey = (String, String, RecordType);

impl Aws {
    pub(super) async fn refresh_route53(
        &self,
        scope: &Scope,
    ) -> Result<Vec<LiveResource>, AwsError> {
        let wanted: HashSet<&str> = scope
            .zones
            .iter()
            .filter(|(c, _)| *c == Cloud::Aws)
            .map(|(_, z)| z.as_str())
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let all_zones = self.list_zones().await?;
        let present: Vec<(String, String)> = all_zones
            .into_iter()
            .filter(|(name, _)| wanted.contains(name.as_str()))
            .collect();
        let zone_tags = self
            .tags(
                TagResourceType::Hostedzone,
                present.iter().map(|(_, id)| id.clone()).collect(),
            )
            .await?;
        let checks = self.list_health_checks().await?;

        let mut live = Vec::new();
        let mut seen = Seen {
            health_checks: checks,
            ..Seen::default()
        };
        for (zone, id) in &present {
            live.push(LiveResource {
                provider: AWS,
                id: id.clone(),
                attrs: Attrs::Zone(ZoneAttrs { name: zone.clone() }),
                owner: zone_tags.get(id).and_then(|t| t.get(OWNER_TAG)).cloned(),
                adoptable: zone_tags.get(id).is_none_or(|t| !t.contains_key(OWNER_TAG)),
            });
            seen.zones.insert(zone.clone(), id.clone());
            let sets = self.list_record_sets(id).await?;
            for ((name, rtype), sets) in group_sets(zone, sets) {
                if let Some(attrs) = record_attrs(zone, &name, rtype, &sets, &seen.health_checks) {
                    live.push(LiveResource {
                        provider: AWS,
                        id: record_id(id, &name, rtype),
                        attrs: Attrs::Record(attrs),
                        owner: None,
                        adoptable: false,
                    });
                }
                seen.rrsets.insert((zone.clone(), name, rtype), sets);
            }
        }
        *self.seen.lock().expect("seen") = seen;
        Ok(live)
    }

    async fn list_zones(&self) -> Result<Vec<(String, String)>, AwsError> {
        let mut zones = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call(true, || {
                    self.route53
                        .list_hosted_zones()
                        .set_marker(marker.clone())
                        .max_items(100)
                        .send()
                })
                .await?;
            zones.extend(
                out.hosted_zones()
                    .iter()
                    .map(|z| (z.name().trim_end_matches('.').to_string(), zone_id(z.id()))),
            );
            match out.next_marker().filter(|_| out.is_truncated()) {
                Some(m) => marker = Some(m.to_string()),
                None => return Ok(zones),
            }
        }
    }

    async fn list_record_sets(&self, zone_id: &str) -> Result<Vec<ResourceRecordSet>, AwsError> {
        let mut sets = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let out = self
                .call(true, || {
                    let mut req = self
                        .route53
                        .list_resource_record_sets()
                        .hosted_zone_id(zone_id)
                        .max_items(PAGE);
                    if let Some((name, rtype, ident)) = &next {
                        req = req
                            .start_record_name(name)
                            .start_record_type(rtype.clone())
                            .set_start_record_identifier(ident.clone());
                    }
                    req.send()
                })
                .await?;
            sets.extend(out.resource_record_sets().iter().cloned());
            if !out.is_truncated() {
                return Ok(sets);
            }
            match (out.next_record_name(), out.next_record_type()) {
                (Some(n), Some(t)) => {
                    next = Some((
                        n.to_string(),
                        t.clone(),
                        out.next_record_identifier().map(str::to_string),
                    ))
                }
                _ => return Ok(sets),
            }
        }
    }

    async fn list_health_checks(&self) -> Result<HashMap<String, SeenCheck>, AwsError> {
        let mut configs = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .call(true, || {
                    self.route53
                        .list_health_checks()
                        .set_marker(marker.clone())
                        .max_items(1000)
                        .send()
                })
                .await?;
            configs.extend(
                out.health_checks()
                    .iter()
                    .filter_map(|h| Some((h.id().to_string(), h.health_check_config()?.clone()))),
            );
            match out.next_marker().filter(|_| out.is_truncated()) {
                Some(m) => marker = Some(m.to_string()),
                None => break,
            }
        }
        let mut tags = self
            .tags(
                TagResourceType::Healthcheck,
                configs.iter().map(|(id, _)| id.clone()).collect(),
            )
            .await?;
        Ok(configs
            .into_iter()
            .map(|(id, config)| {
                let t = tags.remove(&id).unwrap_or_default();
                (id, SeenCheck { config, tags: t })
            })
            .collect())
    }

    /// Tags of many resources, ten per call (the API's limit).
    async fn tags(
        &self,
        kind: TagResourceType,
        ids: Vec<String>,
    ) -> Result<HashMap<String, HashMap<String, String>>, AwsError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(10) {
            let res = self
                .call(true, || {
                    self.route53
                        .list_tags_for_resources()
                        .resource_type(kind.clone())
                        .set_resource_ids(Some(chunk.to_vec()))
                        .send()
                })
                .await?;
            for set in res.resource_tag_sets() {
                let tags = set
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect();
                out.insert(set.resource_id().unwrap_or_default().to_string(), tags);
            }
        }
        Ok(out)
    }

    async fn set_tags(
        &self,
        kind: TagResourceType,
        id: &str,
        add: Vec<(&str, String)>,
        remove: Vec<&str>,
    ) -> Result<(), AwsError> {
        let add: Vec<Tag> = add
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let remove: Vec<String> = remove.into_iter().map(str::to_string).collect();
        self.call(true, || {
            self.route53
                .change_tags_for_resource()
                .resource_type(kind.clone())
                .resource_id(id)
                .set_add_tags((!add.is_empty()).then(|| add.clone()))
                .set_remove_tag_keys((!remove.is_empty()).then(|| remove.clone()))
                .send()
        })
        .await
        .map(|_| ())
    }

    pub(super) async fn apply_zone(&self, change: &Change, owner: &str) -> ChangeResult {
        let zone_live = |name: String, id: String, owner: Option<String>| LiveResource {
            provider: AWS,
            id,
            attrs: Attrs::Zone(ZoneAttrs { name }),
            owner,
            adoptable: false,
        };
        match (&change.op, change.op.attrs()) {
            (_, Some(Attrs::Zone(z))) => {
                let id = self
                    .ensure_zone(&z.name, owner)
                    .await
                    .map_err(|e| e.to_string())?;
                self.seen
                    .lock()
                    .expect("seen")
                    .zones
                    .insert(z.name.clone(), id.clone());
                Ok(Some(zone_live(z.name.clone(), id, Some(owner.to_string()))))
            }
            (ChangeOp::Delete { id }, _) => match self
                .call(false, || self.route53.delete_hosted_zone().id(id).send())
                .await
            {
                Ok(_) => Ok(None),
                Err(e) if e.code == "NoSuchHostedZone" => Ok(None),
                Err(e) if e.failure == Failure::Ambiguous => {
                    let gone = self
                        .list_zones()
                        .await
                        .map_err(|e| e.to_string())?
                        .iter()
                        .all(|(_, zid)| zid != id);
                    if gone { Ok(None) } else { Err(e.to_string()) }
                }
                Err(e) => Err(e.to_string()),
            },
            (ChangeOp::Adopt { id }, _) => {
                self.set_tags(
                    TagResourceType::Hostedzone,
                    id,
                    vec![(OWNER_TAG, owner.to_string())],
                    vec![],
                )
                .await
                .map_err(|e| e.to_string())?;
                let name = change.address.name.clone();
                Ok(Some(zone_live(name, id.clone(), Some(owner.to_string()))))
            }
            (ChangeOp::Release { id }, _) => {
                self.set_tags(TagResourceType::Hostedzone, id, vec![], vec![OWNER_TAG])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(None)
            }
            _ => Err(format!("{}: not a zone change", change.address)),
        }
    }

    /// Finds the hosted zone by name (adopting it unless another stack owns it) or creates
    /// it; tags it with the owner. A deterministic caller reference makes creation idempotent.
    async fn ensure_zone(&self, name: &str, owner: &str) -> Result<String, AwsError> {
        let existing = self.find_zone(name).await?;
        let id = match existing {
            Some(id) => {
                let tags = self
                    .tags(TagResourceType::Hostedzone, vec![id.clone()])
                    .await?;
                if let Some(other) = tags
                    .get(&id)
                    .and_then(|t| t.get(OWNER_TAG))
                    .filter(|o| *o != owner)
                {
                    return Err(AwsError {
                        failure: Failure::Permanent,
                        code: "NotOwned".into(),
                        message: format!(
                            "hosted zone {name} is managed by another stack (owner {other})"
                        ),
                    });
                }
                id
            }
            None => {
                let reference = digest(&[owner, name]);
                match self
                    .call(false, || {
                        self.route53
                            .create_hosted_zone()
                            .name(name)
                            .caller_reference(&reference)
                            .send()
                    })
                    .await
                {
                    Ok(out) => out
                        .hosted_zone()
                        .map(|z| zone_id(z.id()))
                        .unwrap_or_default(),
                    // Created by an earlier attempt whose answer was lost: find it.
                    Err(e)
                        if e.failure == Failure::Ambiguous
                            || e.code == "HostedZoneAlreadyExists" =>
                    {
                        self.find_zone(name).await?.ok_or(e)?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.set_tags(
            TagResourceType::Hostedzone,
            &id,
            vec![(OWNER_TAG, owner.to_string())],
            vec![],
        )
        .await?;
        Ok(id)
    }

    async fn find_zone(&self, name: &str) -> Result<Option<String>, AwsError> {
        let fqdn = format!("{name}.");
        let out = self
            .call(true, || {
                self.route53
                    .list_hosted_zones_by_name()
                    .dns_name(&fqdn)
                    .max_items(1)
                    .send()
            })
            .await?;
        Ok(out
            .hosted_zones()
            .iter()
            .find(|z| z.name() == fqdn)
            .map(|z| zone_id(z.id())))
    }

    pub(super) async fn apply_records(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult> {
        let zone = changes[0]
            .address
            .name
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let lock = self.zone_lock(&zone);
        let _one_batch_per_zone = lock.lock().await;
        let zone_id = match self.zone_id(&zone).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return changes
                    .iter()
                    .map(|_| Err(format!("NoSuchHostedZone: {zone} does not exist")))
                    .collect();
            }
            Err(e) => return changes.iter().map(|_| Err(e.to_string())).collect(),
        };
        // Work out each change's record set changes; health checks first, as sets refer to them.
        let mut results: Vec<Option<ChangeResult>> = vec![None; changes.len()];
        let mut plans: Vec<(usize, RecordPlan)> = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            match self.plan_record(&zone, c, owner).await {
                Ok(p) if p.changes.is_empty() => results[i] = Some(Ok(p.live.clone())),
                Ok(p) => plans.push((i, p)),
                Err(e) => results[i] = Some(Err(e.to_string())),
            }
        }
        // Pack whole cairn changes into requests within Route53's limits.
        let mut chunk: Vec<(usize, RecordPlan)> = Vec::new();
        let (mut elements, mut chars) = (0, 0);
        let mut chunks = Vec::new();
        for (i, p) in plans {
            let (e, c) = p.size();
            if !chunk.is_empty() && (elements + e > self.max_elements || chars + c > MAX_CHARS) {
                chunks.push(std::mem::take(&mut chunk));
                (elements, chars) = (0, 0);
            }
            elements += e;
            chars += c;
            chunk.push((i, p));
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for chunk in chunks {
            match self.submit(&zone, &zone_id, &chunk).await {
                Ok(()) => self.settle(&chunk, &mut results, owner).await,
                // One bad change fails an atomic batch: apply the rest one by one.
                Err(e) if e.failure == Failure::Permanent && chunk.len() > 1 => {
                    for one in chunk {
                        let single = vec![one];
                        match self.submit(&zone, &zone_id, &single).await {
                            Ok(()) => self.settle(&single, &mut results, owner).await,
                            Err(e) => results[single[0].0] = Some(Err(e.to_string())),
                        }
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

    async fn zone_id(&self, zone: &str) -> Result<Option<String>, AwsError> {
        if let Some(id) = self.seen.lock().expect("seen").zones.get(zone) {
            return Ok(Some(id.clone()));
        }
        let id = self.find_zone(zone).await?;
        if let Some(id) = &id {
            self.seen
                .lock()
                .expect("seen")
                .zones
                .insert(zone.to_string(), id.clone());
        }
        Ok(id)
    }

    /// The record set changes for one cairn change, creating the health checks it needs.
    async fn plan_record(
        &self,
        zone: &str,
        change: &Change,
        owner: &str,
    ) -> Result<RecordPlan, AwsError> {
        let key_of = |a: &Address| -> Option<RecordKey> {
            let mut parts = a.name.rsplitn(2, '/');
            let rtype = parse_type(parts.next()?)?;
            let rest = parts.next()?;
            let (z, n) = rest.split_once('/')?;
            Some((z.to_string(), n.to_string(), rtype))
        };
        let key = key_of(&change.address)
            .ok_or_else(|| permanent(format!("bad record address {}", change.address)))?;
        let old: Vec<ResourceRecordSet> = self
            .seen
            .lock()
            .expect("seen")
            .rrsets
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let (attrs, create_only) = match &change.op {
            ChangeOp::Create {
                attrs: Attrs::Record(r),
            } => (Some(r), true),
            ChangeOp::Update {
                attrs: Attrs::Record(r),
                ..
            }
            | ChangeOp::Replace {
                attrs: Attrs::Record(r),
                ..
            } => (Some(r), false),
            ChangeOp::Delete { .. } => (None, false),
            // Records carry no ownership marker (record sets have no tags): nothing to do.
            ChangeOp::Adopt { id } | ChangeOp::Release { id } => {
                // The record's health checks follow it: tagged when adopted, untagged when
                // released, so later changes replace or keep them as cairn's own or not.
                for set in &old {
                    let Some(check) = set.health_check_id() else {
                        continue;
                    };
                    if matches!(change.op, ChangeOp::Adopt { .. }) {
                        let member = set.set_identifier().unwrap_or_default().to_string();
                        let tags = vec![
                            (OWNER_TAG, owner.to_string()),
                            (ADDRESS_TAG, change.address.to_string()),
                            (MEMBER_TAG, member),
                        ];
                        self.set_tags(TagResourceType::Healthcheck, check, tags, vec![])
                            .await?;
                    } else {
                        self.set_tags(
                            TagResourceType::Healthcheck,
                            check,
                            vec![],
                            vec![OWNER_TAG, ADDRESS_TAG, MEMBER_TAG, SPEC_TAG],
                        )
                        .await?;
                    }
                }
                let live = self.seen_record(zone, &key, id);
                return Ok(RecordPlan {
                    key,
                    changes: Vec::new(),
                    new: Vec::new(),
                    live,
                    old_checks: Vec::new(),
                });
            }
            _ => {
                return Err(permanent(format!(
                    "{}: not a record change",
                    change.address
                )));
            }
        };
        let Some(attrs) = attrs else {
            let changes = old
                .iter()
                .map(|s| (ChangeAction::Delete, s.clone()))
                .collect();
            return Ok(RecordPlan {
                old_checks: checks_of(&old),
                key,
                changes,
                new: Vec::new(),
                live: None,
            });
        };
        let checks = self
            .ensure_health_checks(&change.address, attrs, owner)
            .await?;
        let new = record_sets(zone, attrs, &checks).map_err(permanent)?;
        let mut changes = Vec::new();
        if create_only {
            changes.extend(new.iter().map(|s| (ChangeAction::Create, s.clone())));
        } else {
            let old_by: HashMap<Option<&str>, &ResourceRecordSet> =
                old.iter().map(|s| (s.set_identifier(), s)).collect();
            let new_ids: HashSet<Option<&str>> = new.iter().map(|s| s.set_identifier()).collect();
            for s in &old {
                if !new_ids.contains(&s.set_identifier()) {
                    changes.push((ChangeAction::Delete, s.clone()));
                }
            }
            for s in &new {
                match old_by.get(&s.set_identifier()) {
                    Some(o) if *o == s => {}
                    Some(_) => changes.push((ChangeAction::Upsert, s.clone())),
                    None => changes.push((ChangeAction::Create, s.clone())),
                }
            }
        }
        let new_checks: HashSet<String> = checks.values().cloned().collect();
        let old_checks = checks_of(&old)
            .into_iter()
            .filter(|c| !new_checks.contains(c))
            .collect();
        let id = self
            .seen
            .lock()
            .expect("seen")
            .zones
            .get(zone)
            .cloned()
            .unwrap_or_default();
        let live = Some(LiveResource {
            provider: AWS,
            id: record_id(&id, &key.1, key.2),
            attrs: Attrs::Record(attrs.clone()),
            owner: None,
            adoptable: false,
        });
        Ok(RecordPlan {
            key,
            changes,
            new,
            live,
            old_checks,
        })
    }

    fn seen_record(&self, zone: &str, key: &RecordKey, id: &str) -> Option<LiveResource> {
        let seen = self.seen.lock().expect("seen");
        let sets = seen.rrsets.get(key)?;
        let attrs = record_attrs(zone, &key.1, key.2, sets, &seen.health_checks)?;
        Some(LiveResource {
            provider: AWS,
            id: id.to_string(),
            attrs: Attrs::Record(attrs),
            owner: None,
            adoptable: false,
        })
    }

    /// Health checks for each member of a record that declares one: reused when one with the
    /// same spec exists, created otherwise (idempotently: the caller reference is derived
    /// from what it checks). Returns member ID → health check ID.
    async fn ensure_health_checks(
        &self,
        address: &Address,
        attrs: &RecordAttrs,
        owner: &str,
    ) -> Result<HashMap<String, String>, AwsError> {
        let mut out = HashMap::new();
        let Some(spec) = &attrs.health_check else {
            return Ok(out);
        };
        let spec_json = serde_json::to_string(spec).expect("specs serialize");
        for m in members(&attrs.routing) {
            let target = m.values.first().cloned().unwrap_or_default();
            let existing = {
                let seen = self.seen.lock().expect("seen");
                seen.health_checks
                    .iter()
                    .find(|(_, c)| {
                        c.tags.get(ADDRESS_TAG).map(String::as_str) == Some(&address.to_string())
                            && c.tags.get(MEMBER_TAG) == Some(&m.id)
                            && c.tags.get(SPEC_TAG) == Some(&spec_json)
                            && check_target(&c.config) == target
                    })
                    .map(|(id, _)| id.clone())
            };
            let id = match existing {
                Some(id) => id,
                None => {
                    let config = check_config(spec, &target);
                    let reference =
                        digest(&[owner, &address.to_string(), &m.id, &target, &spec_json]);
                    let out = self
                        .call(true, || {
                            self.route53
                                .create_health_check()
                                .caller_reference(&reference)
                                .health_check_config(config.clone())
                                .send()
                        })
                        .await?;
                    let id = out
                        .health_check()
                        .map(|h| h.id().to_string())
                        .unwrap_or_default();
                    let tags = vec![
                        (OWNER_TAG, owner.to_string()),
                        (ADDRESS_TAG, address.to_string()),
                        (MEMBER_TAG, m.id.clone()),
                        (SPEC_TAG, spec_json.clone()),
                    ];
                    self.set_tags(TagResourceType::Healthcheck, &id, tags.clone(), vec![])
                        .await?;
                    let check = SeenCheck {
                        config,
                        tags: tags.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    };
                    self.seen
                        .lock()
                        .expect("seen")
                        .health_checks
                        .insert(id.clone(), check);
                    id
                }
            };
            out.insert(m.id.clone(), id);
        }
        Ok(out)
    }

    /// Sends one atomic batch. When its outcome is unknown, reads the zone back: applied, it
    /// is done; untouched, it is sent again; anything else is reported.
    async fn submit(
        &self,
        zone: &str,
        zone_id: &str,
        chunk: &[(usize, RecordPlan)],
    ) -> Result<(), AwsError> {
        let batch: Vec<R53Change> = chunk
            .iter()
            .flat_map(|(_, p)| p.changes.iter())
            .map(|(action, set)| {
                R53Change::builder()
                    .action(action.clone())
                    .resource_record_set(set.clone())
                    .build()
                    .expect("action and set given")
            })
            .collect();
        let batch = ChangeBatch::builder()
            .set_changes(Some(batch))
            .build()
            .expect("changes given");
        for _attempt in 0..6 {
            let result = self
                .call(false, || {
                    self.route53
                        .change_resource_record_sets()
                        .hosted_zone_id(zone_id)
                        .change_batch(batch.clone())
                        .send()
                })
                .await;
            match result {
                Ok(out) => {
                    if let Some(info) = out.change_info() {
                        self.wait_insync(info.id()).await?;
                    }
                    return Ok(());
                }
                Err(e) if e.failure == Failure::Ambiguous => {
                    match self.batch_outcome(zone_id, chunk).await? {
                        Outcome::Applied => return Ok(()),
                        Outcome::NotApplied => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        Outcome::Neither => {
                            return Err(AwsError {
                                failure: Failure::Permanent,
                                code: "Conflict".into(),
                                message: format!(
                                    "zone {zone} changed while a batch was in flight; run plan again"
                                ),
                            });
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(AwsError {
            failure: Failure::Ambiguous,
            code: String::new(),
            message: "the batch's outcome stayed unknown after 6 attempts".into(),
        })
    }

    async fn batch_outcome(
        &self,
        zone_id: &str,
        chunk: &[(usize, RecordPlan)],
    ) -> Result<Outcome, AwsError> {
        let sets = self.list_record_sets(zone_id).await?;
        let now: HashMap<(String, RrType, Option<String>), ResourceRecordSet> = sets
            .into_iter()
            .map(|s| {
                (
                    (
                        s.name().to_string(),
                        s.r#type().clone(),
                        s.set_identifier().map(str::to_string),
                    ),
                    s,
                )
            })
            .collect();
        let key = |s: &ResourceRecordSet| {
            (
                s.name().to_string(),
                s.r#type().clone(),
                s.set_identifier().map(str::to_string),
            )
        };
        let (mut after, mut before) = (true, true);
        for (_, p) in chunk {
            for (action, set) in &p.changes {
                let current = now.get(&key(set));
                match action {
                    ChangeAction::Delete => {
                        after &= current.is_none();
                        before &= current == Some(set);
                    }
                    ChangeAction::Create => {
                        after &= current == Some(set);
                        before &= current.is_none();
                    }
                    _ => {
                        after &= current == Some(set);
                        before &= current.is_some_and(|c| c != set);
                    }
                }
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

    async fn wait_insync(&self, change_id: &str) -> Result<(), AwsError> {
        let start = Instant::now();
        loop {
            let out = self
                .call(true, || self.route53.get_change().id(change_id).send())
                .await?;
            if out
                .change_info()
                .is_some_and(|c| *c.status() == ChangeStatus::Insync)
            {
                return Ok(());
            }
            if start.elapsed() >= self.insync_timeout {
                return Err(AwsError {
                    failure: Failure::Permanent,
                    code: "Timeout".into(),
                    message: format!(
                        "change {change_id} not INSYNC after {}",
                        humantime::format_duration(self.insync_timeout)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// After a batch: remember the new record sets, drop health checks no longer used.
    async fn settle(
        &self,
        chunk: &[(usize, RecordPlan)],
        results: &mut [Option<ChangeResult>],
        owner: &str,
    ) {
        for (i, p) in chunk {
            {
                let mut seen = self.seen.lock().expect("seen");
                if p.new.is_empty() {
                    seen.rrsets.remove(&p.key);
                } else {
                    seen.rrsets.insert(p.key.clone(), p.new.clone());
                }
            }
            for check in &p.old_checks {
                let ours = {
                    let seen = self.seen.lock().expect("seen");
                    seen.health_checks
                        .get(check)
                        .is_some_and(|c| c.tags.get(OWNER_TAG).map(String::as_str) == Some(owner))
                };
                // Best effort: a check left behind is tagged with its owner and address.
                if ours
                    && self
                        .call(true, || {
                            self.route53
                                .delete_health_check()
                                .health_check_id(check)
                                .send()
                        })
                        .await
                        .is_ok()
                {
                    self.seen.lock().expect("seen").health_checks.remove(check);
                }
            }
            results[*i] = Some(Ok(p.live.clone()));
        }
    }
}

enum Outcome {
    Applied,
    NotApplied,
    Neither,
}

struct RecordPlan {
    key: RecordKey,
    changes: Vec<(ChangeAction, ResourceRecordSet)>,
    /// The record sets after the change.
    new: Vec<ResourceRecordSet>,
    live: Option<LiveResource>,
    /// Health checks the old record sets used and the new ones do not.
    old_checks: Vec<String>,
}

impl RecordPlan {
    /// (ResourceRecord elements, characters of values), UPSERT counted twice.
    fn size(&self) -> (usize, usize) {
        self.changes.iter().fold((0, 0), |(e, c), (action, set)| {
            let n = set.resource_records().len().max(1);
            let chars: usize = set.resource_records().iter().map(|r| r.value().len()).sum();
            let k = if *action == ChangeAction::Upsert {
                2
            } else {
                1
            };
            (e + n * k, c + chars * k)
        })
    }
}

fn permanent(message: String) -> AwsError {
    AwsError {
        failure: Failure::Permanent,
        code: String::new(),
        message,
    }
}

fn zone_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}

fn record_id(zone_id: &str, name: &str, rtype: RecordType) -> String {
    format!("{zone_id}/{name}/{rtype}")
}

fn rr_type(t: RecordType) -> RrType {
    RrType::from(t.to_string().as_str())
}

fn parse_type(s: &str) -> Option<RecordType> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

fn fqdn(zone: &str, name: &str) -> String {
    if name == "@" {
        format!("{zone}.")
    } else {
        format!("{name}.{zone}.")
    }
}

/// The name relative to the zone, `@` for the apex; Route53 escapes `*` as `\052`.
fn relative(zone: &str, fqdn: &str) -> Option<String> {
    let name = fqdn.trim_end_matches('.').replace("\\052", "*");
    if name.eq_ignore_ascii_case(zone) {
        return Some("@".into());
    }
    name.strip_suffix(&format!(".{zone}")).map(str::to_string)
}

fn encode_value(t: RecordType, v: &str) -> String {
    if t == RecordType::TXT {
        format!("\"{}\"", v.replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

fn decode_value(t: RecordType, v: &str) -> String {
    if t == RecordType::TXT && v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        v[1..v.len() - 1].replace("\\\"", "\"")
    } else {
        v.to_string()
    }
}

fn members(r: &Routing) -> Vec<&Member> {
    match r {
        Routing::Simple { .. } => Vec::new(),
        Routing::Failover { primary, secondary } => vec![primary, secondary],
        Routing::Weighted { members }
        | Routing::Latency { members }
        | Routing::Geolocation { members }
        | Routing::Multivalue { members } => members.iter().collect(),
    }
}

fn check_config(spec: &HealthCheck, target: &str) -> HealthCheckConfig {
    let kind = match spec.protocol.as_str() {
        "http" => HealthCheckType::Http,
        "https" => HealthCheckType::Https,
        _ => HealthCheckType::Tcp,
    };
    let mut b = HealthCheckConfig::builder()
        .r#type(kind)
        .port(i32::from(spec.port))
        // Route53 probes every 10 or 30 seconds.
        .request_interval(if spec.interval_secs < 30 { 10 } else { 30 })
        .failure_threshold(spec.failures as i32);
    b = if target.parse::<std::net::IpAddr>().is_ok() {
        b.ip_address(target)
    } else {
        b.fully_qualified_domain_name(target)
    };
    if spec.protocol != "tcp" {
        b = b.set_resource_path(spec.path.clone());
    }
    b.build().expect("type given")
}

fn check_target(c: &HealthCheckConfig) -> String {
    c.ip_address()
        .or(c.fully_qualified_domain_name())
        .unwrap_or_default()
        .to_string()
}

fn checks_of(sets: &[ResourceRecordSet]) -> Vec<String> {
    sets.iter()
        .filter_map(|s| s.health_check_id().map(str::to_string))
        .collect()
}

/// The record sets for a cairn record; `checks` maps member IDs to health check IDs.
fn record_sets(
    zone: &str,
    r: &RecordAttrs,
    checks: &HashMap<String, String>,
) -> Result<Vec<ResourceRecordSet>, String> {
    let base = |values: &[String]| {
        ResourceRecordSet::builder()
            .name(fqdn(zone, &r.name))
            .r#type(rr_type(r.rtype))
            .ttl(i64::from(r.ttl))
            .set_resource_records(Some(
                values
                    .iter()
                    .map(|v| {
                        ResourceRecord::builder()
                            .value(encode_value(r.rtype, v))
                            .build()
                            .expect("value given")
                    })
                    .collect(),
            ))
    };
    let member = |m: &Member| {
        base(&m.values)
            .set_identifier(&m.id)
            .set_health_check_id(checks.get(&m.id).cloned())
    };
    let sets = match &r.routing {
        Routing::Simple { values } => vec![base(values)],
        Routing::Failover { primary, secondary } => vec![
            member(primary).failover(ResourceRecordSetFailover::Primary),
            member(secondary).failover(ResourceRecordSetFailover::Secondary),
        ],
        Routing::Weighted { members } => members
            .iter()
            .map(|m| member(m).weight(i64::from(m.weight.unwrap_or(0))))
            .collect(),
        Routing::Latency { members } => members
            .iter()
            .map(|m| {
                member(m).region(ResourceRecordSetRegion::from(
                    m.location.as_deref().unwrap_or_default(),
                ))
            })
            .collect(),
        Routing::Geolocation { members } => members
            .iter()
            .map(|m| {
                let loc = m.location.as_deref().unwrap_or("*");
                let geo = match loc {
                    "*" => GeoLocation::builder().country_code("*"),
                    "AF" | "AN" | "AS" | "EU" | "OC" | "NA" | "SA" => {
                        GeoLocation::builder().continent_code(loc)
                    }
                    _ => GeoLocation::builder().country_code(loc),
                };
                member(m).geo_location(geo.build())
            })
            .collect(),
        Routing::Multivalue { members } => members
            .iter()
            .map(|m| member(m).multi_value_answer(true))
            .collect(),
    };
    sets.into_iter()
        .map(|b| b.build().map_err(|e| e.to_string()))
        .collect()
}

/// Groups a zone's record sets by (relative name, type), leaving out SOA and the apex NS.
fn group_sets(
    zone: &str,
    sets: Vec<ResourceRecordSet>,
) -> BTreeMap<(String, RecordType), Vec<ResourceRecordSet>> {
    let mut out: BTreeMap<(String, RecordType), Vec<ResourceRecordSet>> = BTreeMap::new();
    for s in sets {
        let Some(name) = relative(zone, s.name()) else {
            continue;
        };
        let Some(rtype) = parse_type(s.r#type().as_str()) else {
            continue;
        };
        if s.r#type() == &RrType::Soa || (name == "@" && rtype == RecordType::NS) {
            continue;
        }
        out.entry((name, rtype)).or_default().push(s);
    }
    out
}

/// Reads a cairn record back from its record sets.
fn record_attrs(
    zone: &str,
    name: &str,
    rtype: RecordType,
    sets: &[ResourceRecordSet],
    checks: &HashMap<String, SeenCheck>,
) -> Option<RecordAttrs> {
    let first = sets.first()?;
    let values = |s: &ResourceRecordSet| {
        s.resource_records()
            .iter()
            .map(|r| decode_value(rtype, r.value()))
            .collect::<Vec<_>>()
    };
    let member = |s: &ResourceRecordSet| Member {
        id: s.set_identifier().unwrap_or_default().to_string(),
        values: values(s),
        weight: s.weight().map(|w| w as u32),
        location: s.region().map(|r| r.as_str().to_string()).or_else(|| {
            s.geo_location().and_then(|g| {
                g.continent_code()
                    .or(g.country_code())
                    .or(g.subdivision_code())
                    .map(str::to_string)
            })
        }),
    };
    let routing = if first.set_identifier().is_none() {
        Routing::Simple {
            values: values(first),
        }
    } else if first.failover().is_some() {
        let pick = |f: ResourceRecordSetFailover| {
            sets.iter().find(|s| s.failover() == Some(&f)).map(member)
        };
        Routing::Failover {
            primary: pick(ResourceRecordSetFailover::Primary)?,
            secondary: pick(ResourceRecordSetFailover::Secondary)?,
        }
    } else if first.weight().is_some() {
        Routing::Weighted {
            members: sets.iter().map(member).collect(),
        }
    } else if first.region().is_some() {
        Routing::Latency {
            members: sets.iter().map(member).collect(),
        }
    } else if first.geo_location().is_some() {
        Routing::Geolocation {
            members: sets.iter().map(member).collect(),
        }
    } else {
        Routing::Multivalue {
            members: sets.iter().map(member).collect(),
        }
    };
    // The declared spec is kept in the health check's tags; without them, read the config.
    let address = crate::model::Address::record(zone, name, rtype).to_string();
    let health_check = sets
        .iter()
        .find_map(|s| s.health_check_id())
        .and_then(|id| checks.get(id))
        .map(|c| {
            c.tags
                .get(SPEC_TAG)
                .filter(|_| c.tags.get(ADDRESS_TAG) == Some(&address))
                .and_then(|spec| serde_json::from_str(spec).ok())
                .unwrap_or_else(|| spec_from_config(&c.config))
        });
    Some(RecordAttrs {
        zone: zone.to_string(),
        name: name.to_string(),
        rtype,
        ttl: first.ttl().unwrap_or(300) as u32,
        routing: routing.normalized(),
        health_check,
    })
}

fn spec_from_config(c: &HealthCheckConfig) -> HealthCheck {
    let protocol = match c.r#type() {
        HealthCheckType::Http => "http",
        HealthCheckType::Https => "https",
        _ => "tcp",
    };
    let interval = c.request_interval().unwrap_or(30) as u64;
    let failures = c.failure_threshold().unwrap_or(3) as u32;
    HealthCheck {
        protocol: protocol.into(),
        port: c
            .port()
            .unwrap_or(if protocol == "http" { 80 } else { 443 }) as u16,
        path: c.resource_path().map(str::to_string),
        interval_secs: interval,
        timeout_secs: interval.min(5),
        failures,
        recoveries: failures,
    }
}
