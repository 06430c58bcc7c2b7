//! The semantic diff of two revisions of a stack: what its declarations and policies say
//! differently, not how its files changed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Desired, ScalingPolicy, Service, Stack};
use crate::diag::Location;
use crate::plan::attr_diff;
use crate::policy::{Policies, Rule, Waiver};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Resource,
    Service,
    Scaling,
    Compliance,
    Rule,
    Waiver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Removed,
    Changed,
}

/// One declaration that differs.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub section: Section,
    /// Address, `service.NAME`, rule ID, ...
    pub subject: String,
    pub kind: Kind,
    /// `field: before → after` lines.
    pub details: Vec<String>,
    /// Loosens a compliance control: a rule removed or relaxed, a waiver added, a region
    /// allowed, a framework dropped, a protection removed.
    pub weakens: bool,
    #[serde(skip)]
    pub location: Option<Location>,
}

/// One revision as review sees it.
pub struct Side {
    pub stack: Stack,
    pub policies: Policies,
}

pub fn semantic(base: Option<&Side>, head: &Side) -> Vec<Change> {
    let mut out = Vec::new();
    let (bs, hs) = (base.map(|b| &b.stack), &head.stack);
    // Where a removed declaration is called out: it no longer has a place of its own.
    let removed_at = stack_location(hs);
    compare(
        Section::Resource,
        bs.into_iter()
            .flat_map(|s| &s.resources)
            .map(|r| (r.address.to_string(), r)),
        hs.resources.iter().map(|r| (r.address.to_string(), r)),
        removed_at.clone(),
        &mut out,
    );
    compare(
        Section::Service,
        bs.into_iter()
            .flat_map(|s| &s.services)
            .map(|s| (format!("service.{}", s.name), s)),
        hs.services
            .iter()
            .map(|s| (format!("service.{}", s.name), s)),
        removed_at.clone(),
        &mut out,
    );
    compare(
        Section::Scaling,
        bs.into_iter()
            .flat_map(|s| &s.scaling)
            .map(|(n, p)| (format!("scaling.{n}"), p)),
        hs.scaling.iter().map(|(n, p)| (format!("scaling.{n}"), p)),
        removed_at.clone(),
        &mut out,
    );
    compliance(base, head, &mut out);
    compare(
        Section::Rule,
        base.into_iter()
            .flat_map(|b| &b.policies.rules)
            .map(|r| (r.id.clone(), r)),
        head.policies.rules.iter().map(|r| (r.id.clone(), r)),
        removed_at,
        &mut out,
    );
    compare(
        Section::Waiver,
        base.into_iter()
            .flat_map(|b| &b.policies.waivers)
            .map(|w| (waiver_key(w), w)),
        head.policies.waivers.iter().map(|w| (waiver_key(w), w)),
        None,
        &mut out,
    );
    out
}

/// How a kind of declaration is compared between revisions: what an addition or a removal
/// says, and what a change says; each with whether it loosens a compliance control.
trait Compared {
    fn origin(&self) -> Location;
    fn added(&self) -> (Vec<String>, bool) {
        (Vec::new(), false)
    }
    fn removed(&self) -> (Vec<String>, bool) {
        (Vec::new(), false)
    }
    /// `None` when nothing that matters differs.
    fn changed(before: &Self, after: &Self) -> Option<(Vec<String>, bool)>;
}

/// Pairs the items of both revisions by key and records what differs.
fn compare<'a, T: Compared + 'a>(
    section: Section,
    base: impl Iterator<Item = (String, &'a T)>,
    head: impl Iterator<Item = (String, &'a T)>,
    removed_at: Option<Location>,
    out: &mut Vec<Change>,
) {
    for (subject, pair) in pair(base, head) {
        let (kind, (details, weakens), location) = match pair {
            (None, Some(h)) => (Kind::Added, h.added(), Some(h.origin())),
            (Some(b), None) => (Kind::Removed, b.removed(), removed_at.clone()),
            (Some(b), Some(h)) => match T::changed(b, h) {
                Some(c) => (Kind::Changed, c, Some(h.origin())),
                None => continue,
            },
            (None, None) => continue,
        };
        out.push(Change {
            section,
            subject,
            kind,
            details,
            weakens,
            location,
        });
    }
}

/// `key: before → after` lines of field changes, and whether any of them loosens a control.
fn described(
    changes: &[(String, Option<Value>, Option<Value>)],
    loosening: impl Fn(&str, &Option<Value>, &Option<Value>) -> bool,
) -> Option<(Vec<String>, bool)> {
    if changes.is_empty() {
        return None;
    }
    let weakens = changes.iter().any(|(k, b, a)| loosening(k, b, a));
    let details = changes
        .iter()
        .map(|(k, b, a)| format!("{k}: {} → {}", show(b), show(a)))
        .collect();
    Some((details, weakens))
}

fn show(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(v) => v.to_string(),
    }
}

/// Pairs items of two revisions by key: (base, head) for each key in either.
fn pair<'a, T>(
    base: impl Iterator<Item = (String, &'a T)>,
    head: impl Iterator<Item = (String, &'a T)>,
) -> BTreeMap<String, (Option<&'a T>, Option<&'a T>)> {
    let mut m: BTreeMap<String, (Option<&T>, Option<&T>)> = BTreeMap::new();
    for (k, v) in base {
        m.entry(k).or_default().0 = Some(v);
    }
    for (k, v) in head {
        m.entry(k).or_default().1 = Some(v);
    }
    m
}

/// Field-by-field differences of two flat JSON objects.
fn field_changes(before: &Value, after: &Value) -> Vec<(String, Option<Value>, Option<Value>)> {
    let empty = serde_json::Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| ((*k).clone(), b.get(k).cloned(), a.get(k).cloned()))
        .collect()
}

fn service_doc(s: &Service) -> Value {
    json!({
        "data_classification": s.data_classification,
        "protected": s.protected,
        "protocol": s.protocol,
        "tls_min_version": s.tls_min_version,
        "encryption_at_rest": s.encryption_at_rest,
        "backup_retention_days": s.backup_retention_days,
        "audit_logging": s.audit_logging,
        "log_retention_days": s.log_retention_days,
    })
}

/// Whether changing a service setting from `before` to `after` loosens a control: turning a
/// protection or security setting off, serving something other than HTTPS, accepting older TLS,
/// keeping backups or logs for less time, declaring its data less sensitive.
fn loosens(key: &str, before: &Option<Value>, after: &Option<Value>) -> bool {
    let (b, a) = (
        before.as_ref().filter(|v| !v.is_null()),
        after.as_ref().filter(|v| !v.is_null()),
    );
    match key {
        "protected" | "encryption_at_rest" | "audit_logging" => {
            b == Some(&Value::Bool(true)) && a != Some(&Value::Bool(true))
        }
        "protocol" => b == Some(&json!("https")) && a != Some(&json!("https")),
        // Declaring data less sensitive switches off the rules for the more sensitive class.
        "data_classification" => {
            let rank = |v: Option<&Value>| {
                let order = ["public", "internal", "confidential", "personal", "health"];
                v.and_then(Value::as_str)
                    .and_then(|c| order.iter().position(|o| *o == c))
            };
            rank(b).is_some() && rank(a) < rank(b)
        }
        // "1.0" < "1.2" as strings too; dropping the setting loses the guarantee.
        "tls_min_version" => {
            b.is_some() && (a.is_none() || a.and_then(Value::as_str) < b.and_then(Value::as_str))
        }
        "backup_retention_days" | "log_retention_days" => {
            b.is_some() && (a.is_none() || a.and_then(Value::as_u64) < b.and_then(Value::as_u64))
        }
        _ => false,
    }
}

fn scaling_doc(p: &ScalingPolicy) -> Value {
    json!({
        "target_utilization": p.target_utilization,
        "startup": humantime::format_duration(p.startup).to_string(),
        "scale_in_stabilization": humantime::format_duration(p.scale_in_stabilization).to_string(),
        "predictive.horizon": p.predictive.as_ref().map(|x| humantime::format_duration(x.horizon).to_string()),
        "predictive.history": p.predictive.as_ref().map(|x| humantime::format_duration(x.history).to_string()),
        "cost.per_replica_hour": p.cost.as_ref().map(|c| c.per_replica_hour),
        "cost.max_per_hour": p.cost.as_ref().and_then(|c| c.max_per_hour),
        "load_factor": p.load_factor,
        "scale_in_limit.percent": p.scale_in_limit.map(|(percent, _)| percent),
        "scale_in_limit.period": p.scale_in_limit.map(|(_, d)| humantime::format_duration(d).to_string()),
        "scale_to_zero_after": p.scale_to_zero_after.map(|d| humantime::format_duration(d).to_string()),
    })
}

fn stack_location(stack: &Stack) -> Option<Location> {
    stack
        .compliance
        .origin
        .clone()
        .or_else(|| stack.origin.clone())
}

fn compliance(base_side: Option<&Side>, head_side: &Side, out: &mut Vec<Change>) {
    let (base, head) = (base_side.map(|b| &b.stack), &head_side.stack);
    let empty = crate::config::Compliance::default();
    let b = base.map_or(&empty, |s| &s.compliance);
    let h = &head.compliance;
    let mut details = Vec::new();
    let mut weakens = false;
    for f in &b.frameworks {
        if !h.frameworks.contains(f) {
            details.push(format!(
                "framework removed: {}",
                json!(f).as_str().unwrap_or("?")
            ));
            weakens = true;
        }
    }
    for f in &h.frameworks {
        if !b.frameworks.contains(f) {
            details.push(format!(
                "framework added: {}",
                json!(f).as_str().unwrap_or("?")
            ));
        }
    }
    let classes: std::collections::BTreeSet<_> = b
        .allowed_regions
        .keys()
        .chain(h.allowed_regions.keys())
        .collect();
    for c in classes {
        let name = json!(c).as_str().unwrap_or("?").to_string();
        let (before, after) = (b.allowed_regions.get(c), h.allowed_regions.get(c));
        match (before, after) {
            (Some(_), None) => {
                details.push(format!("allowed_regions.{name}: restriction removed"));
                weakens = true;
            }
            (None, Some(r)) => details.push(format!("allowed_regions.{name}: set to {r:?}")),
            (Some(x), Some(y)) => {
                for r in y.iter().filter(|r| !x.contains(r)) {
                    details.push(format!("allowed_regions.{name}: {r} allowed"));
                    weakens = true;
                }
                for r in x.iter().filter(|r| !y.contains(r)) {
                    details.push(format!("allowed_regions.{name}: {r} no longer allowed"));
                }
            }
            (None, None) => {}
        }
    }
    if b.change_approvers != h.change_approvers {
        details.push(format!(
            "change_approvers: {:?} → {:?}",
            b.change_approvers, h.change_approvers
        ));
        // Anyone taken off the list may have been the control.
        weakens |= b
            .change_approvers
            .iter()
            .any(|a| !h.change_approvers.contains(a));
    }
    // A rule's own level, for stacks that set none, on each side (the rule may change too).
    let own_level = |side: Option<&Side>, id: &str| {
        side.into_iter()
            .flat_map(|s| &s.policies.rules)
            .find(|r| r.id == id)
            .map(|r| r.enforcement)
    };
    let rules: std::collections::BTreeSet<&String> =
        b.enforcement.keys().chain(h.enforcement.keys()).collect();
    for r in rules {
        let (before, after) = (
            b.enforcement.get(r).map(|x| x.0),
            h.enforcement.get(r).map(|x| x.0),
        );
        if before != after {
            details.push(format!(
                "enforcement of {r}: {} → {}",
                before.map_or("(rule's own)", |e| e.as_str()),
                after.map_or("(rule's own)", |e| e.as_str())
            ));
            let was = before.or_else(|| own_level(base_side, r));
            let now = after.or_else(|| own_level(Some(head_side), r));
            weakens |= match (was, now) {
                (Some(x), Some(y)) => y < x,
                // Unknown rule on one side: a level set for it cannot be judged; flag it.
                _ => true,
            };
        }
    }
    if !details.is_empty() {
        out.push(Change {
            section: Section::Compliance,
            subject: format!("stack.{}", head.name),
            kind: if base.is_some() {
                Kind::Changed
            } else {
                Kind::Added
            },
            details,
            weakens,
            location: stack_location(head),
        });
    }
}

fn rule_doc(r: &Rule) -> Value {
    json!({
        "title": r.title,
        "severity": r.severity,
        "enforcement": r.enforcement,
        "applies_to": r.applies_to,
        "when": r.when.as_ref().map(|c| c.text.clone()),
        "require": r.require.text,
        "controls": r.controls,
    })
}

fn waiver_key(w: &Waiver) -> String {
    format!("{} for {}", w.rule, w.resource)
}

impl Compared for Desired {
    fn origin(&self) -> Location {
        self.origin.clone()
    }
    fn removed(&self) -> (Vec<String>, bool) {
        (Vec::new(), self.protected)
    }
    fn changed(b: &Self, h: &Self) -> Option<(Vec<String>, bool)> {
        let mut details: Vec<String> = attr_diff(&b.attrs, &h.attrs)
            .into_iter()
            .map(|d| format!("{}: {} → {}", d.path, show(&d.before), show(&d.after)))
            .collect();
        if b.protected != h.protected {
            details.push(format!("protected: {} → {}", b.protected, h.protected));
        }
        (!details.is_empty()).then_some((details, b.protected && !h.protected))
    }
}

impl Compared for Service {
    fn origin(&self) -> Location {
        self.origin.clone()
    }
    fn removed(&self) -> (Vec<String>, bool) {
        (Vec::new(), self.protected)
    }
    fn changed(b: &Self, h: &Self) -> Option<(Vec<String>, bool)> {
        described(&field_changes(&service_doc(b), &service_doc(h)), loosens)
    }
}

impl Compared for ScalingPolicy {
    fn origin(&self) -> Location {
        self.origin.clone()
    }
    /// Without its policy, a service's cost cap goes too.
    fn removed(&self) -> (Vec<String>, bool) {
        (Vec::new(), self.cost.is_some())
    }
    fn changed(b: &Self, h: &Self) -> Option<(Vec<String>, bool)> {
        described(
            &field_changes(&scaling_doc(b), &scaling_doc(h)),
            |k, before, after| {
                // A cost cap removed or raised.
                k == "cost.max_per_hour"
                    && before.as_ref().is_some_and(|v| !v.is_null())
                    && (after.as_ref().is_none_or(Value::is_null)
                        || after.as_ref().and_then(Value::as_f64)
                            > before.as_ref().and_then(Value::as_f64))
            },
        )
    }
}

impl Compared for Rule {
    fn origin(&self) -> Location {
        self.origin.clone()
    }
    fn removed(&self) -> (Vec<String>, bool) {
        (vec![format!("was in {}", self.source)], true)
    }
    fn changed(b: &Self, h: &Self) -> Option<(Vec<String>, bool)> {
        // Lower severity or enforcement, or any change to what the rule checks (which cairn
        // cannot judge), may let through what it caught.
        let lowered = h.enforcement < b.enforcement || h.severity < b.severity;
        described(&field_changes(&rule_doc(b), &rule_doc(h)), |k, _, _| {
            lowered || matches!(k, "when" | "require" | "applies_to")
        })
    }
}

impl Compared for Waiver {
    fn origin(&self) -> Location {
        self.origin.clone()
    }
    fn added(&self) -> (Vec<String>, bool) {
        (waiver_terms(self), true)
    }
    /// Changed terms are listed; a later expiry loosens.
    fn changed(b: &Self, h: &Self) -> Option<(Vec<String>, bool)> {
        let (x, y) = (waiver_terms(b), waiver_terms(h));
        let details: Vec<String> = x
            .iter()
            .zip(&y)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("{a} → {}", b.split_once(": ").map_or("", |p| p.1)))
            .collect();
        (!details.is_empty()).then_some((details, h.expires > b.expires))
    }
}

fn waiver_terms(w: &Waiver) -> Vec<String> {
    vec![
        format!("reason: {}", w.reason),
        format!("approver: {}", w.approver),
        format!("expires: {}", w.expires),
    ]
}
