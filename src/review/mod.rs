//! `cairn review`: a change to a stack between two git revisions, as a reviewer needs it —
//! the semantic diff of declarations and policies, the plan, and the policy findings the
//! change introduces.

mod diff;
pub mod format;
pub mod git;

use std::collections::HashMap;
use std::path::Path;

pub use diff::{Change, Kind, Section, Side, semantic};

use crate::config;
use crate::diag::{Diag, Location};
use crate::plan::Plan;
use crate::policy::{self, Enforcement, Finding, Options, Severity};

/// Rule IDs of what review itself reports about policy changes.
pub const WEAKENED: &str = "CAIRN-POLICY-WEAKENED";
pub const WAIVER_ADDED: &str = "CAIRN-WAIVER-ADDED";

/// Everything a review reports.
pub struct Report {
    pub stack: String,
    pub environment: String,
    pub base: Revision,
    pub head: Revision,
    pub changes: Vec<Change>,
    pub plan: Option<Plan>,
    /// Why there is no plan, when there is none.
    pub plan_note: Option<String>,
    /// The findings reported: those new at HEAD, or all of them with `--all`.
    pub findings: Vec<Reported>,
    /// Whether `findings` holds every finding at HEAD.
    pub all: bool,
    /// Findings at HEAD that were already at the base (not failing the review).
    pub unchanged: usize,
    /// Waiver and enforcement notes at HEAD.
    pub notes: Vec<Diag>,
}

pub struct Revision {
    pub rev: String,
    pub commit: String,
    /// False when the stack does not exist (or does not compile) at this revision.
    pub present: bool,
}

pub struct Reported {
    pub finding: Finding,
    /// Absent at the base revision, or blocking now where it did not block there.
    pub new: bool,
}

impl Report {
    /// New findings that would stop an apply: these fail the review.
    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|r| r.new && r.finding.blocks())
            .map(|r| &r.finding)
    }
}

/// Compiles one revision's snapshot: the stack and the policies in force for it.
pub fn side(
    snap: git::Snapshot,
    dir: &Path,
    env: Option<&str>,
) -> Result<(Side, Vec<Diag>), Vec<Diag>> {
    if snap.stack.is_empty() {
        return Err(vec![Diag::error(
            "review::missing",
            "the stack has no .toml files at this revision",
        )]);
    }
    let (stack, warnings) = config::compile_files(snap.stack, dir, env)?;
    let frameworks: Vec<&str> = stack
        .compliance
        .frameworks
        .iter()
        .map(|f| f.as_str())
        .collect();
    let policies = policy::load_files(&frameworks, snap.policies)?;
    Ok((Side { stack, policies }, warnings))
}

/// What review decides, given both sides (the base may be absent) and HEAD's plan.
pub struct Inputs<'a> {
    pub base: Option<&'a Side>,
    pub head: &'a Side,
    pub plan: Option<&'a Plan>,
    pub all: bool,
    pub opts: &'a Options,
}

pub struct Findings {
    pub reported: Vec<Reported>,
    pub unchanged: usize,
    pub notes: Vec<Diag>,
}

/// Evaluates both revisions and keeps the findings HEAD adds (or all, marked new or not).
/// Policy weakening and new waivers found by the diff are reported as findings too.
pub fn findings(i: &Inputs<'_>, changes: &[Change]) -> Result<Findings, Vec<Diag>> {
    let head = policy::evaluate(&i.head.policies, &i.head.stack, i.plan, i.opts)?;
    // (rule, resource) → whether it blocked at the base.
    let at_base: HashMap<(String, String), bool> = match i.base {
        // A base whose policies cannot be evaluated is treated as having none.
        Some(b) => policy::evaluate(&b.policies, &b.stack, None, i.opts)
            .map(|e| {
                e.findings
                    .iter()
                    .map(|f| ((f.rule.clone(), f.resource.clone()), f.blocks()))
                    .collect()
            })
            .unwrap_or_default(),
        None => HashMap::new(),
    };
    let mut reported = Vec::new();
    let mut unchanged = 0;
    for f in head.findings {
        // New: absent at the base, or blocking now where it did not (a waiver removed, a
        // level raised).
        let new = match at_base.get(&(f.rule.clone(), f.resource.clone())) {
            None => true,
            Some(blocked) => f.blocks() && !blocked,
        };
        if !new {
            unchanged += 1;
        }
        if new || i.all {
            reported.push(Reported { finding: f, new });
        }
    }
    for c in changes.iter().filter(|c| c.weakens) {
        if let Some(f) = change_finding(c) {
            reported.push(Reported {
                finding: f,
                new: true,
            });
        }
    }
    reported.sort_by(|a, b| {
        let key = |r: &Reported| {
            (
                std::cmp::Reverse(r.finding.blocks()),
                r.finding.waiver.is_some(),
                std::cmp::Reverse(r.finding.severity),
                r.finding.file.clone(),
                r.finding.line,
                r.finding.rule.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(Findings {
        reported,
        unchanged,
        notes: head.notes,
    })
}

/// A weakening change as an advisory finding, so every output format calls it out.
fn change_finding(c: &Change) -> Option<Finding> {
    let at: &Location = c.location.as_ref()?;
    let (rule, title, fix) = match (c.section, c.kind) {
        (Section::Waiver, Kind::Added) => (
            WAIVER_ADDED,
            "Waiver added",
            "a reviewer with compliance authority should approve the waiver's reason and expiry",
        ),
        (Section::Waiver, _) => (
            WAIVER_ADDED,
            "Waiver extended",
            "a reviewer with compliance authority should approve the waiver's reason and expiry",
        ),
        (_, Kind::Removed) => (
            WEAKENED,
            "Removed, loosening a compliance control",
            "a reviewer with compliance authority should confirm the control may be loosened",
        ),
        _ => (
            WEAKENED,
            "Changed in a way that loosens a compliance control",
            "a reviewer with compliance authority should confirm the control may be loosened",
        ),
    };
    let (line, column) = at.line_col();
    let (end_line, end_column) = at.end_line_col();
    let mut title = title.to_string();
    if !c.details.is_empty() {
        title = format!("{title} ({})", c.details.join("; "));
    }
    Some(Finding {
        rule: rule.into(),
        title,
        severity: Severity::Medium,
        enforcement: Enforcement::Advisory,
        controls: Vec::new(),
        resource: c.subject.clone(),
        fix: fix.into(),
        file: at.file.name.clone(),
        line,
        column,
        end_line,
        end_column,
        waiver: None,
        location: Some(at.clone()),
    })
}
