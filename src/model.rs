//! The resource model shared by the compiled stack, live state, recorded state and plans.
//!
//! A closed set of resource kinds: `enum` + exhaustive `match`, not a registry.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The clouds a stack can place zones and deployments on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Azure,
    Gcp,
}

impl Cloud {
    pub const ALL: [Cloud; 3] = [Cloud::Aws, Cloud::Azure, Cloud::Gcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Gcp => "gcp",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cloud {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aws" => Ok(Cloud::Aws),
            "azure" => Ok(Cloud::Azure),
            "gcp" => Ok(Cloud::Gcp),
            _ => Err(format!("unknown cloud `{s}` (expected aws, azure or gcp)")),
        }
    }
}

/// Which provider implementation talks to a cloud: the embedded sandbox or the real API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Sandbox,
    Aws,
    Azure,
    Gcp,
}

/// The provider as users know it: its `[provider.*]` block's name.
impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Sandbox => "the sandbox",
            ProviderKind::Aws => "aws",
            ProviderKind::Azure => "azure",
            ProviderKind::Gcp => "gcp",
        })
    }
}

/// Provider plus cloud, e.g. `sandbox.aws` (simulated AWS) or `aws.aws` shown as `aws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProviderRef {
    pub kind: ProviderKind,
    pub cloud: Cloud,
}

impl fmt::Display for ProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProviderKind::Sandbox => write!(f, "sandbox.{}", self.cloud),
            _ => write!(f, "{}", self.cloud),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Zone,
    Record,
    Group,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Zone => "zone",
            ResourceKind::Record => "record",
            ResourceKind::Group => "group",
        }
    }
}

/// A resource's address: `zone.shop.example.com`, `record.shop.example.com/api/A`,
/// `group.api@aws/us-east-1`. Used in plans, `--target`, state and (later) findings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub kind: ResourceKind,
    pub name: String,
}

impl Address {
    pub fn zone(zone: &str) -> Self {
        Address {
            kind: ResourceKind::Zone,
            name: zone.to_string(),
        }
    }
    pub fn record(zone: &str, name: &str, rtype: RecordType) -> Self {
        Address {
            kind: ResourceKind::Record,
            name: format!("{zone}/{name}/{rtype}"),
        }
    }
    pub fn group(service: &str, cloud: Cloud, region: &str) -> Self {
        Address {
            kind: ResourceKind::Group,
            name: format!("{service}@{cloud}/{region}"),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

impl FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, name) = s.split_once('.').ok_or_else(|| {
            format!("`{s}` is not an address (expected zone.NAME, record.ZONE/NAME/TYPE or group.SERVICE@CLOUD/REGION)")
        })?;
        let kind = match kind {
            "zone" => ResourceKind::Zone,
            "record" => ResourceKind::Record,
            "group" => ResourceKind::Group,
            other => {
                return Err(format!(
                    "unknown resource kind `{other}` in `{s}` (expected zone, record or group)"
                ));
            }
        };
        if name.is_empty() {
            return Err(format!("`{s}` has an empty name"));
        }
        Ok(Address {
            kind,
            name: name.to_string(),
        })
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
    TXT,
    MX,
    NS,
    SRV,
    CAA,
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Desired or live attributes of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attrs {
    Zone(ZoneAttrs),
    Record(RecordAttrs),
    Group(GroupAttrs),
}

impl Attrs {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Attrs::Zone(_) => ResourceKind::Zone,
            Attrs::Record(_) => ResourceKind::Record,
            Attrs::Group(_) => ResourceKind::Group,
        }
    }

    /// `self` (desired) with the observed, read-only attributes of `live` filled in, so they
    /// never show as differences.
    pub fn with_observed(&self, live: &Attrs) -> Attrs {
        match (self, live) {
            (Attrs::Group(want), Attrs::Group(have)) => Attrs::Group(GroupAttrs {
                instances: have.instances,
                ..want.clone()
            }),
            _ => self.clone(),
        }
    }

    /// Whether changing from `self` to `new` cannot be done in place.
    /// Returns the attribute that forces replacement.
    pub fn forces_replacement(&self, new: &Attrs) -> Option<&'static str> {
        match (self, new) {
            (Attrs::Record(a), Attrs::Record(b)) if a.routing.policy() != b.routing.policy() => {
                Some("routing.policy")
            }
            (Attrs::Group(a), Attrs::Group(b)) if a.instance_type != b.instance_type => {
                Some("instance_type")
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneAttrs {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordAttrs {
    pub zone: String,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    pub ttl: u32,
    pub routing: Routing,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// Record routing with targets already resolved to values (endpoint addresses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Routing {
    Simple {
        values: Vec<String>,
    },
    Weighted {
        members: Vec<Member>,
    },
    Failover {
        primary: Member,
        secondary: Member,
    },
    Latency {
        members: Vec<Member>,
    },
    /// Several answers, each with its own health check; healthy ones are returned.
    Multivalue {
        members: Vec<Member>,
    },
    Geolocation {
        members: Vec<Member>,
    },
}

impl Routing {
    pub fn policy(&self) -> &'static str {
        match self {
            Routing::Simple { .. } => "simple",
            Routing::Weighted { .. } => "weighted",
            Routing::Failover { .. } => "failover",
            Routing::Latency { .. } => "latency",
            Routing::Multivalue { .. } => "multivalue",
            Routing::Geolocation { .. } => "geolocation",
        }
    }
}

/// One answer of a routed record: which deployment (set identifier) and its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Set identifier: the deployment reference (`api@aws/us-east-1`) or a literal label.
    pub id: String,
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Latency routing: the cloud region; geolocation: a continent/country code or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub protocol: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub interval_secs: u64,
    pub timeout_secs: u64,
    pub failures: u32,
    pub recoveries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAttrs {
    pub service: String,
    pub cloud: Cloud,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Name of the cloud's scaling group (ASG, scale set, MIG) to manage; default: the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Observed, not declared: instances in service when last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
}

impl GroupAttrs {
    pub fn group_name(&self) -> &str {
        self.group_name.as_deref().unwrap_or(&self.service)
    }
}

impl Routing {
    /// Record sets are unordered: values and members are kept sorted so that what a cloud
    /// returns compares equal to what was declared.
    pub fn normalized(mut self) -> Routing {
        let sort_members = |members: &mut Vec<Member>| {
            for m in members.iter_mut() {
                m.values.sort();
                m.values.dedup();
            }
            members.sort_by(|a, b| a.id.cmp(&b.id));
        };
        match &mut self {
            Routing::Simple { values } => {
                values.sort();
                values.dedup();
            }
            Routing::Failover { primary, secondary } => {
                primary.values.sort();
                primary.values.dedup();
                secondary.values.sort();
                secondary.values.dedup();
            }
            Routing::Weighted { members }
            | Routing::Latency { members }
            | Routing::Geolocation { members }
            | Routing::Multivalue { members } => sort_members(members),
        }
        self
    }
}
