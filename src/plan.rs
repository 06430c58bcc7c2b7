//! Planning: diff desired (Stack) against live (providers) and recorded (State).
//!
//! A `Plan` is a value: the changes, the state lineage and serial it was computed from, and a
//! digest of the live state. Saved to a file, it applies later only if neither moved.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{Desired, Stack};
use crate::diag::Diag;
use crate::model::{Address, Attrs, Cloud, ProviderKind, ProviderRef};
use crate::provider::LiveResource;
use crate::state::{State, StateResource};

pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
    fn phrase(self) -> &'static str {
        match self {
            Action::Create => "will be created",
            Action::Update => "will be updated in place",
            Action::Replace => "must be replaced",
            Action::Delete => "will be destroyed",
        }
    }
    pub fn past(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Update => "updated",
            Action::Replace => "replaced",
            Action::Delete => "destroyed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedChange {
    pub address: Address,
    pub provider: ProviderRef,
    pub action: Action,
    /// Provider ID of the live object (update, replace, delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub before: Option<Attrs>,
    pub after: Option<Attrs>,
    /// Attribute-level differences (update and replace).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub diff: Vec<AttrDiff>,
    /// Why, when it is not simply the configuration: drift, replacement cause, leftovers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub depends_on: Vec<Address>,
    /// Declared (or, for a deletion, last recorded as) protected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrDiff {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// State bookkeeping with no cloud call: record what exists and is ours, forget what is gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "fix", rename_all = "snake_case")]
pub enum StateFix {
    Record {
        address: Address,
        resource: Box<StateResource>,
        reason: String,
    },
    Forget {
        address: Address,
        reason: String,
    },
}

impl StateFix {
    pub fn address(&self) -> &Address {
        match self {
            StateFix::Record { address, .. } | StateFix::Forget { address, .. } => address,
        }
    }
}

/// Where the plan applies: recorded so a saved plan needs no configuration to apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub stack_dir: PathBuf,
    /// The stack's local files (the state itself with the local backend; the audit log).
    pub state_dir: PathBuf,
    /// The state when it is not in `state_dir` (the postgres backend). A connection string
    /// taken from the environment is not saved: it is read again where the plan is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<crate::state::Location>,
    pub sandbox_dir: PathBuf,
    pub clouds: BTreeMap<Cloud, ProviderKind>,
    /// What refresh lists; a saved plan re-lists the same to check nothing moved.
    pub scope: crate::provider::Scope,
    /// Settings of the real providers in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<crate::config::AwsSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<crate::config::AzureSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<crate::config::GcpSettings>,
}

impl Target {
    /// Where the state is.
    pub fn location(&self) -> crate::state::Location {
        self.state
            .clone()
            .unwrap_or_else(|| crate::state::Location::Local {
                dir: self.state_dir.clone(),
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub cairn_version: String,
    pub stack: String,
    pub environment: String,
    pub created_at: jiff::Timestamp,
    pub destroy: bool,
    pub lineage: String,
    pub state_serial: u64,
    pub live_digest: String,
    pub config_digest: String,
    pub target: Target,
    pub changes: Vec<PlannedChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_fixes: Vec<StateFix>,
    pub summary: Summary,
    /// Policy findings on the stack and these changes; a saved plan keeps them, so applying
    /// it enforces what was reviewed.
    #[serde(default)]
    pub findings: Vec<crate::policy::Finding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub state_fixes: usize,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || !self.state_fixes.is_empty()
    }
}

/// Restricts a plan to some addresses: `--target` keeps them and what they depend on;
/// `--exclude` drops them and what depends on them. A trailing `*` matches a prefix.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub targets: Vec<String>,
    pub excludes: Vec<String>,
}

impl Filter {
    fn matches(patterns: &[String], a: &Address) -> bool {
        let s = a.to_string();
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => s.starts_with(prefix),
            None => *p == s,
        })
    }
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.excludes.is_empty()
    }
}

pub struct PlanInput<'a> {
    pub stack: &'a Stack,
    pub live: &'a [LiveResource],
    pub state: &'a State,
    pub state_serial: u64,
    pub destroy: bool,
    pub filter: &'a Filter,
    pub target: Target,
}

/// Computes the plan. Errors (e.g. a declared resource that exists but belongs to someone
/// else) come back as diagnostics pointing at the declaration.
pub fn plan(input: PlanInput<'_>) -> Result<Plan, Vec<Diag>> {
    let PlanInput {
        stack,
        live,
        state,
        state_serial,
        destroy,
        filter,
        target,
    } = input;
    let lineage = if state.lineage.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        state.lineage.clone()
    };
    let live_by_addr: HashMap<Address, &LiveResource> =
        live.iter().map(|l| (l.address(), l)).collect();
    let desired: &[Desired] = if destroy { &[] } else { &stack.resources };
    let desired_set: HashSet<&Address> = desired.iter().map(|d| &d.address).collect();
    let owned = |addr: &Address, l: &LiveResource| {
        l.owner.as_deref() == Some(lineage.as_str())
            || state.owns(addr, &l.id, |intended| {
                l.attrs_against(intended) == *intended
            })
    };

    let mut changes = Vec::new();
    let mut fixes = Vec::new();
    let mut errors = Vec::new();
    let mut unchanged = 0;

    for d in desired {
        let deps: Vec<Address> = d.depends_on.iter().map(|x| x.address.clone()).collect();
        let recorded = state.resources.get(&d.address);
        // What the cloud cannot keep (see `LiveResource::attrs_against`) is the declaration's.
        let live = live_by_addr
            .get(&d.address)
            .map(|l| (*l, l.attrs_against(&d.attrs)));
        match &live {
            // An existing zone or group nobody owns: creating it adopts it.
            Some((l, live)) if l.adoptable && !owned(&d.address, l) => {
                changes.push(PlannedChange {
                    address: d.address.clone(),
                    provider: l.provider,
                    action: Action::Create,
                    id: Some(l.id.clone()),
                    diff: attr_diff(live, &d.attrs),
                    before: Some(live.clone()),
                    after: Some(d.attrs.clone()),
                    reason: Some("adopts the existing one".into()),
                    depends_on: deps,
                    protected: d.protected,
                })
            }
            // Another stack's: importing it here would only make two owners.
            Some((l, _)) if !owned(&d.address, l) && l.owner.is_some() => errors.push(
                Diag::error(
                    "plan::not_owned",
                    format!(
                        "{} exists in {} and is managed by another stack (owner {})",
                        d.address,
                        l.provider,
                        l.owner.as_deref().unwrap_or_default()
                    ),
                )
                .at(d.origin.clone(), "declared here")
                .help(format!(
                    "a resource has one owner: remove it from the other stack (`cairn state rm {}` there), then run: cairn import {} {}",
                    d.address, d.address, l.id
                )),
            ),
            Some((l, _)) if !owned(&d.address, l) => errors.push(
                Diag::error(
                    "plan::not_owned",
                    format!(
                        "{} already exists in {} and is not managed by this stack",
                        d.address, l.provider
                    ),
                )
                .at(d.origin.clone(), "declared here")
                .help(format!(
                    "to manage it, run: cairn import {} {}",
                    d.address, l.id
                )),
            ),
            Some((l, live)) => {
                if recorded.is_none() {
                    fixes.push(StateFix::Record {
                        address: d.address.clone(),
                        resource: Box::new(StateResource {
                            provider: l.provider,
                            id: l.id.clone(),
                            attrs: live.clone(),
                            depends_on: deps.clone(),
                            protected: d.protected,
                        }),
                        reason: "created by an interrupted apply".into(),
                    });
                } else if let Some(r) = recorded.filter(|r| r.protected != d.protected) {
                    // Protection is kept in the state so that it outlives the declaration.
                    fixes.push(StateFix::Record {
                        address: d.address.clone(),
                        resource: Box::new(StateResource {
                            protected: d.protected,
                            ..r.clone()
                        }),
                        reason: if d.protected {
                            "now protected"
                        } else {
                            "no longer protected"
                        }
                        .into(),
                    });
                }
                let want = d.attrs.with_observed(live);
                if *live == want {
                    unchanged += 1;
                    continue;
                }
                let drift = recorded.is_some_and(|r| r.attrs.with_observed(live) == want);
                let (action, reason) = match live.forces_replacement(&want) {
                    Some(attr) => (Action::Replace, Some(format!("{attr} forces replacement"))),
                    None => (
                        Action::Update,
                        drift.then(|| "changed outside cairn".to_string()),
                    ),
                };
                changes.push(PlannedChange {
                    address: d.address.clone(),
                    provider: l.provider,
                    action,
                    id: Some(l.id.clone()),
                    diff: attr_diff(live, &want),
                    before: Some(live.clone()),
                    after: Some(want.clone()),
                    reason,
                    depends_on: deps,
                    protected: d.protected,
                });
            }
            None => changes.push(PlannedChange {
                address: d.address.clone(),
                provider: d.provider,
                action: Action::Create,
                id: None,
                before: None,
                after: Some(d.attrs.clone()),
                diff: Vec::new(),
                reason: recorded.map(|_| "deleted outside cairn".to_string()),
                depends_on: deps,
                protected: d.protected,
            }),
        }
    }

    // Recorded but no longer declared: delete if it still exists, else just forget it.
    for (addr, r) in &state.resources {
        if desired_set.contains(addr) {
            continue;
        }
        match live_by_addr.get(addr) {
            Some(l) if l.id == r.id => {
                let mut change = delete(addr, l, r.depends_on.clone(), None);
                change.protected = r.protected;
                changes.push(change);
            }
            _ => fixes.push(StateFix::Forget {
                address: addr.clone(),
                reason: "no longer exists".into(),
            }),
        }
    }
    // Ours (by marker) yet neither declared nor recorded: left by an interrupted apply.
    for l in live {
        let addr = l.address();
        if owned(&addr, l) && !desired_set.contains(&addr) && !state.resources.contains_key(&addr) {
            changes.push(delete(
                &addr,
                l,
                Vec::new(),
                Some("left over by an interrupted apply".into()),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    if !filter.is_empty() {
        apply_filter(filter, desired, state, &mut changes, &mut fixes);
    }
    changes.sort_by(|a, b| a.address.cmp(&b.address));
    let mut summary = Summary {
        unchanged,
        state_fixes: fixes.len(),
        ..Summary::default()
    };
    for c in &changes {
        match c.action {
            Action::Create => summary.create += 1,
            Action::Update => summary.update += 1,
            Action::Replace => summary.replace += 1,
            Action::Delete => summary.delete += 1,
        }
    }
    Ok(Plan {
        format_version: FORMAT_VERSION.into(),
        cairn_version: env!("CARGO_PKG_VERSION").into(),
        stack: stack.name.clone(),
        environment: stack.environment.clone(),
        created_at: jiff::Timestamp::now(),
        destroy,
        lineage,
        state_serial,
        live_digest: live_digest(live),
        config_digest: config_digest(stack),
        target,
        changes,
        state_fixes: fixes,
        summary,
        findings: Vec::new(),
    })
}

fn delete(
    addr: &Address,
    l: &LiveResource,
    depends_on: Vec<Address>,
    reason: Option<String>,
) -> PlannedChange {
    PlannedChange {
        address: addr.clone(),
        provider: l.provider,
        action: Action::Delete,
        id: Some(l.id.clone()),
        before: Some(l.attrs.clone()),
        after: None,
        diff: Vec::new(),
        reason,
        depends_on,
        protected: false,
    }
}

fn apply_filter(
    filter: &Filter,
    desired: &[Desired],
    state: &State,
    changes: &mut Vec<PlannedChange>,
    fixes: &mut Vec<StateFix>,
) {
    let mut deps: HashMap<&Address, Vec<&Address>> = HashMap::new();
    for (a, r) in &state.resources {
        deps.insert(a, r.depends_on.iter().collect());
    }
    for d in desired {
        deps.insert(
            &d.address,
            d.depends_on.iter().map(|x| &x.address).collect(),
        );
    }
    let all: Vec<&Address> = changes
        .iter()
        .map(|c| &c.address)
        .chain(fixes.iter().map(StateFix::address))
        .collect();
    let mut keep: BTreeSet<Address> = all.iter().map(|a| (*a).clone()).collect();
    if !filter.targets.is_empty() {
        // Targets plus everything they (transitively) depend on.
        let mut stack: Vec<&Address> = all
            .iter()
            .copied()
            .filter(|a| Filter::matches(&filter.targets, a))
            .collect();
        let mut reach: HashSet<&Address> = HashSet::new();
        while let Some(a) = stack.pop() {
            if reach.insert(a) {
                stack.extend(deps.get(a).into_iter().flatten().copied());
            }
        }
        keep.retain(|a| reach.contains(a));
    }
    if !filter.excludes.is_empty() {
        // Excluded addresses plus everything that (transitively) depends on them.
        let mut dependents: HashMap<&Address, Vec<&Address>> = HashMap::new();
        for (a, ds) in &deps {
            for d in ds {
                dependents.entry(*d).or_default().push(a);
            }
        }
        let mut stack: Vec<&Address> = deps
            .keys()
            .copied()
            .chain(all.iter().copied())
            .filter(|a| Filter::matches(&filter.excludes, a))
            .collect();
        let mut gone: HashSet<&Address> = HashSet::new();
        while let Some(a) = stack.pop() {
            if gone.insert(a) {
                stack.extend(dependents.get(a).into_iter().flatten().copied());
            }
        }
        keep.retain(|a| !gone.contains(a));
    }
    changes.retain(|c| keep.contains(&c.address));
    fixes.retain(|f| keep.contains(f.address()));
}

/// Flattens attributes to `path = value` leaves and lists the ones that differ.
pub fn attr_diff(before: &Attrs, after: &Attrs) -> Vec<AttrDiff> {
    let b = flatten(before);
    let a = flatten(after);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| AttrDiff {
            path: k.clone(),
            before: b.get(k).cloned(),
            after: a.get(k).cloned(),
        })
        .collect()
}

pub fn flatten(attrs: &Attrs) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            Value::Null => {}
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    let v = serde_json::to_value(attrs).unwrap_or(Value::Null);
    walk("", &v, &mut out);
    out.remove("kind");
    out
}

pub fn live_digest(live: &[LiveResource]) -> String {
    let mut sorted: Vec<&LiveResource> = live.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut h = Sha256::new();
    for l in sorted {
        h.update(serde_json::to_vec(l).unwrap_or_default());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

fn config_digest(stack: &Stack) -> String {
    let mut h = Sha256::new();
    for f in &stack.files {
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Terminal rendering in the style users know from Terraform.
pub fn render(plan: &Plan, color: bool) -> String {
    let style = |action: Action| {
        let s = console::Style::new().force_styling(color);
        match action {
            Action::Create => s.green(),
            Action::Update => s.yellow(),
            Action::Replace => s.magenta(),
            Action::Delete => s.red(),
        }
    };
    let bold = console::Style::new().force_styling(color).bold();
    let mut out = String::new();
    if !plan.has_changes() {
        let _ = writeln!(
            out,
            "{} Live resources match the configuration ({} unchanged).",
            bold.apply_to("No changes."),
            plan.summary.unchanged
        );
        return out;
    }
    if !plan.changes.is_empty() {
        out.push_str("cairn will perform the following actions:\n");
    }
    for c in &plan.changes {
        let st = style(c.action);
        let why = c
            .reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n  # {} {}{why}",
            bold.apply_to(&c.address),
            c.action.phrase()
        );
        let _ = writeln!(
            out,
            "{} {} ({})",
            st.apply_to(format!("{:>3}", c.action.symbol())),
            c.address,
            c.provider
        );
        match c.action {
            Action::Create => {
                let attrs = c.after.as_ref().map(flatten).unwrap_or_default();
                let width = attrs.keys().map(String::len).max().unwrap_or(0);
                for (k, v) in attrs {
                    let _ = writeln!(out, "        {} {k:<width$} = {v}", st.apply_to("+"));
                }
            }
            Action::Update | Action::Replace => {
                let width = c.diff.iter().map(|d| d.path.len()).max().unwrap_or(0);
                for d in &c.diff {
                    let (sym, text) = match (&d.before, &d.after) {
                        (Some(b), Some(a)) => ("~", format!("{b} -> {a}")),
                        (None, Some(a)) => ("+", a.to_string()),
                        (Some(b), None) => ("-", format!("{b} -> null")),
                        (None, None) => continue,
                    };
                    let _ = writeln!(
                        out,
                        "        {} {:<width$} = {text}",
                        style(match sym {
                            "+" => Action::Create,
                            "-" => Action::Delete,
                            _ => Action::Update,
                        })
                        .apply_to(sym),
                        d.path
                    );
                }
            }
            Action::Delete => {}
        }
    }
    if !plan.state_fixes.is_empty() {
        out.push_str("\nState only (no cloud changes):\n");
        for f in &plan.state_fixes {
            let _ = match f {
                StateFix::Record {
                    address, reason, ..
                } => writeln!(
                    out,
                    "  # {address} exists ({reason}): it will be recorded in state"
                ),
                StateFix::Forget { address, reason } => {
                    writeln!(out, "  # {address} {reason}: it will be removed from state")
                }
            };
        }
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\n{} {} to add, {} to change, {} to replace, {} to destroy.",
        bold.apply_to("Plan:"),
        s.create,
        s.update,
        s.replace,
        s.delete
    );
    out
}
