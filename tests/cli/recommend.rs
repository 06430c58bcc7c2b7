//! `cairn recommend`: rightsizing from load history read from Prometheus (a real server),
//! a CSV file, and the sandbox's replayed trace.

use crate::Work;
use crate::prometheus::{gauge, prometheus};

/// A stack with one service on two clouds and a scaling policy whose load is `load`.
fn stack(w: &Work, metrics: &str, load: &str) {
    w.write(
        "s/stack.toml",
        &format!(
            r#"[stack]
name = "s"
environment = "production"
{metrics}
[[service]]
name = "api"

  [[service.deployment]]
  cloud = "aws"
  region = "eu-west-1"
  instance_type = "m5.large"
  min = 4    # two per zone
  max = 20

  [[service.deployment]]
  cloud = "gcp"
  region = "europe-west1"
  instance_type = "n2-standard-2"
  min = 4
  max = 20

[scaling.api]
target_utilization = 0.5
startup = "3m"
cost = {{ per_replica_hour = 0.1 }}
load = {load}
per_replica = 100
"#
        ),
    );
}

/// A smooth day: 100 at midnight, 1,000 at noon.
fn daily(seconds: i64) -> f64 {
    let phase = (seconds % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
    (100.0 + 900.0 * (1.0 - phase.cos()) / 2.0).round()
}

#[test]
fn load_history_is_read_from_prometheus() {
    let samples = gauge(
        "load_rps",
        &[r#"service="api""#, r#"service="web""#],
        2,
        |i, s| daily(s) * (i + 1) as f64,
    );
    let Some(p) = prometheus(&samples) else {
        return;
    };
    let w = Work::new();
    let metrics = format!("\n[metrics]\nprometheus = \"{}\"\n", p.url);
    stack(
        &w,
        &metrics,
        r#"{ query = 'sum(load_rps{service="api"})' }"#,
    );
    let out = w.json(&["recommend", "s"]);
    let r = &out["recommendations"][0];
    assert_eq!(r["service"], "api", "{out:#}");
    // Two days at 5-minute steps, as Prometheus evaluated the range query.
    assert_eq!(r["days_of_history"], 2.0, "{out:#}");
    // Smooth load: the target rises to its cap; the quietest hour (100/s) needs 2 replicas.
    assert_eq!(r["target"]["proposed"], 0.85);
    assert_eq!(r["min_replicas"]["proposed"], 1);
    let diff = out["diff"].as_str().unwrap();
    assert!(
        diff.contains("-  min = 4    # two per zone\n+  min = 1    # two per zone\n"),
        "{diff}"
    );
    assert!(
        diff.contains("-target_utilization = 0.5\n+target_utilization = 0.85\n"),
        "{diff}"
    );

    // A query that returns one series per service cannot size one service.
    stack(&w, &metrics, "{ query = 'load_rps' }");
    let r = w.ok(&["recommend", "s", "--json"], 1);
    assert!(
        r.stderr
            .contains("`load_rps` returned 2 series; aggregate them into one (e.g. with sum(…))"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_csv_history_gives_a_diff_that_git_applies() {
    let w = Work::new();
    let mut csv = String::from("timestamp,value\n");
    for k in 0..3 * 288 {
        let ts = 1_700_006_400 + k * 300;
        csv.push_str(&format!("{ts},{}\n", daily(k * 300)));
    }
    w.write("s/load.csv", &csv);
    stack(&w, "", r#"{ file = "load.csv" }"#);
    let r = w.ok(&["recommend", "s", "--out", "s/rightsizing.diff"], 0);
    insta::assert_snapshot!("recommend_csv", r.stdout);
    let diff = std::fs::read_to_string(w.path("s/rightsizing.diff")).unwrap();
    insta::assert_snapshot!("recommend_csv_diff", diff);

    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(w.dir.path())
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["apply", "s/rightsizing.diff"]);
    w.ok(&["validate", "s"], 0);
    // Applied, the same history proposes nothing more.
    let r = w.ok(&["recommend", "s"], 0);
    assert!(
        r.stdout.ends_with("\nNo change to propose.\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_quickstart_sizes_api_from_its_sandbox_trace() {
    let w = Work::quickstart();
    let out = w.json(&["recommend", "shop"]);
    let recs = out["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{out:#}");
    assert_eq!(recs[0]["service"], "api");
    // The 14-day trace, replayed over the 14 days before now.
    assert_eq!(recs[0]["days_of_history"], 14.0, "{out:#}");
    assert_eq!(
        out["skipped"],
        serde_json::json!([
            "checkout: no load metric declared",
            "web: no load metric declared"
        ])
    );
    // The minimum comes from `${var.api_min}`: shown, never edited.
    assert!(!out["diff"].as_str().unwrap().contains("min ="), "{out:#}");
}

#[test]
fn scale_explain_shows_the_decision_and_saves_a_chart() {
    let w = Work::quickstart();
    let out = w.json(&["scale", "explain", "api", "shop", "--chart", "api.svg"]);
    let d = &out["decision"];
    // Never below the reactive recommendation; the forecast's is there (a predictive policy
    // with 14 days of history).
    assert!(d["desired"].as_u64() >= d["reactive"].as_u64(), "{out:#}");
    assert!(d["predicted"].as_u64().is_some(), "{out:#}");
    assert!(
        out["forecast"]["points"].as_array().unwrap().len() >= 6,
        "{out:#}"
    );
    let svg = std::fs::read_to_string(w.path("api.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("forecast"), "{svg}");

    let r = w.ok(&["scale", "explain", "web", "shop"], 1);
    assert!(
        r.stderr
            .contains("`web`'s scaling policy declares no load metric"),
        "{}",
        r.stderr
    );
}
