//! `cairn recommend`: rightsizing from each service's load history, printed and proposed as
//! a unified diff of the stack's TOML files, ready for a pull request.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use super::args::RecommendArgs;
use super::ui::Ui;
use super::{CmdResult, EXIT_OK, load, runtime};
use crate::config::Stack;
use crate::diag::Diag;
use crate::ml::recommend::{self, Recommendation, ServiceSizing};
use crate::ml::source::MetricReader;
use crate::model::Attrs;

pub fn run(args: &RecommendArgs, ui: &Ui) -> CmdResult {
    let (stack, _) = load(&args.stack, ui)?;
    let reader = MetricReader::new(&stack.dir, &stack.metrics)
        .map_err(|e| Diag::error("metrics::source", e.to_string()))?;
    let now = jiff::Timestamp::now().as_second();
    let span = args.history.as_secs() as i64;
    let rt = runtime();
    let mut recommendations = Vec::new();
    let mut skipped = Vec::new();
    for (service, policy) in &stack.scaling {
        let Some(load) = &policy.load else {
            skipped.push(format!("{service}: no load metric declared"));
            continue;
        };
        let history = rt
            .block_on(reader.history(&load.metric, now, span, 300))
            .map_err(|e| {
                Diag::error("metrics::source", format!("{service}: {e}"))
                    .help("check the metric's query, file or trace in the scaling policy")
            })?;
        match recommend::recommend(&history, &sizing(&stack, service, policy, load.per_replica)) {
            Ok(r) => recommendations.push(r),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    let diff = proposed_diff(&stack, &recommendations);
    if let Some(path) = &args.out {
        std::fs::write(path, &diff).map_err(|e| {
            Diag::error("io::write", format!("cannot write {}: {e}", path.display()))
        })?;
    }
    if ui.json {
        ui.print_json(&json!({
            "recommendations": recommendations,
            "skipped": skipped,
            "diff": diff,
        }));
        return Ok(EXIT_OK);
    }
    print!("{}", render(&recommendations, &skipped));
    if diff.is_empty() {
        println!("\nNo change to propose.");
    } else {
        match &args.out {
            Some(path) => println!(
                "\nProposed change written to {} (apply it with `git apply`).",
                path.display()
            ),
            None => print!("\nProposed change:\n\n{diff}"),
        }
    }
    Ok(EXIT_OK)
}

fn sizing(
    stack: &Stack,
    service: &str,
    policy: &crate::config::ScalingPolicy,
    per_replica: f64,
) -> ServiceSizing {
    let groups: Vec<_> = stack
        .resources
        .iter()
        .filter_map(|d| match &d.attrs {
            Attrs::Group(g) if g.service == service => Some(g),
            _ => None,
        })
        .collect();
    ServiceSizing {
        service: service.to_string(),
        per_replica,
        target: policy.target_utilization,
        startup_secs: policy.startup.as_secs() as i64,
        deployments: groups.iter().map(|g| (g.min, g.max)).collect(),
        instance_type: groups.iter().find_map(|g| g.instance_type.clone()),
        price_per_replica_hour: policy.cost.as_ref().map(|c| c.per_replica_hour),
    }
}

fn render(recommendations: &[Recommendation], skipped: &[String]) -> String {
    let mut out = String::new();
    for r in recommendations {
        let _ = writeln!(
            out,
            "{}: {:.1} days of load history, confidence {:.0}%",
            r.service,
            r.days_of_history,
            r.confidence * 100.0
        );
        let _ = writeln!(
            out,
            "  target utilization  {:.2} -> {:.2}",
            r.target.current, r.target.proposed
        );
        let _ = writeln!(
            out,
            "  min replicas        {} -> {} per deployment",
            r.min_replicas.current, r.min_replicas.proposed
        );
        match &r.instance_type {
            Some(t) if t.changed() => {
                let _ = writeln!(out, "  instance type       {} -> {}", t.current, t.proposed);
            }
            Some(t) => {
                let _ = writeln!(out, "  instance type       {} (kept)", t.current);
            }
            None => {}
        }
        let h = &r.replica_hours_per_month;
        let _ = writeln!(
            out,
            "  replica-hours/month {:.0} -> {:.0}",
            h.current, h.proposed
        );
        if let Some(c) = &r.cost_per_month {
            let saved = c.current - c.proposed;
            let _ = writeln!(
                out,
                "  cost/month          {:.2} -> {:.2} ({} {:.2})",
                c.current,
                c.proposed,
                if saved >= 0.0 { "saves" } else { "costs" },
                saved.abs()
            );
        }
        for reason in &r.reasons {
            let _ = writeln!(out, "  · {reason}");
        }
    }
    for s in skipped {
        let _ = writeln!(out, "skipped {s}");
    }
    out
}

/// The recommendations as edits of the stack's own files, shown as a unified diff. Values
/// set through `${var.…}` are left alone: the variable may serve other environments.
fn proposed_diff(stack: &Stack, recommendations: &[Recommendation]) -> String {
    let mut diff = String::new();
    for file in &stack.files {
        let mut doc: toml_edit::DocumentMut = match file.text.parse() {
            Ok(d) => d,
            Err(_) => continue, // loaded fine as TOML moments ago; nothing to edit if not now
        };
        for r in recommendations.iter().filter(|r| r.changes_anything()) {
            edit(&mut doc, r);
        }
        let new = doc.to_string();
        if new != *file.text {
            let shown = Path::new(&file.name).display().to_string();
            let _ = write!(
                diff,
                "{}",
                similar::TextDiff::from_lines(&*file.text, &new)
                    .unified_diff()
                    .header(&format!("a/{shown}"), &format!("b/{shown}"))
            );
        }
    }
    diff
}

fn edit(doc: &mut toml_edit::DocumentMut, r: &Recommendation) {
    let literal = |item: &toml_edit::Item| !item.as_str().is_some_and(|s| s.contains("${"));
    if r.target.changed()
        && let Some(t) = doc
            .get_mut("scaling")
            .and_then(|s| s.get_mut(&r.service))
            .and_then(|s| s.get_mut("target_utilization"))
        && literal(t)
    {
        set_keeping_decor(t, toml_edit::value(r.target.proposed));
    }
    let Some(services) = doc
        .get_mut("service")
        .and_then(|s| s.as_array_of_tables_mut())
    else {
        return;
    };
    for svc in services.iter_mut() {
        if svc.get("name").and_then(|n| n.as_str()) != Some(r.service.as_str()) {
            continue;
        }
        let Some(deployments) = svc
            .get_mut("deployment")
            .and_then(|d| d.as_array_of_tables_mut())
        else {
            continue;
        };
        for d in deployments.iter_mut() {
            if r.min_replicas.changed()
                && let Some(min) = d.get_mut("min")
                && literal(min)
            {
                set_keeping_decor(min, toml_edit::value(i64::from(r.min_replicas.proposed)));
            }
            if let Some(t) = &r.instance_type
                && t.changed()
                && let Some(current) = d.get("instance_type").and_then(|v| v.as_str())
                && let Some(resized) = recommend::resize_instance(current, r.size_factor)
            {
                let item = d.get_mut("instance_type").expect("read above");
                set_keeping_decor(item, toml_edit::value(resized));
            }
        }
    }
}

/// Replaces a value keeping its comment and spacing, so the diff shows only the value.
fn set_keeping_decor(item: &mut toml_edit::Item, new: toml_edit::Item) {
    let decor = item.as_value().map(|v| v.decor().clone());
    *item = new;
    if let (Some(decor), Some(v)) = (decor, item.as_value_mut()) {
        *v.decor_mut() = decor;
    }
}
