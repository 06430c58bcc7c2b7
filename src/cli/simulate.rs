//! `cairn simulate`: replays a demand trace against a scaling policy and reports it beside
//! static provisioning at the trace's peak.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::args::{SimPolicy, SimulateArgs};
use super::ui::Ui;
use super::{CmdResult, EXIT_OK};
use crate::diag::Diag;
use crate::ml::chart::{Chart, Line, LineKind};
use crate::ml::forecast::ForecastConfig;
use crate::ml::scaler::{CostCap, Policy, ScaleInLimit};
use crate::ml::series::{Series, format_timestamp};
use crate::ml::simulate::{self, Predictive, Reactive, Run, SimConfig, Summary};

pub fn run(a: &SimulateArgs, ui: &Ui) -> CmdResult {
    check(a)?;
    let trace =
        Series::read_csv(&a.trace).map_err(|e| Diag::error("simulate::trace", e.to_string()))?;
    let step_secs = trace.step().ok_or_else(|| {
        Diag::error(
            "simulate::trace",
            format!("{}: a trace needs at least two rows", a.trace.display()),
        )
    })?;
    let capacity = a
        .capacity
        .unwrap_or_else(|| simulate::default_capacity(&trace, a.target));
    let policy = policy(a, capacity);
    let config = SimConfig {
        startup_secs: policy.startup_secs,
        capacity_per_replica: capacity,
        initial_replicas: simulate::initial_replicas(&trace, capacity, a.target, a.min),
    };
    let run = match a.policy {
        SimPolicy::Reactive => {
            simulate::simulate(&trace, step_secs, &config, &mut Reactive::new(policy))
        }
        SimPolicy::Predictive => {
            let forecast = ForecastConfig {
                horizon_secs: (a.horizon.as_secs() as i64).max(policy.startup_secs + step_secs),
                history_secs: a.history.as_secs() as i64,
                quantile: a.quantile,
                ..ForecastConfig::new(step_secs)
            };
            let mut p = Predictive::new(policy, forecast);
            simulate::simulate(&trace, step_secs, &config, &mut p)
        }
    };
    let static_replicas = simulate::static_peak_replicas(&trace, capacity, a.target);
    let baseline = simulate::static_peak(&trace, step_secs, capacity, a.target);

    if let Some(path) = &a.steps {
        write(path, &steps_csv(&run))?;
    }
    let chart_path = (!a.no_chart).then(|| {
        a.chart.clone().unwrap_or_else(|| {
            PathBuf::from(format!("{}-{}.svg", trace.name, policy_name(a.policy)))
        })
    });
    if let Some(path) = &chart_path {
        chart(&trace.name, a.policy, &run)
            .write_svg(path)
            .map_err(|e| Diag::error("simulate::chart", e.to_string()))?;
    }

    if ui.json {
        ui.print_json(&serde_json::json!({
            "trace": a.trace,
            "policy": policy_name(a.policy),
            "step_secs": step_secs,
            "startup_secs": config.startup_secs,
            "target_utilization": a.target,
            "capacity_per_replica": capacity,
            "summary": run.summary,
            "static_peak": { "replicas": static_replicas, "summary": baseline.summary },
            "steps_file": a.steps,
            "chart_file": chart_path,
        }));
        return Ok(EXIT_OK);
    }
    let first = trace.points.first().map_or(0, |p| p.ts);
    let last = trace.points.last().map_or(0, |p| p.ts);
    println!(
        "trace     {}: {} steps of {} from {} to {}",
        a.trace.display(),
        trace.points.len(),
        duration(step_secs),
        format_timestamp(first),
        format_timestamp(last)
    );
    println!(
        "replicas  serve {} each at 100%{}; target {}%, startup {}",
        number(capacity),
        if a.capacity.is_none() {
            " (the mean demand needs 10 at the target)"
        } else {
            ""
        },
        number(a.target * 100.0),
        duration(config.startup_secs),
    );
    println!();
    print!(
        "{}",
        report(
            (policy_name(a.policy), &run.summary),
            (
                &format!("static peak ({static_replicas})"),
                &baseline.summary
            ),
        )
    );
    if let Some(path) = &a.steps {
        println!("\nsteps: {}", path.display());
    }
    if let Some(path) = &chart_path {
        println!("chart: {}", path.display());
    }
    Ok(EXIT_OK)
}

fn check(a: &SimulateArgs) -> Result<(), Diag> {
    let invalid = |what: &str| Diag::error("simulate::invalid_value", what.to_string());
    if !(a.target > 0.0 && a.target <= 1.0) {
        return Err(invalid("--target must be above 0 and at most 1"));
    }
    if a.capacity.is_some_and(|c| c.is_nan() || c <= 0.0) {
        return Err(invalid("--capacity must be above 0"));
    }
    if !(a.quantile > 0.5 && a.quantile < 1.0) {
        return Err(invalid("--quantile must be above 0.5 and below 1"));
    }
    if a.max.is_some_and(|max| max < a.min) {
        return Err(invalid("--max must be at least --min"));
    }
    if a.scale_in_limit.is_some_and(|p| !(p > 0.0 && p <= 100.0)) {
        return Err(invalid("--scale-in-limit must be above 0 and at most 100"));
    }
    if a.load_factor.is_nan() || a.load_factor <= 0.0 {
        return Err(invalid("--load-factor must be above 0"));
    }
    Ok(())
}

fn policy(a: &SimulateArgs, capacity: f64) -> Policy {
    Policy {
        load_factor: a.load_factor,
        min: a.min,
        max: a.max.unwrap_or(u32::MAX),
        startup_secs: a.startup.as_secs() as i64,
        scale_in_stabilization_secs: a.stabilization.as_secs() as i64,
        scale_in_limit: a.scale_in_limit.map(|percent| ScaleInLimit {
            percent,
            period_secs: a.scale_in_period.as_secs() as i64,
        }),
        cost: a.cost_per_replica_hour.zip(a.max_cost_per_hour).map(
            |(per_replica_hour, max_per_hour)| CostCap {
                per_replica_hour,
                max_per_hour,
            },
        ),
        scale_to_zero_after_secs: a.scale_to_zero_after.map(|d| d.as_secs() as i64),
        ..Policy::new(a.target, capacity)
    }
}

fn policy_name(p: SimPolicy) -> &'static str {
    match p {
        SimPolicy::Reactive => "reactive",
        SimPolicy::Predictive => "predictive",
    }
}

/// A row of the summary table: its label and how a run's cell is written.
type Row = (&'static str, fn(&Summary) -> String);

/// The summary table: one column per run.
fn report(a: (&str, &Summary), b: (&str, &Summary)) -> String {
    let pct = |x: f64| format!("{}%", number(x * 100.0));
    let rows: [Row; 5] = [
        ("overload intervals", |s| s.overload_intervals.to_string()),
        ("scaling incidents", |s| s.incidents.to_string()),
        ("unserved demand", |s| number(s.unserved)),
        ("replica-hours", |s| format!("{:.1}", s.replica_hours)),
        ("waste (replica-hours)", |s| {
            format!("{:.1}", s.waste_replica_hours)
        }),
    ];
    let mut out = format!("{:<24}{:<20}{}\n", "", a.0, b.0);
    for (label, value) in rows {
        let cell = |s: &Summary| {
            let mut v = value(s);
            if label == "overload intervals" {
                let _ = write!(
                    v,
                    " ({})",
                    pct(s.overload_intervals as f64 / s.steps.max(1) as f64)
                );
            } else if label == "unserved demand" {
                let _ = write!(v, " ({})", pct(s.unserved_fraction));
            }
            v
        };
        let (x, y) = (cell(a.1), cell(b.1));
        let _ = writeln!(out, "{label:<24}{x:<20}{y}");
    }
    out
}

/// Up to 4 significant digits, no trailing zeros: 0.6, 12.35, 1234.
fn number(x: f64) -> String {
    let digits = if x.abs() >= 1000.0 {
        0
    } else if x.abs() >= 100.0 {
        1
    } else if x.abs() >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn duration(secs: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs.max(0) as u64)).to_string()
}

/// Every step, with enough to recompute the summary: overload is `demand > ready_capacity`,
/// replica-hours sum `desired_replicas × step`.
fn steps_csv(run: &Run) -> String {
    let mut out = String::from(
        "timestamp,demand,ready_capacity,desired_replicas,ready_replicas,forecast,forecast_upper\n",
    );
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in &run.rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            format_timestamp(r.ts),
            r.demand,
            r.ready_capacity,
            r.desired,
            r.ready,
            opt(r.forecast),
            opt(r.forecast_upper)
        );
    }
    out
}

fn chart(name: &str, policy: SimPolicy, run: &Run) -> Chart {
    let series = |f: fn(&simulate::Row) -> Option<f64>| -> Vec<(i64, f64)> {
        run.rows
            .iter()
            .filter_map(|r| f(r).map(|v| (r.ts, v)))
            .collect()
    };
    let mut lines = vec![
        Line::new("demand", LineKind::Solid, series(|r| Some(r.demand))),
        Line::new(
            "ready capacity",
            LineKind::Steps,
            series(|r| Some(r.ready_capacity)),
        ),
    ];
    if policy == SimPolicy::Predictive {
        lines.push(Line::new(
            "forecast",
            LineKind::Dashed,
            series(|r| r.forecast),
        ));
        lines.push(Line::new(
            "forecast upper quantile",
            LineKind::Dashed,
            series(|r| r.forecast_upper),
        ));
    }
    Chart {
        title: format!("{name}: {} scaling", policy_name(policy)),
        y_label: "demand".into(),
        lines,
    }
}

fn write(path: &Path, text: &str) -> Result<(), Diag> {
    std::fs::write(path, text).map_err(|e| {
        Diag::error(
            "simulate::write",
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(number(0.6), "0.6");
        assert_eq!(number(12.3456), "12.35");
        assert_eq!(number(60.0), "60");
        assert_eq!(number(1234.56), "1235");
    }
}
