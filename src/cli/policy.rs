//! Policy enforcement in plan and apply, and `cairn policy list|check`.

use std::fmt::Write as _;

use super::args::{OverrideArgs, PolicyArgs, PolicyCommand};
use super::ui::Ui;
use super::{CmdResult, EXIT_BLOCKED, EXIT_OK, Failure, load};
use crate::audit::Keys;
use crate::config::Stack;
use crate::diag::{self, Diag, Style, plural};
use crate::plan::Plan;
use crate::policy::{self, Enforcement, Finding, Options};

/// Evaluates the stack's policies on the stack and plan; records the findings in the plan.
/// Notes (expired waivers, ...) are printed as warnings.
pub fn evaluate_plan(
    stack: &Stack,
    plan: &mut Plan,
    args: &PolicyArgs,
    ui: &Ui,
) -> Result<(), Failure> {
    let policies = policy::for_stack(stack)?;
    let eval = policy::evaluate(
        &policies,
        stack,
        Some(plan),
        &Options::new(!args.no_waivers),
    )?;
    if !ui.json {
        ui.diagnostics(&eval.notes);
    }
    plan.findings = eval.findings;
    Ok(())
}

/// Findings as diagnostics, then one summary line; empty when there are none.
pub fn render_findings(findings: &[Finding], color: bool) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        return out;
    }
    let style = Style { color, width: 100 };
    out.push('\n');
    for f in findings {
        out.push_str(&diag::render(&f.to_diag(), style));
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary(findings));
    out
}

/// `Policy: 3 findings: 1 hard-mandatory, 2 advisory; 1 waived.`
pub fn summary(findings: &[Finding]) -> String {
    let count = |e: Enforcement| {
        findings
            .iter()
            .filter(|f| f.waiver.is_none() && f.enforcement == e)
            .count()
    };
    let waived = findings.iter().filter(|f| f.waiver.is_some()).count();
    let mut parts = Vec::new();
    for e in [Enforcement::Hard, Enforcement::Soft, Enforcement::Advisory] {
        let n = count(e);
        if n > 0 {
            parts.push(format!("{n} {}", e.as_str()));
        }
    }
    let mut line = format!(
        "Policy: {} finding{}",
        findings.len(),
        plural(findings.len())
    );
    if !parts.is_empty() {
        let _ = write!(line, ": {}", parts.join(", "));
    }
    if waived > 0 {
        let _ = write!(line, "; {waived} waived");
    }
    line.push('.');
    line
}

/// What an apply may proceed with: the soft-mandatory findings the user overrode.
pub struct Gate<'a> {
    pub overridden: Vec<&'a Finding>,
    pub reason: String,
    pub keys: Option<Keys>,
}

/// Refuses an apply with blocking findings: hard-mandatory ones always, soft-mandatory ones
/// unless `--override`n (which needs a reason and an audit key to record it).
pub fn gate<'a>(findings: &'a [Finding], o: &OverrideArgs) -> Result<Gate<'a>, Failure> {
    let overrides: Vec<(&str, Option<&str>)> = o
        .overrides
        .iter()
        .map(|s| match s.split_once('=') {
            Some((rule, resource)) => (rule, Some(resource)),
            None => (s.as_str(), None),
        })
        .collect();
    let covers = |f: &Finding, (rule, resource): &(&str, Option<&str>)| {
        f.rule == *rule && resource.is_none_or(|r| r == f.resource)
    };
    let mut errors = Vec::new();
    for ov in &overrides {
        let matching: Vec<&Finding> = findings.iter().filter(|f| covers(f, ov)).collect();
        let label = match ov.1 {
            Some(r) => format!("{}={r}", ov.0),
            None => ov.0.to_string(),
        };
        if matching.iter().any(|f| f.enforcement == Enforcement::Hard) {
            errors.push(
                Diag::error(
                    "policy::override",
                    format!("--override {label}: the rule is hard-mandatory and cannot be overridden"),
                )
                .help("fix the finding, or add a reviewed waiver to the stack's policies/ (docs/policies.md)"),
            );
        } else if !matching.iter().any(|f| f.blocks()) {
            errors.push(
                Diag::error(
                    "policy::override",
                    format!("--override {label} matches no soft-mandatory finding of this plan"),
                )
                .help("overrides name a finding's rule ID (and optionally its resource) as shown by `cairn plan`"),
            );
        }
    }
    let blocking: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.blocks() && !overrides.iter().any(|ov| covers(f, ov)))
        .collect();
    let hard = blocking
        .iter()
        .filter(|f| f.enforcement == Enforcement::Hard)
        .count();
    let soft = blocking.len() - hard;
    if hard > 0 {
        errors.push(
            Diag::error(
                "policy::blocked",
                format!(
                    "apply blocked by {hard} hard-mandatory policy finding{}",
                    plural(hard)
                ),
            )
            .help("fix the declarations shown above, or add a reviewed waiver to the stack's policies/ (docs/policies.md)"),
        );
    }
    if soft > 0 {
        let first = blocking
            .iter()
            .find(|f| f.enforcement == Enforcement::Soft)
            .expect("a soft finding");
        errors.push(
            Diag::error(
                "policy::blocked",
                format!(
                    "apply blocked by {soft} soft-mandatory policy finding{}",
                    plural(soft)
                ),
            )
            .help(format!(
                "fix them, or override with e.g. --override {} --reason \"…\" (recorded in the audit log)",
                first.rule
            )),
        );
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let overridden: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.blocks() && overrides.iter().any(|ov| covers(f, ov)))
        .collect();
    if overridden.is_empty() {
        return Ok(Gate {
            overridden,
            reason: String::new(),
            keys: None,
        });
    }
    let reason = o
        .reason
        .clone()
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| {
            Failure::from(
                Diag::error("policy::override", "--override needs --reason")
                    .help("say why, e.g. --reason \"incident 4711: restore service first\""),
            )
        })?;
    let keys = super::audit::keys()?.ok_or_else(|| {
        Failure::from(
            Diag::error(
                "policy::override",
                "an override must be recorded in the audit log, and no audit key is set",
            )
            .help("set CAIRN_AUDIT_KEY=ID:SECRET or CAIRN_AUDIT_KEY_FILE (docs/audit.md)"),
        )
    })?;
    Ok(Gate {
        overridden,
        reason,
        keys: Some(keys),
    })
}

/// Appends an audit entry per override and per waiver that excused a finding of `plan`.
pub fn record(gate: &Gate<'_>, plan: &Plan) -> Result<(), Failure> {
    let keys = match &gate.keys {
        Some(k) => Some(k.clone()),
        None => super::audit::keys()?,
    };
    let Some(keys) = keys else { return Ok(()) };
    for f in &gate.overridden {
        super::audit::record_policy(
            &keys,
            plan,
            "override",
            serde_json::json!({
                "rule": f.rule,
                "resource": f.resource,
                "enforcement": f.enforcement,
                "reason": gate.reason,
            }),
        )?;
    }
    for f in plan.findings.iter().filter(|f| f.waiver.is_some()) {
        let w = f.waiver.as_ref().expect("filtered");
        super::audit::record_policy(
            &keys,
            plan,
            "waiver",
            serde_json::json!({
                "rule": f.rule,
                "resource": f.resource,
                "reason": w.reason,
                "approver": w.approver,
                "expires": w.expires,
                "waiver": w.at,
            }),
        )?;
    }
    Ok(())
}

pub fn run(c: PolicyCommand, ui: &Ui) -> CmdResult {
    match c {
        PolicyCommand::List(a) => {
            let (stack, _) = load(&a, ui)?;
            let policies = policy::for_stack(&stack)?;
            if ui.json {
                let rules: Vec<_> = policies
                    .rules
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id,
                            "title": r.title,
                            "severity": r.severity,
                            "enforcement": stack.compliance.enforcement.get(&r.id).map_or(r.enforcement, |(e, _)| *e),
                            "controls": r.controls,
                            "applies_to": r.applies_to,
                            "source": r.source,
                        })
                    })
                    .collect();
                ui.print_json(
                    &serde_json::json!({ "rules": rules, "waivers": policies.waivers.len() }),
                );
                return Ok(EXIT_OK);
            }
            if policies.rules.is_empty() {
                println!(
                    "No rules in force: add frameworks to [compliance] or rules to policies/."
                );
            }
            for r in &policies.rules {
                let enforcement = stack
                    .compliance
                    .enforcement
                    .get(&r.id)
                    .map_or(r.enforcement, |(e, _)| *e);
                println!(
                    "{:<28} {:<8} {:<14} {:<10} {}",
                    r.id,
                    r.severity.as_str(),
                    enforcement.as_str(),
                    r.applies_to.as_str(),
                    r.title
                );
            }
            Ok(EXIT_OK)
        }
        PolicyCommand::Check { stack, policy: p } => {
            let (stack, _) = load(&stack, ui)?;
            let policies = policy::for_stack(&stack)?;
            let eval = policy::evaluate(&policies, &stack, None, &Options::new(!p.no_waivers))?;
            let blocked = eval.blocking().next().is_some();
            if ui.json {
                ui.print_json(&serde_json::json!({
                    "findings": eval.findings,
                    "blocking": blocked,
                    "notes": eval.notes.iter().map(Diag::to_json).collect::<Vec<_>>(),
                }));
            } else {
                ui.diagnostics(&eval.notes);
                if eval.findings.is_empty() {
                    println!(
                        "No findings: `{}` meets its {} rule{}.",
                        stack.name,
                        policies.rules.len(),
                        plural(policies.rules.len())
                    );
                } else {
                    print!(
                        "{}",
                        render_findings(&eval.findings, ui.color_out).trim_start()
                    );
                }
            }
            Ok(if blocked { EXIT_BLOCKED } else { EXIT_OK })
        }
    }
}
