//! Providers: what reads and changes a cloud. A trait, because there are many and each is
//! tested on its own. Providers receive *sets* of changes (one batch per zone or group),
//! refresh by listing, and count their API calls.

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod sandbox;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::model::{
    Address, Attrs, Cloud, GroupAttrs, ProviderKind, ProviderRef, RecordAttrs, ZoneAttrs,
};

/// An error and its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A short stable hash of `parts` (48 hex digits): idempotency tokens and names derived from
/// what they stand for.
pub(crate) fn digest(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(24)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A resource as it exists in a cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveResource {
    pub provider: ProviderRef,
    /// The provider's identifier (e.g. a hosted zone ID, a record's name+type, a group name).
    pub id: String,
    pub attrs: Attrs,
    /// Ownership marker (the lineage of the state that created or adopted it), where the cloud
    /// can store one: cairn deletes only what it owns.
    pub owner: Option<String>,
    /// Unowned, and of a kind cairn takes over when declared (an existing hosted zone or
    /// scaling group): creating it adopts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adoptable: bool,
}

impl LiveResource {
    pub fn address(&self) -> Address {
        address_of(&self.attrs)
    }

    /// The attributes to compare with `declared`: those this cloud cannot keep taken from
    /// `declared`, so that they never show as differences. Google Cloud keeps no routing
    /// member IDs (Cloud DNS policy items have no set identifier) and no bounds, instance type
    /// or endpoint on a managed instance group (only its target size).
    pub fn attrs_against(&self, declared: &Attrs) -> Attrs {
        match self.provider.kind {
            ProviderKind::Gcp => gcp::with_declared(&self.attrs, declared),
            ProviderKind::Sandbox | ProviderKind::Aws | ProviderKind::Azure => self.attrs.clone(),
        }
    }
}

/// Identity follows from attributes: a zone's name, a record's zone/name/type, a group's
/// service/cloud/region.
pub fn address_of(attrs: &Attrs) -> Address {
    match attrs {
        Attrs::Zone(ZoneAttrs { name }) => Address::zone(name),
        Attrs::Record(RecordAttrs {
            zone, name, rtype, ..
        }) => Address::record(zone, name, *rtype),
        Attrs::Group(GroupAttrs {
            service,
            cloud,
            region,
            ..
        }) => Address::group(service, *cloud, region),
    }
}

/// One change sent to a provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub address: Address,
    pub provider: ProviderRef,
    pub op: ChangeOp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChangeOp {
    Create {
        attrs: Attrs,
    },
    Update {
        id: String,
        attrs: Attrs,
    },
    /// Delete then create in one batch (attributes that cannot change in place).
    Replace {
        id: String,
        attrs: Attrs,
    },
    Delete {
        id: String,
    },
    /// Write the ownership marker on an existing resource (`cairn import`).
    Adopt {
        id: String,
    },
    /// Clear the ownership marker: cairn stops managing it (`cairn state rm`).
    Release {
        id: String,
    },
}

impl ChangeOp {
    /// The attributes the resource should have after the change, if it keeps existing.
    pub fn attrs(&self) -> Option<&Attrs> {
        match self {
            ChangeOp::Create { attrs }
            | ChangeOp::Update { attrs, .. }
            | ChangeOp::Replace { attrs, .. } => Some(attrs),
            ChangeOp::Delete { .. } | ChangeOp::Adopt { .. } | ChangeOp::Release { .. } => None,
        }
    }
}

/// The result of one change within a batch.
pub type ChangeResult = Result<Option<LiveResource>, String>;

/// What to list in a refresh: the zones and groups the stack or its state mentions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scope {
    pub zones: Vec<(Cloud, String)>,
    pub groups: Vec<GroupRef>,
}

/// A scaling group to look for: where, and under which cloud-side name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRef {
    pub address: Address,
    pub cloud: Cloud,
    pub region: String,
    pub name: String,
}

impl GroupRef {
    pub fn of(address: &Address, g: &GroupAttrs) -> GroupRef {
        GroupRef {
            address: address.clone(),
            cloud: g.cloud,
            region: g.region.clone(),
            name: g.group_name().to_string(),
        }
    }
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty() && self.groups.is_empty()
    }

    /// The zones and groups of `state`'s resources that this scope does not list.
    pub fn missing_from(&self, state: &crate::state::State) -> Scope {
        let mut zones: HashSet<(Cloud, &str)> =
            self.zones.iter().map(|(c, z)| (*c, z.as_str())).collect();
        let mut groups: HashSet<&Address> = self.groups.iter().map(|g| &g.address).collect();
        let mut missing = Scope::default();
        for (addr, r) in &state.resources {
            let zone = match &r.attrs {
                Attrs::Zone(z) => &z.name,
                Attrs::Record(rec) => &rec.zone,
                Attrs::Group(g) => {
                    if groups.insert(addr) {
                        missing.groups.push(GroupRef::of(addr, g));
                    }
                    continue;
                }
            };
            if zones.insert((r.provider.cloud, zone)) {
                missing.zones.push((r.provider.cloud, zone.clone()));
            }
        }
        missing
    }

    pub fn extend(&mut self, other: Scope) {
        self.zones.extend(other.zones);
        self.groups.extend(other.groups);
    }
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// Lists live resources in scope.
    async fn refresh(&self, scope: &Scope) -> Result<Vec<LiveResource>, String>;

    /// Applies a batch of changes that share a batch key; one result per change, in order.
    /// `owner` is the marker to write on what is created or adopted.
    async fn apply(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult>;

    /// Changes with the same key may go in one batch (e.g. records of one zone).
    fn batch_key(&self, change: &Change) -> String;

    /// Most changes one batch may carry.
    fn max_batch(&self) -> usize;

    /// API calls made so far by this process.
    fn api_calls(&self) -> u64;
}
