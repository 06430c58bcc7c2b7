//! `cairn simulate` on a 3-day slice of a real demand trace (tests/fixtures/traces).

use super::Work;

const TRACE: &str = include_str!("../fixtures/traces/elb_request_count_3d.csv");

fn work() -> Work {
    let w = Work::new();
    w.write("elb.csv", TRACE);
    w
}

#[test]
fn simulate_reports_the_policy_beside_static_peak() {
    let w = work();
    let r = w.ok(
        &[
            "simulate",
            "--trace",
            "elb.csv",
            "--policy",
            "predictive",
            "--no-chart",
        ],
        0,
    );
    insta::assert_snapshot!("simulate_predictive", r.stdout);
    let r = w.ok(
        &[
            "simulate",
            "--trace",
            "elb.csv",
            "--policy",
            "reactive",
            "--no-chart",
        ],
        0,
    );
    insta::assert_snapshot!("simulate_reactive", r.stdout);
    assert!(!w.path("elb-reactive.svg").exists());
}

/// The per-step rows are enough to recompute every figure of the summary.
#[test]
fn simulate_steps_recompute_the_summary() {
    let w = work();
    let out = w.json(&[
        "simulate",
        "--trace",
        "elb.csv",
        "--policy",
        "predictive",
        "--steps",
        "steps.csv",
    ]);
    let summary = &out["summary"];
    let capacity = out["capacity_per_replica"].as_f64().unwrap();
    let hours = out["step_secs"].as_f64().unwrap() / 3600.0;

    let steps = std::fs::read_to_string(w.path("steps.csv")).unwrap();
    let mut lines = steps.lines();
    assert_eq!(
        lines.next(),
        Some(
            "timestamp,demand,ready_capacity,desired_replicas,ready_replicas,forecast,forecast_upper"
        )
    );
    let (mut overloads, mut incidents, mut unserved, mut demand) = (0, 0, 0.0, 0.0);
    let (mut replica_hours, mut waste, mut forecasts, mut was_overloaded) = (0.0, 0.0, 0, false);
    let mut rows = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (d, cap): (f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let desired: f64 = f[3].parse().unwrap();
        let overloaded = d > cap;
        if overloaded {
            overloads += 1;
            unserved += d - cap;
            incidents += usize::from(!was_overloaded);
        }
        was_overloaded = overloaded;
        demand += d;
        replica_hours += desired * hours;
        waste += (desired - d.min(cap) / capacity) * hours;
        forecasts += usize::from(!f[5].is_empty());
        rows += 1;
    }
    assert_eq!(rows, 864);
    assert_eq!(summary["steps"], 864);
    assert_eq!(summary["overload_intervals"], overloads);
    assert_eq!(summary["incidents"], incidents);
    let close = |key: &str, x: f64| {
        let v = summary[key].as_f64().unwrap();
        assert!(
            (v - x).abs() <= 1e-6 * v.abs().max(1.0),
            "{key}: {v} vs {x}"
        );
    };
    close("unserved", unserved);
    close("unserved_fraction", unserved / demand);
    close("replica_hours", replica_hours);
    close("waste_replica_hours", waste);
    // A forecast from the end of the first day on (a day of history is needed): the last
    // 577 of 864 steps.
    assert_eq!(forecasts, 577);

    // The chart is saved by default, named after the trace and the policy.
    assert_eq!(out["chart_file"], "elb-predictive.svg");
    let svg = std::fs::read_to_string(w.path("elb-predictive.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    for line in ["demand", "ready capacity", "forecast"] {
        assert!(svg.contains(line), "the chart has no {line} line");
    }
}

#[test]
fn simulate_rejects_bad_settings() {
    let w = work();
    let r = w.ok(
        &[
            "simulate", "--trace", "elb.csv", "--policy", "reactive", "--target", "1.5",
        ],
        1,
    );
    assert!(
        r.stderr.contains("--target must be above 0 and at most 1"),
        "{}",
        r.stderr
    );
    let r = w.ok(
        &["simulate", "--trace", "missing.csv", "--policy", "reactive"],
        1,
    );
    assert!(r.stderr.contains("cannot read missing.csv"), "{}", r.stderr);
}
