//! The sandbox: an embedded simulated multi-cloud (aws/azure/gcp namespaces) persisted under
//! `.cairn/sandbox/`, so plan and apply work with no account.
//!
//! It behaves like a cloud API: each call is atomic and durable, records need their zone,
//! a zone with records cannot be deleted, creating what exists fails. Other processes
//! (`cairn sandbox ...`) may change it between calls, which is how drift is simulated.
//!
//! Test knobs (environment): `CAIRN_SANDBOX_LATENCY_MS` delays every call;
//! `CAIRN_SANDBOX_FAIL` makes changes whose address contains that text fail;
//! `CAIRN_SANDBOX_BATCH` lowers the changes per batch (default 1000).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Change, ChangeOp, ChangeResult, LiveResource, Provider, Scope, address_of};
use crate::journal::{Journal, Journaled};
use crate::model::{Address, Attrs, Cloud, ProviderKind, ProviderRef, ResourceKind};

/// Records per page when listing, as Route53 does; refresh counts one call per page.
const PAGE: usize = 300;
/// Changes per batch, as Route53's ChangeResourceRecordSets allows.
const MAX_BATCH: usize = 1000;
/// Compact when the journal outgrows this many bytes.
const COMPACT_BYTES: u64 = 8 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SandboxCloud {
    /// Objects by sandbox ID.
    pub objects: BTreeMap<String, Object>,
    /// Deployments (`api@aws/us-east-1`) whose endpoint is marked down.
    #[serde(default)]
    pub endpoints_down: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub cloud: Cloud,
    pub attrs: Attrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SandboxOp {
    Put { id: String, object: Box<Object> },
    Delete { id: String },
    Endpoint { deployment: String, up: bool },
}

impl Journaled for SandboxCloud {
    type Op = SandboxOp;
    fn apply(&mut self, op: &SandboxOp) {
        match op {
            SandboxOp::Put { id, object } => {
                self.objects.insert(id.clone(), (**object).clone());
            }
            SandboxOp::Delete { id } => {
                self.objects.remove(id);
            }
            SandboxOp::Endpoint { deployment, up } => {
                if *up {
                    self.endpoints_down.remove(deployment);
                } else {
                    self.endpoints_down.insert(deployment.clone());
                }
            }
        }
    }
}

/// The sandbox ID of an object: `aws/record.shop.example.com/api/A`.
pub fn sandbox_id(cloud: Cloud, address: &Address) -> String {
    format!("{cloud}/{address}")
}

pub struct Sandbox {
    dir: PathBuf,
    /// Which clouds this sandbox serves (those without a real provider).
    clouds: BTreeSet<Cloud>,
    journal: Mutex<Journal<SandboxCloud>>,
    calls: AtomicU64,
    latency: Duration,
    fail: Option<String>,
    max_batch: usize,
}

impl Sandbox {
    pub fn open(dir: &Path, clouds: impl IntoIterator<Item = Cloud>) -> std::io::Result<Sandbox> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_file(dir)?;
        let journal = Journal::open(dir, "cloud", true);
        lock.unlock()?;
        let latency = std::env::var("CAIRN_SANDBOX_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_millis);
        Ok(Sandbox {
            dir: dir.to_path_buf(),
            clouds: clouds.into_iter().collect(),
            journal: Mutex::new(journal?),
            calls: AtomicU64::new(0),
            latency,
            fail: std::env::var("CAIRN_SANDBOX_FAIL")
                .ok()
                .filter(|s| !s.is_empty()),
            max_batch: std::env::var("CAIRN_SANDBOX_BATCH")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_BATCH)
                .clamp(1, MAX_BATCH),
        })
    }

    /// Runs one API call: exclusive across processes, sees their changes, durable on return.
    /// Whether a deployment's simulated endpoint answers (`cairn sandbox endpoint up|down`).
    /// Read directly, not counted as an API call: it stands for the endpoint, not the cloud.
    pub fn endpoint_up(&self, deployment: &str) -> std::io::Result<bool> {
        let lock = lock_file(&self.dir)?;
        let mut j = self.journal.lock().expect("sandbox journal poisoned");
        j.catch_up(true)?;
        let up = !j.value().endpoints_down.contains(deployment);
        drop(j);
        lock.unlock()?;
        Ok(up)
    }

    pub fn call<R>(
        &self,
        f: impl FnOnce(&SandboxCloud) -> (Vec<SandboxOp>, R),
    ) -> std::io::Result<R> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        let lock = lock_file(&self.dir)?;
        let mut j = self.journal.lock().expect("sandbox journal poisoned");
        j.catch_up(true)?;
        let (ops, result) = f(j.value());
        j.append(ops)?;
        if j.log_bytes > COMPACT_BYTES {
            j.compact()?;
        }
        drop(j);
        lock.unlock()?;
        Ok(result)
    }

    fn serves(&self, cloud: Cloud) -> bool {
        self.clouds.contains(&cloud)
    }

    fn live(&self, id: &str, o: &Object) -> LiveResource {
        LiveResource {
            provider: ProviderRef {
                kind: ProviderKind::Sandbox,
                cloud: o.cloud,
            },
            id: id.to_string(),
            attrs: o.attrs.clone(),
            owner: o.owner.clone(),
            adoptable: false,
        }
    }
}

fn lock_file(dir: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    f.lock()?;
    Ok(f)
}

#[async_trait::async_trait]
impl Provider for Sandbox {
    async fn refresh(&self, _scope: &Scope) -> Result<Vec<LiveResource>, String> {
        // The sandbox lists everything it holds for its clouds; a real provider lists the
        // zones and groups in scope.
        let (live, pages) = self
            .call(|cloud| {
                let mut per_zone: BTreeMap<(Cloud, &str), usize> = BTreeMap::new();
                let mut groups = 0usize;
                let live: Vec<LiveResource> = cloud
                    .objects
                    .iter()
                    .filter(|(_, o)| self.serves(o.cloud))
                    .map(|(id, o)| {
                        match &o.attrs {
                            Attrs::Record(r) => {
                                *per_zone.entry((o.cloud, r.zone.as_str())).or_default() += 1
                            }
                            Attrs::Zone(z) => {
                                per_zone.entry((o.cloud, z.name.as_str())).or_default();
                            }
                            Attrs::Group(_) => groups += 1,
                        }
                        self.live(id, o)
                    })
                    .collect();
                let pages: usize = per_zone
                    .values()
                    .map(|n| n.div_ceil(PAGE).max(1))
                    .sum::<usize>()
                    + groups.div_ceil(100);
                (Vec::new(), (live, pages))
            })
            .map_err(|e| format!("sandbox: {e}"))?;
        // One call was counted already; the listing took `pages` pages.
        self.calls
            .fetch_add(pages.saturating_sub(1) as u64, Ordering::Relaxed);
        Ok(live)
    }

    async fn apply(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult> {
        let result = self.call(|cloud| {
            // Changes in a batch apply in order; later ones see earlier ones.
            let mut view = View {
                base: cloud,
                changed: BTreeMap::new(),
            };
            let mut ops = Vec::new();
            let mut results = Vec::with_capacity(changes.len());
            for ch in changes {
                let effect = if self
                    .fail
                    .as_deref()
                    .is_some_and(|f| ch.address.to_string().contains(f))
                {
                    Err(format!("sandbox: injected failure for {}", ch.address))
                } else {
                    view.effect(ch, owner)
                };
                results.push(effect.map(|effect| match effect {
                    Effect::Put(id, object) => {
                        let live = self.live(&id, &object);
                        view.changed.insert(id.clone(), Some((*object).clone()));
                        ops.push(SandboxOp::Put { id, object });
                        Some(live)
                    }
                    Effect::Remove(id) => {
                        view.changed.insert(id.clone(), None);
                        ops.push(SandboxOp::Delete { id });
                        None
                    }
                    Effect::Nothing => None,
                }));
            }
            (ops, results)
        });
        result.unwrap_or_else(|e| {
            changes
                .iter()
                .map(|_| Err(format!("sandbox: {e}")))
                .collect()
        })
    }

    fn batch_key(&self, change: &Change) -> String {
        let attrs = change.op.attrs();
        match (change.address.kind, attrs) {
            (ResourceKind::Record, Some(Attrs::Record(r))) => {
                format!("{}/zone/{}", change.provider.cloud, r.zone)
            }
            (ResourceKind::Record, _) => {
                let zone = change.address.name.split('/').next().unwrap_or_default();
                format!("{}/zone/{zone}", change.provider.cloud)
            }
            _ => format!("{}/{}", change.provider.cloud, change.address.kind.as_str()),
        }
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The sandbox as a batch sees it: the stored cloud plus the batch's earlier changes.
struct View<'a> {
    base: &'a SandboxCloud,
    /// ID → the object after an earlier change of the batch, or `None` if it deleted it.
    changed: BTreeMap<String, Option<Object>>,
}

enum Effect {
    Put(String, Box<Object>),
    Remove(String),
    Nothing,
}

impl View<'_> {
    fn get(&self, id: &str) -> Option<&Object> {
        match self.changed.get(id) {
            Some(o) => o.as_ref(),
            None => self.base.objects.get(id),
        }
    }

    /// Whether any record of this zone exists.
    fn has_records(&self, cloud: Cloud, zone: &str) -> bool {
        let prefix = format!("{cloud}/record.{zone}/");
        let under = |id: &&String| id.starts_with(&prefix);
        let stored = self
            .base
            .objects
            .range(prefix.clone()..)
            .map(|(id, _)| id)
            .take_while(under)
            .any(|id| !matches!(self.changed.get(id), Some(None)));
        stored
            || self
                .changed
                .range(prefix.clone()..)
                .take_while(|(id, _)| under(id))
                .any(|(_, o)| o.is_some())
    }

    /// What one change does, with the errors a cloud API would give.
    fn effect(&self, ch: &Change, owner: &str) -> Result<Effect, String> {
        let ns = ch.provider.cloud;
        let missing = || format!("NotFound: {} does not exist", ch.address);
        match &ch.op {
            ChangeOp::Create { attrs } => {
                let id = sandbox_id(ns, &address_of(attrs));
                if self.get(&id).is_some() {
                    return Err(format!("AlreadyExists: {} already exists", ch.address));
                }
                if let Attrs::Record(r) = attrs
                    && self.get(&sandbox_id(ns, &Address::zone(&r.zone))).is_none()
                {
                    return Err(format!(
                        "NoSuchHostedZone: zone {} does not exist in {ns}",
                        r.zone
                    ));
                }
                Ok(Effect::Put(
                    id,
                    Box::new(Object {
                        cloud: ns,
                        attrs: attrs.clone(),
                        owner: Some(owner.to_string()),
                    }),
                ))
            }
            ChangeOp::Update { id, attrs } | ChangeOp::Replace { id, attrs } => {
                let old = self.get(id).ok_or_else(missing)?;
                if address_of(&old.attrs) != address_of(attrs) {
                    return Err(format!(
                        "InvalidChange: {id} cannot become {}",
                        address_of(attrs)
                    ));
                }
                let owner = old.owner.clone().or(Some(owner.to_string()));
                Ok(Effect::Put(
                    id.clone(),
                    Box::new(Object {
                        cloud: ns,
                        attrs: attrs.clone(),
                        owner,
                    }),
                ))
            }
            ChangeOp::Adopt { id } => {
                let old = self.get(id).ok_or_else(missing)?;
                Ok(Effect::Put(
                    id.clone(),
                    Box::new(Object {
                        owner: Some(owner.to_string()),
                        ..old.clone()
                    }),
                ))
            }
            // Releasing what no longer exists leaves nothing owned: done.
            ChangeOp::Release { id } => Ok(match self.get(id) {
                Some(old) => Effect::Put(
                    id.clone(),
                    Box::new(Object {
                        owner: None,
                        ..old.clone()
                    }),
                ),
                None => Effect::Nothing,
            }),
            ChangeOp::Delete { id } => {
                let old = self.get(id).ok_or_else(missing)?;
                if let Attrs::Zone(z) = &old.attrs
                    && self.has_records(old.cloud, &z.name)
                {
                    return Err(format!(
                        "HostedZoneNotEmpty: zone {} still has records",
                        z.name
                    ));
                }
                Ok(Effect::Remove(id.clone()))
            }
        }
    }
}
