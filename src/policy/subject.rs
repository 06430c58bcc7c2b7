//! What rules evaluate: the compiled stack and the plan, as documents a condition reads.
//!
//! Each subject is one declaration (or one planned change) with the variables a rule sees.
//! Every field is always present (`null` when not declared), so conditions compare with
//! `!= null` instead of failing on a missing key. docs/policies.md lists the fields.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Desired, Service, Stack};
use crate::diag::Location;
use crate::model::{Address, Attrs, Routing};
use crate::plan::Plan;

/// What a rule applies to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// The stack as a whole (`stack`).
    Stack,
    /// Each `[[service]]` (`service`).
    Service,
    /// Each deployment of a service (`deployment`, and its `service`).
    Deployment,
    /// Each `[[zone]]` (`zone`).
    Zone,
    /// Each `[[record]]` (`record`).
    Record,
    /// Each `[scaling.NAME]` (`scaling`).
    Scaling,
    /// Each change in the plan (`change`, and `plan`); only when a plan is evaluated.
    Change,
}

impl SubjectKind {
    pub const ALL: &[SubjectKind] = &[
        SubjectKind::Stack,
        SubjectKind::Service,
        SubjectKind::Deployment,
        SubjectKind::Zone,
        SubjectKind::Record,
        SubjectKind::Scaling,
        SubjectKind::Change,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Stack => "stack",
            SubjectKind::Service => "service",
            SubjectKind::Deployment => "deployment",
            SubjectKind::Zone => "zone",
            SubjectKind::Record => "record",
            SubjectKind::Scaling => "scaling",
            SubjectKind::Change => "change",
        }
    }
}

/// One thing a rule is checked against.
pub struct Subject {
    pub kind: SubjectKind,
    /// What a finding names and a waiver matches: an address, `service.NAME`, `scaling.NAME`
    /// or `stack.NAME`.
    pub resource: String,
    /// The declaration a finding points at.
    pub origin: Location,
    /// Variables bound for the condition, besides `stack` (always bound).
    pub vars: Vec<(&'static str, Value)>,
}

/// The `stack` variable.
pub fn stack_doc(stack: &Stack) -> Value {
    let c = &stack.compliance;
    json!({
        "name": stack.name,
        "environment": stack.environment,
        "production": is_production(&stack.environment),
        "frameworks": c.frameworks.iter().map(to_str).collect::<Vec<_>>(),
        "allowed_regions": c.allowed_regions.iter()
            .map(|(k, v)| (to_str(k), json!(v)))
            .collect::<serde_json::Map<_, _>>(),
        "change_approvers": c.change_approvers,
        "services": stack.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
    })
}

/// Environments whose changes production rules govern.
pub fn is_production(environment: &str) -> bool {
    matches!(environment, "production" | "prod")
}

fn to_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// Where stack-wide findings point: `[compliance]`, else `[stack]`, else the first file.
fn stack_origin(stack: &Stack) -> Option<Location> {
    stack
        .compliance
        .origin
        .clone()
        .or_else(|| stack.origin.clone())
        .or_else(|| {
            stack.files.first().map(|f| Location {
                file: f.clone(),
                span: 0..0,
            })
        })
}

/// The subjects of the kinds asked for: of the stack, and of the plan's changes when a plan
/// is given.
pub fn subjects(stack: &Stack, plan: Option<&Plan>, kinds: &[SubjectKind]) -> Vec<Subject> {
    let wanted = |k: SubjectKind| kinds.contains(&k);
    let declared: HashMap<&Address, &Desired> =
        stack.resources.iter().map(|r| (&r.address, r)).collect();
    let mut out = Vec::new();
    if let Some(origin) = stack_origin(stack).filter(|_| wanted(SubjectKind::Stack)) {
        out.push(Subject {
            kind: SubjectKind::Stack,
            resource: format!("stack.{}", stack.name),
            origin,
            vars: Vec::new(),
        });
    }
    let services = wanted(SubjectKind::Service) || wanted(SubjectKind::Deployment);
    for s in stack.services.iter().filter(|_| services) {
        let service = service_doc(stack, &declared, s);
        for (d, g) in deployments(&declared, s).filter(|_| wanted(SubjectKind::Deployment)) {
            out.push(Subject {
                kind: SubjectKind::Deployment,
                resource: d.address.to_string(),
                origin: d.origin.clone(),
                vars: vec![
                    ("deployment", group_doc(&d.address.to_string(), g)),
                    ("service", service.clone()),
                ],
            });
        }
        if wanted(SubjectKind::Service) {
            out.push(Subject {
                kind: SubjectKind::Service,
                resource: format!("service.{}", s.name),
                origin: s.origin.clone(),
                vars: vec![("service", service)],
            });
        }
    }
    for r in &stack.resources {
        match &r.attrs {
            Attrs::Zone(z) if wanted(SubjectKind::Zone) => out.push(Subject {
                kind: SubjectKind::Zone,
                resource: r.address.to_string(),
                origin: r.origin.clone(),
                vars: vec![(
                    "zone",
                    json!({
                        "address": r.address.to_string(),
                        "name": z.name,
                        "cloud": r.provider.cloud.as_str(),
                        "protected": r.protected,
                    }),
                )],
            }),
            Attrs::Record(_) if wanted(SubjectKind::Record) => out.push(Subject {
                kind: SubjectKind::Record,
                resource: r.address.to_string(),
                origin: r.origin.clone(),
                vars: vec![("record", attrs_doc(&r.address.to_string(), &r.attrs))],
            }),
            _ => {} // groups are subjects as deployments, above
        }
    }
    for (name, p) in stack
        .scaling
        .iter()
        .filter(|_| wanted(SubjectKind::Scaling))
    {
        let max_replicas: Option<u64> = stack.services.iter().find(|s| &s.name == name).map(|s| {
            deployments(&declared, s)
                .map(|(_, g)| u64::from(g.max))
                .sum()
        });
        let cost = p.cost.as_ref().map(|c| {
            json!({
                "per_replica_hour": c.per_replica_hour,
                "max_per_hour": c.max_per_hour,
            })
        });
        out.push(Subject {
            kind: SubjectKind::Scaling,
            resource: format!("scaling.{name}"),
            origin: p.origin.clone(),
            vars: vec![(
                "scaling",
                json!({
                    "address": format!("scaling.{name}"),
                    "service": name,
                    "target_utilization": p.target_utilization,
                    "startup_seconds": p.startup.as_secs(),
                    "scale_in_stabilization_seconds": p.scale_in_stabilization.as_secs(),
                    "predictive": p.predictive.as_ref().map(|x| json!({
                        "horizon_seconds": x.horizon.as_secs(),
                        "history_seconds": x.history.as_secs(),
                    })),
                    "cost": cost,
                    "max_replicas": max_replicas,
                    "max_cost_per_hour": p.cost.as_ref().zip(max_replicas)
                        .map(|(c, n)| c.per_replica_hour * n as f64),
                }),
            )],
        });
    }
    if let Some(plan) = plan.filter(|_| wanted(SubjectKind::Change)) {
        let plan_doc = json!({
            "destroy": plan.destroy,
            "summary": plan.summary,
        });
        let fallback = stack_origin(stack);
        for c in &plan.changes {
            let declared = declared.get(&c.address);
            let Some(origin) = declared
                .map(|r| r.origin.clone())
                .or_else(|| fallback.clone())
            else {
                continue;
            };
            let address = c.address.to_string();
            out.push(Subject {
                kind: SubjectKind::Change,
                resource: address.clone(),
                origin,
                vars: vec![
                    (
                        "change",
                        json!({
                            "address": address,
                            "kind": c.address.kind.as_str(),
                            "action": c.action,
                            "protected": c.protected,
                            "declared": declared.is_some(),
                            "reason": c.reason,
                            "before": c.before.as_ref().map(|a| attrs_doc(&address, a)),
                            "after": c.after.as_ref().map(|a| attrs_doc(&address, a)),
                            "changed": c.diff.iter().map(|d| d.path.clone()).collect::<Vec<_>>(),
                        }),
                    ),
                    ("plan", plan_doc.clone()),
                ],
            });
        }
    }
    out
}

/// A service's deployments: the declared group resources with their attributes.
fn deployments<'a>(
    declared: &'a HashMap<&Address, &'a Desired>,
    s: &'a Service,
) -> impl Iterator<Item = (&'a Desired, &'a crate::model::GroupAttrs)> {
    s.groups.iter().filter_map(|a| {
        let d: &Desired = declared.get(a)?;
        match &d.attrs {
            Attrs::Group(g) => Some((d, g)),
            _ => None,
        }
    })
}

fn service_doc(stack: &Stack, declared: &HashMap<&Address, &Desired>, s: &Service) -> Value {
    let groups: Vec<_> = deployments(declared, s).collect();
    let regions: BTreeSet<&str> = groups.iter().map(|(_, g)| g.region.as_str()).collect();
    let clouds: BTreeSet<&str> = groups.iter().map(|(_, g)| g.cloud.as_str()).collect();
    json!({
        "address": format!("service.{}", s.name),
        "name": s.name,
        "data_classification": s.data_classification.map(|c| to_str(&c)),
        "protected": s.protected,
        "protocol": s.protocol.map(|p| to_str(&p)),
        "tls_min_version": s.tls_min_version,
        "encryption_at_rest": s.encryption_at_rest,
        "backup_retention_days": s.backup_retention_days,
        "audit_logging": s.audit_logging,
        "log_retention_days": s.log_retention_days,
        "deployments": groups.iter().map(|(d, g)| group_doc(&d.address.to_string(), g)).collect::<Vec<_>>(),
        "regions": regions,
        "clouds": clouds,
        "min_replicas": groups.iter().map(|(_, g)| u64::from(g.min)).sum::<u64>(),
        "max_replicas": groups.iter().map(|(_, g)| u64::from(g.max)).sum::<u64>(),
        "scaling": stack.scaling.contains_key(&s.name),
    })
}

fn group_doc(address: &str, g: &crate::model::GroupAttrs) -> Value {
    json!({
        "address": address,
        "service": g.service,
        "cloud": g.cloud.as_str(),
        "region": g.region,
        "instance_type": g.instance_type,
        "min": g.min,
        "max": g.max,
        "desired": g.desired,
        "endpoint": g.endpoint,
    })
}

/// A resource's attributes as a document; records get their routing flattened.
fn attrs_doc(address: &str, attrs: &Attrs) -> Value {
    match attrs {
        Attrs::Zone(z) => json!({ "address": address, "name": z.name }),
        Attrs::Group(g) => group_doc(address, g),
        Attrs::Record(r) => {
            let members = match &r.routing {
                Routing::Simple { .. } => Vec::new(),
                Routing::Failover { primary, secondary } => vec![primary, secondary],
                Routing::Weighted { members }
                | Routing::Latency { members }
                | Routing::Multivalue { members }
                | Routing::Geolocation { members } => members.iter().collect(),
            };
            let values: Vec<&String> = match &r.routing {
                Routing::Simple { values } => values.iter().collect(),
                _ => members.iter().flat_map(|m| &m.values).collect(),
            };
            let fqdn = if r.name == "@" {
                r.zone.clone()
            } else {
                format!("{}.{}", r.name, r.zone)
            };
            json!({
                "address": address,
                "zone": r.zone,
                "name": r.name,
                "fqdn": fqdn,
                "type": r.rtype,
                "ttl": r.ttl,
                "policy": r.routing.policy(),
                "values": values,
                "members": members.iter().map(|m| json!({
                    "id": m.id,
                    "values": m.values,
                    "weight": m.weight,
                    "location": m.location,
                })).collect::<Vec<_>>(),
                "health_check": r.health_check.as_ref().map(|h| json!({
                    "protocol": h.protocol,
                    "port": h.port,
                    "path": h.path,
                    "interval_seconds": h.interval_secs,
                    "timeout_seconds": h.timeout_secs,
                    "failures": h.failures,
                    "recoveries": h.recoveries,
                })),
            })
        }
    }
}
