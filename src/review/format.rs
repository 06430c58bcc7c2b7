//! Review outputs: text, JSON, SARIF 2.1.0, GitHub workflow annotations, Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;
use serde_sarif::sarif;

use super::{Change, Kind, Report, Reported};
use crate::diag::{self, Diag, Style, plural};
use crate::plan;
use crate::policy::{Finding, Severity};

/// GitHub shows at most this many annotations of each level per step.
pub const GITHUB_ANNOTATIONS_PER_LEVEL: usize = 10;

fn symbol(k: Kind) -> &'static str {
    match k {
        Kind::Added => "+",
        Kind::Removed => "-",
        Kind::Changed => "~",
    }
}

fn change_line(c: &Change) -> String {
    let what = match c.section {
        super::Section::Rule => format!("rule {}", c.subject),
        super::Section::Waiver => format!("waiver of {}", c.subject),
        super::Section::Compliance => format!("compliance of {}", c.subject),
        _ => c.subject.clone(),
    };
    let flag = if c.weakens {
        "   (loosens a control)"
    } else {
        ""
    };
    format!("{} {what}{flag}", symbol(c.kind))
}

fn headline(r: &Report) -> String {
    let rev = |x: &super::Revision| format!("{} ({})", x.rev, &x.commit[..x.commit.len().min(8)]);
    format!(
        "Review of `{}` ({}): {} → {}",
        r.stack,
        r.environment,
        rev(&r.base),
        rev(&r.head)
    )
}

/// `Review: 2 new findings, 1 blocking; 3 already at the base not shown (--all shows them).`
pub fn summary(r: &Report) -> String {
    let new = r.findings.iter().filter(|f| f.new).count();
    let blocking = r.blocking().count();
    let mut s = format!(
        "Review: {new} new finding{}, {blocking} blocking",
        plural(new)
    );
    if r.unchanged > 0 {
        if r.all {
            let _ = write!(s, "; {} already at the base", r.unchanged);
        } else {
            let _ = write!(
                s,
                "; {} already at the base not shown (--all shows them)",
                r.unchanged
            );
        }
    }
    s.push('.');
    s
}

pub fn human(r: &Report, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", headline(r));
    if !r.base.present {
        out.push_str(
            "The stack is new (absent or not compiling at the base): everything is reported.\n\n",
        );
    }
    if r.changes.is_empty() {
        out.push_str("No declarations differ.\n");
    } else {
        out.push_str("Declarations:\n");
        for c in &r.changes {
            let _ = writeln!(out, "  {}", change_line(c));
            for d in &c.details {
                let _ = writeln!(out, "      {d}");
            }
        }
    }
    out.push('\n');
    match (&r.plan, &r.plan_note) {
        (Some(p), _) => out.push_str(&plan::render(p, color)),
        (None, Some(note)) => {
            let _ = writeln!(out, "No plan: {note}");
        }
        (None, None) => {}
    }
    let style = Style { color, width: 100 };
    for f in &r.findings {
        out.push('\n');
        let mut d = f.finding.to_diag();
        if !f.new {
            d.message.push_str(" (already at the base)");
        }
        out.push_str(&diag::render(&d, style));
    }
    let _ = writeln!(out, "\n{}", summary(r));
    out
}

fn finding_json(f: &Reported) -> serde_json::Value {
    let mut v = serde_json::to_value(&f.finding).expect("findings serialize");
    v["new"] = json!(f.new);
    v["blocking"] = json!(f.finding.blocks());
    v
}

pub fn json(r: &Report) -> serde_json::Value {
    json!({
        "stack": r.stack,
        "environment": r.environment,
        "base": { "rev": r.base.rev, "commit": r.base.commit, "present": r.base.present },
        "head": { "rev": r.head.rev, "commit": r.head.commit, "present": r.head.present },
        "changes": r.changes,
        "plan": r.plan,
        "plan_note": r.plan_note,
        "findings": r.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "new_findings": r.findings.iter().filter(|f| f.new).count(),
        "blocking": r.blocking().count(),
        "unchanged_findings": r.unchanged,
        "notes": r.notes.iter().map(Diag::to_json).collect::<Vec<_>>(),
    })
}

fn sarif_level(f: &Finding) -> &'static str {
    if f.blocks() {
        "error"
    } else if f.waiver.is_some() || f.severity <= Severity::Low {
        "note"
    } else {
        "warning"
    }
}

/// SARIF 2.1.0 for GitHub code scanning: one rule descriptor per rule ID, one result per
/// finding, baseline state `new` or `unchanged`.
pub fn sarif(r: &Report) -> serde_json::Value {
    let mut rules: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in &r.findings {
        rules.entry(f.finding.rule.as_str()).or_insert(&f.finding);
    }
    let index: BTreeMap<&str, i64> = rules
        .keys()
        .enumerate()
        .map(|(i, id)| (*id, i as i64))
        .collect();
    let descriptors: Vec<sarif::ReportingDescriptor> = rules
        .values()
        .map(|f| {
            let mut tags = f.controls.clone();
            tags.push(f.enforcement.as_str().to_string());
            // Review's own findings carry one instance's details in their titles.
            let description = match f.rule.as_str() {
                super::WEAKENED => "A change loosens a compliance control",
                super::WAIVER_ADDED => "A waiver is added or extended",
                _ => &f.title,
            };
            sarif::ReportingDescriptor::builder()
                .id(f.rule.clone())
                .short_description(
                    sarif::MultiformatMessageString::builder()
                        .text(description)
                        .build(),
                )
                .help(
                    sarif::MultiformatMessageString::builder()
                        .text(f.fix.clone())
                        .build(),
                )
                .properties(
                    sarif::PropertyBag::builder()
                        .tags(tags)
                        .additional_properties(BTreeMap::from([(
                            "security-severity".to_string(),
                            json!(security_severity(f.severity)),
                        )]))
                        .build(),
                )
                .build()
        })
        .collect();
    let results: Vec<sarif::Result> = r
        .findings
        .iter()
        .map(|rep| {
            let f = &rep.finding;
            let region = sarif::Region::builder()
                .start_line(f.line as i64)
                .start_column(f.column as i64)
                .end_line(f.end_line as i64)
                .end_column(f.end_column as i64)
                .build();
            let location = sarif::Location::builder()
                .physical_location(
                    sarif::PhysicalLocation::builder()
                        .artifact_location(
                            sarif::ArtifactLocation::builder()
                                .uri(f.file.clone())
                                .build(),
                        )
                        .region(region)
                        .build(),
                )
                .build();
            let mut text = format!("{}: {}", f.resource, f.title);
            if let Some(w) = &f.waiver {
                let _ = write!(text, " (waived until {} by {})", w.expires, w.approver);
            }
            sarif::Result::builder()
                .rule_id(f.rule.clone())
                .rule_index(index[f.rule.as_str()])
                .level(match sarif_level(f) {
                    "error" => sarif::ResultLevel::Error,
                    "warning" => sarif::ResultLevel::Warning,
                    _ => sarif::ResultLevel::Note,
                })
                .message(sarif::Message::builder().text(text).build())
                .locations(vec![location])
                .baseline_state(json!(if rep.new { "new" } else { "unchanged" }))
                .partial_fingerprints(BTreeMap::from([(
                    "cairnFinding/v1".to_string(),
                    format!("{}|{}", f.rule, f.resource),
                )]))
                .build()
        })
        .collect();
    let driver = sarif::ToolComponent::builder()
        .name("cairn")
        .version(env!("CARGO_PKG_VERSION"))
        .rules(descriptors)
        .build();
    let run = sarif::Run::builder()
        .tool(sarif::Tool::builder().driver(driver).build())
        .results(results)
        .build();
    let doc = sarif::Sarif::builder()
        .schema("https://json.schemastore.org/sarif-2.1.0.json")
        .version(json!("2.1.0"))
        .runs(vec![run])
        .build();
    serde_json::to_value(doc).expect("SARIF serializes")
}

/// GitHub's scale for code-scanning severity (0.1–10).
fn security_severity(s: Severity) -> String {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
    }
    .into()
}

/// Escapes workflow-command data (`%`, CR, LF) and, in properties, `:` and `,`.
fn escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// GitHub Actions annotations, most severe first, at most 10 per level (GitHub drops the
/// rest); configuration and waiver notes follow as warnings within the same cap; a last plain
/// line says how many were left out, and the summary follows.
pub fn github(r: &Report) -> String {
    let mut out = String::new();
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    let mut left_out = 0;
    let mut annotate = |level: &'static str, line: String, out: &mut String| {
        let n = shown.entry(level).or_default();
        if *n >= GITHUB_ANNOTATIONS_PER_LEVEL {
            left_out += 1;
        } else {
            *n += 1;
            out.push_str(&line);
        }
    };
    for rep in &r.findings {
        let f = &rep.finding;
        let level = match sarif_level(f) {
            "error" => "error",
            "warning" => "warning",
            _ => "notice",
        };
        let mut message = format!("{}: {}", f.resource, f.title);
        if let Some(w) = &f.waiver {
            let _ = write!(message, " (waived until {} by {})", w.expires, w.approver);
        }
        let _ = write!(
            message,
            "\n{} · {} severity",
            enforcement_phrase(f),
            f.severity.as_str()
        );
        if !f.controls.is_empty() {
            let _ = write!(message, " · {}", f.controls.join(", "));
        }
        let _ = write!(message, "\nFix: {}", f.fix);
        let line = format!(
            "::{level} file={},line={},col={},endLine={},title={}::{}\n",
            escape(&f.file, true),
            f.line,
            f.column,
            f.end_line,
            escape(&f.rule, true),
            escape(&message, false)
        );
        annotate(level, line, &mut out);
    }
    for line in github_notes(&r.notes) {
        annotate("warning", line, &mut out);
    }
    if left_out > 0 {
        let _ = writeln!(
            out,
            "{left_out} more annotation{} left out (GitHub shows {GITHUB_ANNOTATIONS_PER_LEVEL} per level); run with --format sarif or human to see all.",
            plural(left_out)
        );
    }
    let _ = writeln!(out, "{}", summary(r));
    out
}

/// Configuration warnings and waiver notes as warning annotation lines.
fn github_notes(notes: &[Diag]) -> Vec<String> {
    notes
        .iter()
        .map(|d| {
            let j = d.to_json();
            let at = match (j["file"].as_str(), j["line"].as_u64()) {
                (Some(file), Some(line)) => format!("file={},line={line},", escape(file, true)),
                _ => String::new(),
            };
            format!(
                "::warning {at}title={}::{}\n",
                escape(&d.code, true),
                escape(&d.message, false)
            )
        })
        .collect()
}

fn enforcement_phrase(f: &Finding) -> &'static str {
    if f.waiver.is_some() {
        "waived"
    } else {
        f.enforcement.as_str()
    }
}

/// A pull-request comment: summary, findings table, declaration changes, plan collapsed.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let blocking = r.blocking().count();
    let icon = if blocking > 0 { "❌" } else { "✅" };
    let _ = writeln!(
        out,
        "### {icon} cairn review: `{}` ({})\n",
        r.stack, r.environment
    );
    let _ = writeln!(
        out,
        "Base `{}` (`{}`) → head `{}` (`{}`). {}\n",
        r.base.rev,
        &r.base.commit[..r.base.commit.len().min(8)],
        r.head.rev,
        &r.head.commit[..r.head.commit.len().min(8)],
        summary(r)
    );
    if !r.findings.is_empty() {
        out.push_str(
            "| | Rule | Resource | Where | Enforcement | Finding |\n|---|---|---|---|---|---|\n",
        );
        for rep in &r.findings {
            let f = &rep.finding;
            let mark = if f.blocks() {
                "❌"
            } else if f.waiver.is_some() {
                "💤"
            } else {
                "⚠️"
            };
            let new = if rep.new { "" } else { " (already at base)" };
            let _ = writeln!(
                out,
                "| {mark} | `{}` | `{}` | `{}:{}` | {} | {}{new}<br>Fix: {} |",
                f.rule,
                f.resource,
                f.file,
                f.line,
                enforcement_phrase(f),
                cell(&f.title),
                cell(&f.fix)
            );
        }
        out.push('\n');
    }
    if !r.changes.is_empty() {
        out.push_str("**Declarations**\n\n");
        for c in &r.changes {
            let weak = if c.weakens {
                " ⚠️ loosens a control"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "- `{}`{weak}",
                change_line(c).trim_end_matches("   (loosens a control)")
            );
            for d in &c.details {
                let _ = writeln!(out, "  - {}", cell(d));
            }
        }
        out.push('\n');
    }
    match (&r.plan, &r.plan_note) {
        (Some(p), _) => {
            let s = &p.summary;
            let _ = writeln!(
                out,
                "<details><summary>Plan: {} to add, {} to change, {} to replace, {} to destroy</summary>\n\n```diff\n{}```\n\n</details>",
                s.create,
                s.update,
                s.replace,
                s.delete,
                plan::render(p, false)
            );
        }
        (None, Some(note)) => {
            let _ = writeln!(out, "_No plan: {}_", cell(note));
        }
        (None, None) => {}
    }
    out
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
