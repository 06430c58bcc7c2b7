//! Scaling benchmark: every trace through the simulator with a 5-minute startup and a 60%
//! target, predictive scaling against the HPA baseline and static peak provisioning, one
//! configuration for all traces. Prints a Markdown table (docs/scaling.md).
//!
//!   cargo run --release --bin cairn-sim-bench -- ../shared/data/traces ../shared/data/nab/data/realTweets
//!   cargo run --release --bin cairn-sim-bench -- --forecast-errors DIR...   (forecaster accuracy)
//!
//! Target, on every trace: at least 80% fewer overload intervals than the HPA at no more
//! replica-hours, and at least 30% less waste than static peak provisioning. The `bound`
//! column is a yardstick, not a policy: the fewest replica-hours with which any policy that
//! never scales below the reactive recommendation (as predictive scaling must) meets the
//! overload target, even knowing the whole trace in advance (src/ml/bound.rs). Where it
//! exceeds the HPA's replica-hours, no forecaster can meet the target on that trace. The
//! `level oracle` column is the second yardstick: the fewest overloads, within the HPA's
//! replica-hours, of a policy told each step's local level (the next ten minutes' mean) but
//! not its value (src/ml/level_oracle.rs); where it misses the target, what is left is
//! per-step noise that no forecast of the history foresees.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;

use cairn::ml::bound::{BoundInput, replica_hours_bound};
use cairn::ml::forecast::{ForecastConfig, Forecaster};
use cairn::ml::level_oracle;
use cairn::ml::scaler::Policy;
use cairn::ml::series::Series;
use cairn::ml::simulate::{self, Predictive, Reactive, SimConfig, Summary};

const TARGET: f64 = 0.6;
const STARTUP_SECS: i64 = 300;
/// The overload target: at most this fraction of the HPA's overload intervals.
const OVERLOAD_RATIO: f64 = 0.2;
/// The waste target: at most this fraction of static peak provisioning's waste.
const WASTE_RATIO: f64 = 0.7;

#[derive(Parser)]
#[command(about = "Scaling simulator benchmark: predictive vs HPA vs static peak")]
struct Args {
    /// Trace files (`timestamp,value` CSV) or directories of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Measure the forecaster's 30-minute-ahead error and upper-quantile coverage instead.
    #[arg(long)]
    forecast_errors: bool,
}

fn main() {
    let args = Args::parse();
    let traces = traces(&args.paths);
    if args.forecast_errors {
        forecast_errors(&traces);
    } else {
        scaling(&traces);
    }
}

fn traces(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .map(|e| e.expect("directory entry").path())
                .filter(|f| f.extension().is_some_and(|x| x == "csv"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn load(path: &Path) -> (Series, i64) {
    let trace = Series::read_csv(path).unwrap_or_else(|e| panic!("{e}"));
    let step = trace.step().expect("a trace has at least two rows");
    (trace, step)
}

fn scaling(paths: &[PathBuf]) {
    println!(
        "| trace | days | overload intervals: HPA / predictive (fewer) | incidents: HPA / predictive \
| replica-hours: HPA / predictive (change) / bound | waste: static / predictive (less) \
| unserved: HPA / predictive | target | level oracle: overloads (fewer) | time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|:--:|---:|---:|");
    let (mut met, mut impossible, mut oracle_met) = (0, 0, 0);
    for path in paths {
        let (trace, step) = load(path);
        let capacity = simulate::default_capacity(&trace, TARGET);
        let policy = Policy {
            startup_secs: STARTUP_SECS,
            ..Policy::new(TARGET, capacity)
        };
        let config = SimConfig {
            startup_secs: STARTUP_SECS,
            capacity_per_replica: capacity,
            initial_replicas: simulate::initial_replicas(&trace, capacity, TARGET, policy.min),
        };
        let hpa = simulate::simulate(&trace, step, &config, &mut Reactive::new(policy.clone()));
        let started = Instant::now();
        let forecast = ForecastConfig {
            horizon_secs: 1800.max(STARTUP_SECS + step),
            ..ForecastConfig::new(step)
        };
        let (policy_tolerance, policy_min) = (policy.tolerance, policy.min);
        let mut predictive = Predictive::new(policy, forecast);
        let pred = simulate::simulate(&trace, step, &config, &mut predictive);
        let elapsed = started.elapsed();
        let fixed = simulate::static_peak(&trace, step, capacity, TARGET);
        let (h, p, s) = (&hpa.summary, &pred.summary, &fixed.summary);
        let goal = (OVERLOAD_RATIO * h.overload_intervals as f64).floor() as usize;
        let service = BoundInput {
            capacity_per_replica: capacity,
            target_utilization: TARGET,
            tolerance: policy_tolerance,
            startup_steps: (STARTUP_SECS as f64 / step as f64).ceil() as usize,
            initial_replicas: config.initial_replicas,
            min_replicas: policy_min,
            step_secs: step,
        };
        let bound = replica_hours_bound(&trace.values(), &service, goal);
        let oracle = level_oracle::best_within(&trace, step, &config, &service, h.replica_hours)
            .map(|(_, run)| run.summary);
        oracle_met += usize::from(oracle.is_some_and(|o| {
            o.overload_intervals <= goal
                && o.waste_replica_hours <= WASTE_RATIO * s.waste_replica_hours
        }));
        let ok = p.overload_intervals <= goal
            && p.replica_hours <= h.replica_hours
            && p.waste_replica_hours <= WASTE_RATIO * s.waste_replica_hours;
        met += usize::from(ok);
        impossible += usize::from(bound.lower > h.replica_hours);
        println!(
            "| {} | {:.0} | {} / {} ({}) | {} / {} | {:.0} / {:.0} ({}) / {:.0} | {:.0} / {:.0} ({}) | {} / {} | {} | {} | {:.2} s |",
            trace.name,
            (trace.points.len() as f64 * step as f64 / 86_400.0),
            h.overload_intervals,
            p.overload_intervals,
            percent_less(p.overload_intervals as f64, h.overload_intervals as f64),
            h.incidents,
            p.incidents,
            h.replica_hours,
            p.replica_hours,
            percent_change(p.replica_hours, h.replica_hours),
            bound.lower,
            s.waste_replica_hours,
            p.waste_replica_hours,
            percent_less(p.waste_replica_hours, s.waste_replica_hours),
            unserved(h),
            unserved(p),
            if ok {
                "met"
            } else if bound.lower > h.replica_hours {
                "impossible"
            } else {
                "missed"
            },
            oracle.map_or("none within budget".into(), |o| format!(
                "{} ({})",
                o.overload_intervals,
                percent_less(o.overload_intervals as f64, h.overload_intervals as f64)
            )),
            elapsed.as_secs_f64(),
        );
    }
    println!(
        "\nTarget met on {met} of {} traces; impossible (bound above the HPA's replica-hours) on \
{impossible}; met by the level oracle (told the next 10 minutes' level) on {oracle_met}.",
        paths.len()
    );
}

fn unserved(s: &Summary) -> String {
    format!("{:.2}%", 100.0 * s.unserved_fraction)
}

fn percent_less(x: f64, baseline: f64) -> String {
    if baseline == 0.0 {
        return if x == 0.0 { "=".into() } else { "more".into() };
    }
    format!("{:.0}% less", 100.0 * (1.0 - x / baseline))
}

fn percent_change(x: f64, baseline: f64) -> String {
    format!("{:+.1}%", 100.0 * (x / baseline - 1.0))
}

/// 30-minute-ahead weighted absolute percentage error and coverage of the upper quantile,
/// over every origin with a forecast, against the seasonal-naive forecast (the same time
/// yesterday).
fn forecast_errors(paths: &[PathBuf]) {
    println!("| trace | WAPE at 30 min | seasonal naive WAPE | upper-quantile coverage | time |");
    println!("|---|---:|---:|---:|---:|");
    for path in paths {
        let (trace, step) = load(path);
        let horizon = (1800 / step) as usize;
        let day = (86_400 / step) as usize;
        let d = &trace.points;
        let started = Instant::now();
        let mut f = Forecaster::new(ForecastConfig::new(step));
        let (mut err, mut naive_err, mut total, mut covered, mut n) = (0.0, 0.0, 0.0, 0, 0);
        for (i, p) in d.iter().enumerate() {
            f.observe(*p);
            let target = i + horizon;
            if target >= d.len() {
                continue;
            }
            let Some(fc) = f.forecast() else { continue };
            let last = fc.points[horizon - 1];
            let actual = d[target].value;
            err += (last.point - actual).abs();
            naive_err += (d[target - day].value - actual).abs();
            total += actual;
            covered += usize::from(actual <= last.upper);
            n += 1;
        }
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.2} s |",
            trace.name,
            err / total,
            naive_err / total,
            covered as f64 / n as f64,
            started.elapsed().as_secs_f64()
        );
    }
}
