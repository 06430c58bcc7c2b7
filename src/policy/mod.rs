//! Compliance policies: rules in TOML with conditions in CEL, evaluated on the compiled stack
//! and the plan; findings point at the offending declaration.
//!
//! Built-in packs (`policies/*.toml`, compiled in) are selected by `[compliance] frameworks`;
//! a stack adds its own rules and waivers in its `policies/` directory. CEL (Common Expression
//! Language) is small, side-effect free and always terminates, so rules cannot run code.

mod load;
mod subject;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::config::raw::Enforcement;
pub use load::{BUILTIN_PACKS, builtin, load_files, read_policy_dir};
pub use subject::{SubjectKind, is_production};

use crate::config::Stack;
use crate::diag::{Diag, Location};
use crate::plan::Plan;

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
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Advisory => "advisory",
            Enforcement::Soft => "soft-mandatory",
            Enforcement::Hard => "hard-mandatory",
        }
    }
}

/// A compiled CEL expression and where it is written.
#[derive(Clone)]
pub struct Condition {
    pub text: String,
    program: std::sync::Arc<cel::Program>,
    pub at: Location,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub enforcement: Enforcement,
    /// Framework controls, e.g. `SOC2 CC6.7`, `HIPAA 164.312(e)(1)`.
    pub controls: Vec<String>,
    pub applies_to: SubjectKind,
    /// Which subjects the rule checks (all when absent).
    pub when: Option<Condition>,
    /// What a compliant subject satisfies.
    pub require: Condition,
    pub fix: String,
    /// The file the rule is written in (`<builtin>/policies/soc2.toml` for built-in packs).
    pub source: String,
    /// The `[[rule]]` table.
    pub origin: Location,
}

#[derive(Debug, Clone)]
pub struct Waiver {
    /// Rule ID; a trailing `*` matches a prefix.
    pub rule: String,
    /// Resource (address, `service.NAME`, ...); a trailing `*` matches a prefix.
    pub resource: String,
    pub reason: String,
    pub approver: String,
    /// The last day the waiver applies.
    pub expires: jiff::civil::Date,
    pub origin: Location,
}

impl Waiver {
    fn matches(&self, rule: &str, resource: &str) -> bool {
        glob(&self.rule, rule) && glob(&self.resource, resource)
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => s.starts_with(prefix),
        None => pattern == s,
    }
}

/// The rules and waivers in force for one stack.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub rules: Vec<Rule>,
    pub waivers: Vec<Waiver>,
    /// Warnings from reading the policy files (e.g. a waiver naming no rule).
    pub warnings: Vec<Diag>,
}

/// The waiver that excused a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaiverUse {
    pub reason: String,
    pub approver: String,
    pub expires: jiff::civil::Date,
    /// `file:line` of the waiver.
    pub at: String,
}

/// One rule not met by one subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    /// Effective enforcement (the stack's `[compliance.enforcement]` wins over the rule's).
    pub enforcement: Enforcement,
    pub controls: Vec<String>,
    /// The address (or `service.NAME`, `scaling.NAME`, `stack.NAME`) that fails the rule.
    pub resource: String,
    pub fix: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<WaiverUse>,
    /// For rendering; not kept in saved plans.
    #[serde(skip)]
    pub location: Option<Location>,
}

impl Finding {
    /// Whether the finding stops an apply (unless overridden, for soft-mandatory ones).
    pub fn blocks(&self) -> bool {
        self.waiver.is_none() && self.enforcement != Enforcement::Advisory
    }

    /// The finding as a diagnostic: blocking ones are errors, the others warnings.
    pub fn to_diag(&self) -> Diag {
        let message = format!("{}: {}", self.resource, self.title);
        let mut d = if self.blocks() {
            Diag::error(self.rule.clone(), message)
        } else {
            Diag::warning(self.rule.clone(), message)
        };
        let label = match &self.waiver {
            Some(w) => format!("waived until {} by {} ({})", w.expires, w.approver, w.at),
            None => {
                let mut l = format!(
                    "{} · {} severity",
                    self.enforcement.as_str(),
                    self.severity.as_str()
                );
                if !self.controls.is_empty() {
                    l = format!("{l} · {}", self.controls.join(", "));
                }
                l
            }
        };
        if let Some(loc) = &self.location {
            d = d.at(loc.clone(), label);
        } else {
            d.label = label;
        }
        d.help(self.fix.clone())
    }
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct Options {
    /// False with `--no-waivers`: audit as if none were written.
    pub use_waivers: bool,
    pub today: jiff::civil::Date,
}

impl Options {
    pub fn new(use_waivers: bool) -> Options {
        Options {
            use_waivers,
            today: jiff::Timestamp::now()
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .date(),
        }
    }
}

/// The result of checking a stack (and plan) against its policies.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    /// Expired, unused or misdirected waivers and enforcement settings: warnings to show.
    pub notes: Vec<Diag>,
}

impl Evaluation {
    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.blocks())
    }
}

/// What one subject gave: its findings, and errors by rule index.
type SubjectResult = (Vec<Finding>, Vec<(usize, Diag)>);

/// Checks every rule against every subject it applies to. A condition that cannot be
/// evaluated (a type error, an unknown field) is an error: policies fail closed.
pub fn evaluate(
    policies: &Policies,
    stack: &Stack,
    plan: Option<&Plan>,
    opts: &Options,
) -> Result<Evaluation, Vec<Diag>> {
    let mut kinds: Vec<SubjectKind> = policies.rules.iter().map(|r| r.applies_to).collect();
    kinds.sort();
    kinds.dedup();
    let subjects = subject::subjects(stack, plan, &kinds);
    let stack_doc = to_cel(&subject::stack_doc(stack));
    // Subjects outside, rules inside: a subject's document is converted for CEL once, however
    // many rules read it. Each thread keeps one root context holding `stack`.
    let results: Vec<SubjectResult> = subjects
        .par_iter()
        .map_init(
            || {
                let mut root = cel::Context::default();
                root.add_variable_from_value("stack", stack_doc.clone());
                root
            },
            |root, s| {
                let mut ctx = root.new_inner_scope();
                for (name, value) in &s.vars {
                    ctx.add_variable_from_value(*name, to_cel(value));
                }
                let mut found = Vec::new();
                let mut errors = Vec::new();
                let rules = policies.rules.iter().enumerate();
                for (i, rule) in rules.filter(|(_, r)| r.applies_to == s.kind) {
                    let verdict = match &rule.when {
                        Some(c) => check(rule, c, &ctx, &s.resource),
                        None => Ok(true),
                    }
                    .and_then(|applies| {
                        Ok(applies && !check(rule, &rule.require, &ctx, &s.resource)?)
                    });
                    match verdict {
                        Ok(true) => found.push(finding(rule, stack, &s.resource, &s.origin)),
                        Ok(false) => {}
                        Err(d) => errors.push((i, d)),
                    }
                }
                (found, errors)
            },
        )
        .collect();
    let mut findings = Vec::new();
    // One error per rule is enough: the same condition fails the same way on every subject.
    let mut errors: BTreeMap<usize, Diag> = BTreeMap::new();
    for (found, errs) in results {
        findings.extend(found);
        for (i, d) in errs {
            errors.entry(i).or_insert(d);
        }
    }
    if !errors.is_empty() {
        return Err(errors.into_values().collect());
    }
    let mut notes = policies.warnings.clone();
    notes.extend(enforcement_notes(policies, stack));
    notes.extend(apply_waivers(policies, opts, &mut findings));
    // Most severe first: blocking, then unwaived, then by severity; then by place.
    findings.sort_by(|a, b| {
        let key = |f: &Finding| {
            (
                std::cmp::Reverse(f.blocks()),
                f.waiver.is_some(),
                std::cmp::Reverse(f.severity),
                f.file.clone(),
                f.line,
                f.rule.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(Evaluation { findings, notes })
}

fn to_cel(v: &serde_json::Value) -> cel::Value {
    use cel::objects::TryIntoValue;
    v.try_into_value()
        .expect("JSON documents convert to CEL values")
}

fn check(rule: &Rule, c: &Condition, ctx: &cel::Context, resource: &str) -> Result<bool, Diag> {
    match c.program.execute(ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(Diag::error(
            "policy::eval",
            format!(
                "rule {} does not give true or false for {resource}: it gives {other:?}",
                rule.id
            ),
        )
        .at(c.at.clone(), "this condition")),
        Err(e) => Err(Diag::error(
            "policy::eval",
            format!("rule {} cannot be evaluated for {resource}: {e}", rule.id),
        )
        .at(c.at.clone(), "this condition")
        .help("docs/policies.md lists the fields each kind of subject has")),
    }
}

fn finding(rule: &Rule, stack: &Stack, resource: &str, at: &Location) -> Finding {
    let (line, column) = at.line_col();
    let (end_line, end_column) = at.end_line_col();
    Finding {
        rule: rule.id.clone(),
        title: rule.title.clone(),
        severity: rule.severity,
        enforcement: stack
            .compliance
            .enforcement
            .get(&rule.id)
            .map_or(rule.enforcement, |(e, _)| *e),
        controls: rule.controls.clone(),
        resource: resource.to_string(),
        fix: rule.fix.clone(),
        file: at.file.name.clone(),
        line,
        column,
        end_line,
        end_column,
        waiver: None,
        location: Some(at.clone()),
    }
}

/// `[compliance.enforcement]` entries naming no loaded rule are probably typos.
fn enforcement_notes(policies: &Policies, stack: &Stack) -> Vec<Diag> {
    let ids: Vec<&str> = policies.rules.iter().map(|r| r.id.as_str()).collect();
    stack
        .compliance
        .enforcement
        .iter()
        .filter(|(id, _)| !ids.contains(&id.as_str()))
        .map(|(id, (_, at))| {
            let d = Diag::warning(
                "policy::unknown_rule",
                format!("[compliance.enforcement] names `{id}`, which is not a loaded rule"),
            )
            .at(at.clone(), "no such rule");
            match crate::config::suggest(id, &ids) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help("`cairn policy list` shows the rules in force"),
            }
        })
        .collect()
}

/// Marks waived findings; reports expired waivers and waivers that excuse nothing.
fn apply_waivers(policies: &Policies, opts: &Options, findings: &mut [Finding]) -> Vec<Diag> {
    let mut notes = Vec::new();
    if !opts.use_waivers {
        return notes;
    }
    let mut used: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, w) in policies.waivers.iter().enumerate() {
        let matching = findings
            .iter_mut()
            .filter(|f| w.matches(&f.rule, &f.resource));
        if w.expires < opts.today {
            let n = matching.count();
            notes.push(
                Diag::warning(
                    "policy::waiver_expired",
                    format!(
                        "waiver of {} for {} expired on {}{}",
                        w.rule,
                        w.resource,
                        w.expires,
                        if n > 0 {
                            format!(": {n} finding{} no longer waived", crate::diag::plural(n))
                        } else {
                            String::new()
                        }
                    ),
                )
                .at(w.origin.clone(), "expired")
                .help("fix the findings, or renew the waiver with a new expiry and approver"),
            );
            continue;
        }
        for f in matching {
            if f.waiver.is_none() {
                let (line, _) = w.origin.line_col();
                f.waiver = Some(WaiverUse {
                    reason: w.reason.clone(),
                    approver: w.approver.clone(),
                    expires: w.expires,
                    at: format!("{}:{line}", w.origin.file.name),
                });
                *used.entry(i).or_default() += 1;
            }
        }
    }
    for (i, w) in policies.waivers.iter().enumerate() {
        if w.expires >= opts.today && !used.contains_key(&i) {
            notes.push(
                Diag::warning(
                    "policy::waiver_unused",
                    format!("waiver of {} for {} excuses no finding", w.rule, w.resource),
                )
                .at(w.origin.clone(), "matches nothing")
                .help("remove it, or check the rule ID and resource address"),
            );
        }
    }
    notes
}

/// Loads the policies in force for `stack`: the built-in packs its frameworks select and the
/// rules and waivers in its `policies/` directory.
pub fn for_stack(stack: &Stack) -> Result<Policies, Vec<Diag>> {
    let files = read_policy_dir(&stack.dir.join("policies")).map_err(|d| vec![d])?;
    let frameworks: Vec<&str> = stack
        .compliance
        .frameworks
        .iter()
        .map(|f| f.as_str())
        .collect();
    load_files(&frameworks, files)
}
