//! `cairn scale explain SERVICE`: the scaling decision for a service now, from its load
//! history and forecast, with what bound it; as text, JSON and an SVG chart.

use std::fmt::Write as _;

use serde_json::json;

use super::args::ScaleExplainArgs;
use super::ui::Ui;
use super::{CmdResult, EXIT_OK, load, runtime};
use crate::config::Stack;
use crate::diag::Diag;
use crate::ml::chart::{Chart, Line, LineKind};
use crate::ml::forecast::{Forecast, ForecastConfig, Forecaster};
use crate::ml::scaler::{Decision, Policy, Replicas, Scaler};
use crate::ml::series::{Series, format_timestamp};
use crate::ml::source::MetricReader;
use crate::model::Attrs;

/// Metric resolution: the traces' and the forecaster's step.
const STEP: i64 = 300;
/// How much history the chart shows before the forecast.
const CHART_HISTORY: i64 = 2 * 86_400;

pub fn explain(args: &ScaleExplainArgs, ui: &Ui) -> CmdResult {
    let (stack, _) = load(&args.stack, ui)?;
    let service = &args.service;
    let Some(policy) = stack.scaling.get(service) else {
        let known: Vec<&str> = stack.scaling.keys().map(String::as_str).collect();
        return Err(Diag::error(
            "scale::unknown_service",
            format!("`{service}` has no scaling policy"),
        )
        .help(format!("services with one: {}", known.join(", ")))
        .into());
    };
    let Some(load_metric) = &policy.load else {
        return Err(Diag::error(
            "scale::no_load",
            format!("`{service}`'s scaling policy declares no load metric"),
        )
        .help("add `load = { query = \"…\" }` (or `file`, or `trace`) and `per_replica`")
        .into());
    };
    let (history_secs, horizon_secs) =
        policy.predictive.as_ref().map_or((86_400 * 14, 1800), |p| {
            (p.history.as_secs() as i64, p.horizon.as_secs() as i64)
        });
    let reader = MetricReader::new(&stack.dir, &stack.metrics)
        .map_err(|e| Diag::error("metrics::source", e.to_string()))?;
    let now_wall = jiff::Timestamp::now().as_second();
    let history = runtime()
        .block_on(reader.history(&load_metric.metric, now_wall, history_secs, STEP))
        .map_err(|e| Diag::error("metrics::source", format!("{service}: {e}")))?;
    let Some(last) = history.points.last().copied() else {
        return Err(Diag::error("scale::no_data", format!("{service}: no load history")).into());
    };
    // A recorded file may end in the past: the decision is made as of its last point.
    let now = last.ts;

    let mut forecaster = Forecaster::new(ForecastConfig {
        step_secs: STEP,
        horizon_secs,
        history_secs,
        ..ForecastConfig::new(STEP)
    });
    for p in &history.points {
        forecaster.observe(*p);
    }
    let forecast = policy
        .predictive
        .as_ref()
        .and_then(|_| forecaster.forecast());

    let (min, max, current) = group_sizes(&stack, service);
    let mut scaler = Scaler::new(Policy::from_config(
        policy,
        load_metric.per_replica,
        min,
        max,
    ));
    let replicas = Replicas {
        current,
        ready: current,
    };
    let decision = scaler.decide(now, &history.points, replicas, forecast.as_ref());

    let chart_path = args
        .chart
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(format!("{service}-scale.svg")));
    chart(
        service,
        &history,
        forecast.as_ref(),
        &decision,
        now,
        load_metric.per_replica,
    )
    .write_svg(&chart_path)
    .map_err(|e| Diag::error("io::write", e.to_string()))?;

    if ui.json {
        ui.print_json(&json!({
            "service": service,
            "at": format_timestamp(now),
            "load": last.value,
            "history": { "points": history.points.len(), "days": history_days(&history) },
            "replicas": current,
            "forecast": forecast,
            "decision": decision,
            "chart": chart_path,
        }));
    } else {
        print!(
            "{}",
            render(
                service,
                policy,
                &history,
                forecast.as_ref(),
                &decision,
                current,
                load_metric.per_replica
            )
        );
        println!("  chart               {}", chart_path.display());
    }
    Ok(EXIT_OK)
}

/// The service's groups' summed min, max and current desired replicas: from the recorded
/// state when something was applied, else as declared.
fn group_sizes(stack: &Stack, service: &str) -> (u32, u32, u32) {
    let recorded = super::read_state(stack).ok();
    let (mut min, mut max, mut current) = (0, 0, 0);
    for d in &stack.resources {
        let Attrs::Group(g) = &d.attrs else { continue };
        if g.service != service {
            continue;
        }
        min += g.min;
        max += g.max;
        let applied = recorded
            .as_ref()
            .and_then(|s| match s.resources.get(&d.address) {
                Some(r) => match &r.attrs {
                    Attrs::Group(live) => Some(live.desired),
                    _ => None,
                },
                None => None,
            });
        current += applied.unwrap_or(g.desired);
    }
    (min, max, current)
}

fn history_days(h: &Series) -> f64 {
    let span = match (h.points.first(), h.points.last()) {
        (Some(a), Some(b)) => b.ts - a.ts + STEP,
        _ => 0,
    };
    (span as f64 / 86_400.0 * 10.0).round() / 10.0
}

fn render(
    service: &str,
    policy: &crate::config::ScalingPolicy,
    history: &Series,
    forecast: Option<&Forecast>,
    d: &Decision,
    current: u32,
    per_replica: f64,
) -> String {
    let mut out = String::new();
    let last = history.points.last().expect("checked non-empty");
    let mode = match &policy.predictive {
        Some(p) => format!(
            "predictive, horizon {}",
            humantime::format_duration(p.horizon)
        ),
        None => "reactive".to_string(),
    };
    let _ = writeln!(
        out,
        "{service}: {mode}, startup {}, target utilization {:.2}",
        humantime::format_duration(policy.startup),
        policy.target_utilization
    );
    let _ = writeln!(
        out,
        "  load                {:.1} at {} UTC ({:.1} days of history)",
        last.value,
        format_timestamp(last.ts),
        history_days(history)
    );
    match forecast {
        Some(f) => {
            let peak = f.points.iter().map(|p| p.point).fold(f64::MIN, f64::max);
            let upper = f.points.iter().map(|p| p.upper).fold(f64::MIN, f64::max);
            let _ = writeln!(
                out,
                "  forecast            peak {peak:.1}, upper {upper:.1} within the horizon; confidence {:.0}%",
                f.confidence * 100.0
            );
        }
        None if policy.predictive.is_some() => {
            let _ = writeln!(
                out,
                "  forecast            none yet: a day of history is needed"
            );
        }
        None => {}
    }
    let _ = writeln!(
        out,
        "  replicas            {current} now -> {} desired",
        d.desired
    );
    let _ = writeln!(
        out,
        "    reactive          {} (load / ({per_replica} per replica × {:.2}))",
        d.reactive, policy.target_utilization
    );
    if let Some(p) = d.predicted {
        let _ = writeln!(
            out,
            "    predicted         {p} (forecast over the startup delay)"
        );
    }
    if let Some(b) = d.binding {
        let _ = writeln!(out, "    bound by          {b}");
    }
    if let Some(c) = &d.cost_capped {
        let _ = writeln!(
            out,
            "    cost cap          wanted {} ({:.2}/h), budget {:.2}/h allows {}",
            c.wanted, c.wanted_per_hour, c.max_per_hour, c.allowed
        );
    }
    out
}

fn chart(
    service: &str,
    history: &Series,
    forecast: Option<&Forecast>,
    d: &Decision,
    now: i64,
    per_replica: f64,
) -> Chart {
    let recent: Vec<(i64, f64)> = history
        .points
        .iter()
        .filter(|p| p.ts > now - CHART_HISTORY)
        .map(|p| (p.ts, p.value))
        .collect();
    let mut lines = vec![Line::new("load", LineKind::Solid, recent)];
    if let Some(f) = forecast {
        lines.push(Line::new(
            "forecast",
            LineKind::Dashed,
            f.points.iter().map(|p| (p.ts, p.point)).collect(),
        ));
        lines.push(Line::new(
            "forecast (upper)",
            LineKind::Dashed,
            f.points.iter().map(|p| (p.ts, p.upper)).collect(),
        ));
    }
    let end = forecast
        .and_then(|f| f.points.last().map(|p| p.ts))
        .unwrap_or(now);
    lines.push(Line::new(
        "capacity of desired replicas",
        LineKind::Steps,
        vec![
            (now, d.desired as f64 * per_replica),
            (end, d.desired as f64 * per_replica),
        ],
    ));
    Chart {
        title: format!("{service}: load, forecast and desired capacity"),
        y_label: "load".into(),
        lines,
    }
}
