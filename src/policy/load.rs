//! Reading policy files: built-in packs and a stack's `policies/*.toml` (rules and waivers).

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::{Condition, Enforcement, Policies, Rule, Severity, SubjectKind, Waiver};
use crate::config::FileReader;
use crate::config::raw::Sp;
use crate::diag::{Diag, Location, SourceFile};

/// The built-in packs, by framework name, compiled into the binary.
pub const BUILTIN_PACKS: &[(&str, &str)] = &[
    ("soc2", include_str!("../../policies/soc2.toml")),
    ("gdpr", include_str!("../../policies/gdpr.toml")),
    ("hipaa", include_str!("../../policies/hipaa.toml")),
];

const TOP_LEVEL: &[&str] = &["pack", "rule", "waiver"];

/// A pack's description (`[pack]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read for validation; shown by docs, not by code
struct RawPack {
    name: String,
    title: String,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Sp<String>,
    title: String,
    severity: Severity,
    enforcement: Enforcement,
    controls: Vec<String>,
    applies_to: SubjectKind,
    /// Which subjects the rule checks (CEL); all when absent.
    when: Option<Sp<String>>,
    /// What a compliant subject satisfies (CEL).
    require: Sp<String>,
    fix: String,
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaiver {
    rule: Sp<String>,
    resource: Sp<String>,
    reason: Sp<String>,
    approver: Sp<String>,
    expires: Sp<toml::value::Datetime>,
}

/// A built-in pack as a source file, for loading and for diagnostics in it.
pub fn builtin(name: &str) -> Option<Arc<SourceFile>> {
    BUILTIN_PACKS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| {
            Arc::new(SourceFile {
                name: format!("<builtin>/policies/{n}.toml"),
                text: (*text).into(),
            })
        })
}

/// The `.toml` files of a stack's `policies/` directory (none when it does not exist).
pub fn read_policy_dir(dir: &Path) -> Result<Vec<Arc<SourceFile>>, Diag> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    crate::config::read_dir(dir).or_else(|d| {
        if d.code == "config::empty" {
            Ok(Vec::new())
        } else {
            Err(d)
        }
    })
}

/// Loads the named built-in packs and the given policy files. Every error at once.
pub fn load_files(frameworks: &[&str], files: Vec<Arc<SourceFile>>) -> Result<Policies, Vec<Diag>> {
    let mut all: Vec<Arc<SourceFile>> = frameworks.iter().filter_map(|f| builtin(f)).collect();
    all.extend(files);
    let mut policies = Policies::default();
    let mut diags = Vec::new();
    for file in &all {
        read_file(file, &mut policies, &mut diags);
    }
    let mut seen: std::collections::HashMap<&str, &Location> = Default::default();
    for r in &policies.rules {
        if let Some(first) = seen.insert(&r.id, &r.origin) {
            diags.push(
                Diag::error(
                    "policy::duplicate",
                    format!("rule `{}` is defined twice", r.id),
                )
                .at(r.origin.clone(), "defined again here")
                .also(first.clone(), "first defined here")
                .help("rule IDs are unique across the built-in packs and the stack's policies"),
            );
        }
    }
    let ids: Vec<&str> = policies.rules.iter().map(|r| r.id.as_str()).collect();
    for w in &policies.waivers {
        let known = ids.iter().any(|id| super::glob(&w.rule, id));
        if !known {
            let d = Diag::warning(
                "policy::unknown_rule",
                format!("waiver names `{}`, which is not a loaded rule", w.rule),
            )
            .at(w.origin.clone(), "no such rule");
            diags.push(match crate::config::suggest(&w.rule, &ids) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help("`cairn policy list` shows the rules in force"),
            });
        }
    }
    if diags.iter().any(Diag::is_error) {
        Err(diags)
    } else {
        // Warnings about policy files travel with the waivers' notes.
        policies.warnings = diags;
        Ok(policies)
    }
}

fn read_file(file: &Arc<SourceFile>, out: &mut Policies, diags: &mut Vec<Diag>) {
    let mut reader = FileReader::parse(file);
    let keys = std::mem::take(&mut reader.keys);
    let loc = |span: std::ops::Range<usize>| Location {
        file: file.clone(),
        span,
    };
    for (key, value) in keys {
        match key.get().as_str() {
            "pack" => {
                reader.table::<RawPack>("pack", value);
            }
            "rule" => {
                for e in reader.array::<RawRule>("rule", value) {
                    let r = e.value;
                    if !is_rule_id(r.id.get()) {
                        diags.push(
                            Diag::error(
                                "policy::invalid_id",
                                format!("invalid rule ID `{}`", r.id.get()),
                            )
                            .at(loc(r.id.span()), "not a rule ID")
                            .help("use letters, digits, `.`, `-` and `_`, e.g. `ACME-TLS-01`"),
                        );
                    }
                    let when = r.when.as_ref().and_then(|c| condition(file, c, diags));
                    let Some(require) = condition(file, &r.require, diags) else {
                        continue;
                    };
                    out.rules.push(Rule {
                        id: r.id.get().clone(),
                        title: r.title,
                        severity: r.severity,
                        enforcement: r.enforcement,
                        controls: r.controls,
                        applies_to: r.applies_to,
                        when,
                        require,
                        fix: r.fix,
                        source: file.name.clone(),
                        origin: loc(e.span),
                    });
                }
            }
            "waiver" => {
                for e in reader.array::<RawWaiver>("waiver", value) {
                    let w = e.value;
                    for (field, v) in [("reason", &w.reason), ("approver", &w.approver)] {
                        if v.get().trim().is_empty() {
                            diags.push(
                                Diag::error(
                                    "policy::invalid_waiver",
                                    format!("a waiver needs a {field}"),
                                )
                                .at(loc(v.span()), "empty"),
                            );
                        }
                    }
                    let Some(expires) = date(w.expires.get()) else {
                        diags.push(
                            Diag::error(
                                "policy::invalid_waiver",
                                format!("expires = {} is not a date", w.expires.get()),
                            )
                            .at(loc(w.expires.span()), "expected a date")
                            .help("write a TOML date without quotes: expires = 2026-12-31"),
                        );
                        continue;
                    };
                    out.waivers.push(Waiver {
                        rule: w.rule.get().clone(),
                        resource: w.resource.get().clone(),
                        reason: w.reason.get().clone(),
                        approver: w.approver.get().clone(),
                        expires,
                        origin: loc(e.span),
                    });
                }
            }
            _ => reader.unknown_key(&key, TOP_LEVEL),
        }
    }
    diags.extend(reader.diags());
}

fn date(dt: &toml::value::Datetime) -> Option<jiff::civil::Date> {
    if dt.time.is_some() || dt.offset.is_some() {
        return None;
    }
    let d = dt.date?;
    jiff::civil::Date::new(d.year as i16, d.month as i8, d.day as i8).ok()
}

fn is_rule_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Compiles a CEL condition; a syntax error points into the TOML string where it is.
fn condition(file: &Arc<SourceFile>, c: &Sp<String>, diags: &mut Vec<Diag>) -> Option<Condition> {
    let text = c.get();
    let at = Location {
        file: file.clone(),
        span: c.span(),
    };
    match cel::Program::compile(text) {
        Ok(program) => Some(Condition {
            text: text.clone(),
            program: Arc::new(program),
            at,
        }),
        Err(errors) => {
            for e in errors.errors {
                let (line, col) = (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize);
                let span = inside(&file.text, c.span(), text, line, col).unwrap_or(c.span());
                diags.push(
                    Diag::error(
                        "policy::syntax",
                        format!("invalid condition: {}", e.msg.trim()),
                    )
                    .at(
                        Location {
                            file: file.clone(),
                            span,
                        },
                        "here",
                    )
                    .help("conditions are CEL expressions; see docs/policies.md"),
                );
            }
            None
        }
    }
}

/// The file span of (line, col) within a string value, when the string is written
/// verbatim (no escapes) so positions carry over.
fn inside(
    file_text: &str,
    span: std::ops::Range<usize>,
    value: &str,
    line: usize,
    col: usize,
) -> Option<std::ops::Range<usize>> {
    let raw = file_text.get(span.clone())?;
    let start = span.start + raw.find(value)?;
    let line_start: usize = value
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let rest = value.get(line_start..)?;
    let offset = line_start
        + rest
            .char_indices()
            .nth(col - 1)
            .map_or(rest.len(), |(i, _)| i);
    let at = start + offset;
    Some(at..at + 1)
}
