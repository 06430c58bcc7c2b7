//! The scaling simulator: replays a demand trace against a scaling policy and measures
//! overload, unserved demand, replica-hours and waste.
//!
//! Semantics (docs/scaling.md): the trace is one demand value per step. Before each step
//! after the first, the policy decides the replicas from the demand of the steps before it
//! only (metrics arrive one step late: the current step's demand is never seen); replicas it
//! adds serve once the startup delay has passed, replicas it removes stop at once. A step is
//! overloaded when its demand exceeds the ready capacity. The policy is handed an immutable
//! slice of the past, so it cannot see the future whatever it does.

use super::forecast::{ForecastConfig, ForecastPoint, Forecaster};
use super::scaler::{Decision, Policy, Replicas, Scaler};
use super::series::{Point, Series};

/// What a policy sees before a step: the time and the demand observed before it.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    now: i64,
    past: &'a [Point],
}

impl<'a> Observed<'a> {
    /// Unix seconds of the step being decided.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The demand of the steps before it, in time order.
    pub fn past(&self) -> &'a [Point] {
        self.past
    }
}

/// A policy under simulation.
pub trait ScalingPolicy {
    /// The decision before the step `observed.now()`.
    fn decide(&mut self, observed: Observed<'_>, replicas: Replicas) -> PolicyStep;
}

/// A policy's decision, and its forecast of the step's demand, if it makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStep {
    pub decision: Decision,
    pub forecast: Option<ForecastPoint>,
}

/// The reactive baseline: the Kubernetes HPA algorithm.
pub struct Reactive {
    scaler: Scaler,
}

impl Reactive {
    pub fn new(policy: Policy) -> Reactive {
        Reactive {
            scaler: Scaler::new(policy),
        }
    }
}

impl ScalingPolicy for Reactive {
    fn decide(&mut self, observed: Observed<'_>, replicas: Replicas) -> PolicyStep {
        PolicyStep {
            decision: self
                .scaler
                .decide(observed.now, observed.past, replicas, None),
            forecast: None,
        }
    }
}

/// Predictive scaling: the scaler with the forecaster, fed the observations as they come.
pub struct Predictive {
    scaler: Scaler,
    forecaster: Forecaster,
    last_fed: Option<i64>,
}

impl Predictive {
    pub fn new(policy: Policy, forecast: ForecastConfig) -> Predictive {
        Predictive {
            scaler: Scaler::new(policy),
            forecaster: Forecaster::new(forecast),
            last_fed: None,
        }
    }
}

impl ScalingPolicy for Predictive {
    fn decide(&mut self, observed: Observed<'_>, replicas: Replicas) -> PolicyStep {
        let new = observed
            .past
            .iter()
            .rev()
            .take_while(|p| self.last_fed.is_none_or(|ts| p.ts > ts))
            .count();
        for p in &observed.past[observed.past.len() - new..] {
            self.forecaster.observe(*p);
            self.last_fed = Some(p.ts);
        }
        let forecast = self.forecaster.forecast();
        let decision = self
            .scaler
            .decide(observed.now, observed.past, replicas, forecast.as_ref());
        PolicyStep {
            decision,
            forecast: forecast.and_then(|f| f.points.into_iter().find(|p| p.ts >= observed.now)),
        }
    }
}

/// The simulated service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Seconds from asking for a replica to its serving.
    pub startup_secs: i64,
    /// The demand one replica serves at 100% utilization.
    pub capacity_per_replica: f64,
    /// Replicas at the start, all ready.
    pub initial_replicas: u32,
}

/// One simulated step: what `--steps` writes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Row {
    pub ts: i64,
    pub demand: f64,
    /// Replicas paid for during the step (ready or starting).
    pub desired: u32,
    pub ready: u32,
    /// `ready × capacity_per_replica`.
    pub ready_capacity: f64,
    /// The policy's forecast of this step's demand, made before it.
    pub forecast: Option<f64>,
    pub forecast_upper: Option<f64>,
}

/// The figures of a run, computed from its rows alone.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub steps: usize,
    /// Steps whose demand exceeded the ready capacity ("overload intervals").
    pub overload_intervals: usize,
    /// Runs of consecutive overloaded steps ("scaling incidents").
    pub incidents: usize,
    /// Demand above ready capacity, summed over steps (demand units × steps).
    pub unserved: f64,
    /// `unserved` as a fraction of all demand.
    pub unserved_fraction: f64,
    /// Replicas paid for × hours.
    pub replica_hours: f64,
    /// Paid capacity not serving demand, in replica-hours: starting replicas, and ready
    /// capacity above demand.
    pub waste_replica_hours: f64,
    pub peak_replicas: u32,
}

impl Summary {
    pub fn of(rows: &[Row], step_secs: i64, capacity_per_replica: f64) -> Summary {
        let hours = step_secs as f64 / 3600.0;
        let mut s = Summary {
            steps: rows.len(),
            overload_intervals: 0,
            incidents: 0,
            unserved: 0.0,
            unserved_fraction: 0.0,
            replica_hours: 0.0,
            waste_replica_hours: 0.0,
            peak_replicas: 0,
        };
        let mut overloaded_before = false;
        let mut demand = 0.0;
        for r in rows {
            let overloaded = r.demand > r.ready_capacity;
            if overloaded {
                s.overload_intervals += 1;
                s.unserved += r.demand - r.ready_capacity;
                if !overloaded_before {
                    s.incidents += 1;
                }
            }
            overloaded_before = overloaded;
            demand += r.demand;
            s.replica_hours += r.desired as f64 * hours;
            let served = r.demand.min(r.ready_capacity) / capacity_per_replica;
            s.waste_replica_hours += (r.desired as f64 - served) * hours;
            s.peak_replicas = s.peak_replicas.max(r.desired);
        }
        if demand > 0.0 {
            s.unserved_fraction = s.unserved / demand;
        }
        s
    }
}

/// A simulated run.
#[derive(Debug, Clone)]
pub struct Run {
    pub rows: Vec<Row>,
    pub summary: Summary,
}

/// Replays `trace` (one step per point, of `step_secs`) against `policy`.
pub fn simulate(
    trace: &Series,
    step_secs: i64,
    config: &SimConfig,
    policy: &mut dyn ScalingPolicy,
) -> Run {
    let startup_steps = (config.startup_secs as f64 / step_secs as f64).ceil() as usize;
    let points = &trace.points;
    // Replicas asked for and not ready yet: (step at which they are ready, count), oldest first.
    let mut starting: Vec<(usize, u32)> = Vec::new();
    let mut ready = config.initial_replicas;
    let mut rows = Vec::with_capacity(points.len());
    for (t, point) in points.iter().enumerate() {
        starting.retain(|&(at, n)| {
            let now_ready = at <= t;
            if now_ready {
                ready += n;
            }
            !now_ready
        });
        let mut current = ready + starting.iter().map(|(_, n)| n).sum::<u32>();
        let mut forecast = None;
        if t > 0 {
            let observed = Observed {
                now: point.ts,
                past: &points[..t],
            };
            let step = policy.decide(observed, Replicas { current, ready });
            forecast = step.forecast;
            let desired = step.decision.desired;
            if desired > current {
                let n = desired - current;
                if startup_steps == 0 {
                    ready += n;
                } else {
                    starting.push((t + startup_steps, n));
                }
            } else {
                // Starting replicas go first, the newest first: they serve nothing yet.
                let mut remove = current - desired;
                while remove > 0 {
                    let Some(last) = starting.last_mut() else {
                        break;
                    };
                    let n = remove.min(last.1);
                    last.1 -= n;
                    remove -= n;
                    if last.1 == 0 {
                        starting.pop();
                    }
                }
                ready -= remove;
            }
            current = desired;
        }
        rows.push(Row {
            ts: point.ts,
            demand: point.value,
            desired: current,
            ready,
            ready_capacity: ready as f64 * config.capacity_per_replica,
            forecast: forecast.map(|f| f.point),
            forecast_upper: forecast.map(|f| f.upper),
        });
    }
    let summary = Summary::of(&rows, step_secs, config.capacity_per_replica);
    Run { rows, summary }
}

/// Static provisioning at the trace's peak: the replicas that serve the peak demand at the
/// target utilization, all the time.
pub fn static_peak(trace: &Series, step_secs: i64, capacity: f64, target: f64) -> Run {
    let replicas = static_peak_replicas(trace, capacity, target);
    let rows: Vec<Row> = trace
        .points
        .iter()
        .map(|p| Row {
            ts: p.ts,
            demand: p.value,
            desired: replicas,
            ready: replicas,
            ready_capacity: replicas as f64 * capacity,
            forecast: None,
            forecast_upper: None,
        })
        .collect();
    let summary = Summary::of(&rows, step_secs, capacity);
    Run { rows, summary }
}

pub fn static_peak_replicas(trace: &Series, capacity: f64, target: f64) -> u32 {
    let peak = trace.points.iter().map(|p| p.value).fold(0.0, f64::max);
    (peak / (capacity * target) - 1e-9).ceil().max(1.0) as u32
}

/// Replicas the mean demand needs at the target utilization, for the default capacity.
pub const REPLICAS_AT_MEAN: f64 = 10.0;

/// The default capacity per replica: the trace's mean demand needs `REPLICAS_AT_MEAN`
/// replicas at the target utilization. Bursty traces peak at hundreds of times their mean, so
/// sizing replicas from the peak would leave most of the trace on a single replica, where
/// only rounding decides.
pub fn default_capacity(trace: &Series, target: f64) -> f64 {
    let n = trace.points.len().max(1) as f64;
    let mean = trace.points.iter().map(|p| p.value).sum::<f64>() / n;
    if mean > 0.0 {
        mean / (target * REPLICAS_AT_MEAN)
    } else {
        1.0
    }
}

/// The replicas the first step needs at the target utilization: the simulation starts as if
/// the service had been running.
pub fn initial_replicas(trace: &Series, capacity: f64, target: f64, min: u32) -> u32 {
    let first = trace.points.first().map_or(0.0, |p| p.value);
    ((first / (capacity * target) - 1e-9).ceil().max(0.0) as u32).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 300;

    fn trace(values: &[f64]) -> Series {
        Series::from_values(values, STEP)
    }

    fn config(startup_secs: i64) -> SimConfig {
        SimConfig {
            startup_secs,
            capacity_per_replica: 10.0,
            initial_replicas: 1,
        }
    }

    /// Asks for a fixed schedule of replicas, and records what it was shown.
    struct Schedule {
        desired: Vec<u32>,
        seen: Vec<(i64, usize, Replicas)>,
    }

    impl ScalingPolicy for Schedule {
        fn decide(&mut self, observed: Observed<'_>, replicas: Replicas) -> PolicyStep {
            let t = self.seen.len() + 1;
            self.seen
                .push((observed.now(), observed.past().len(), replicas));
            PolicyStep {
                decision: Decision {
                    desired: self.desired[t],
                    reactive: 0,
                    predicted: None,
                    recommended: 0,
                    binding: None,
                    cost_capped: None,
                    confidence: None,
                },
                forecast: None,
            }
        }
    }

    #[test]
    fn replicas_serve_after_the_startup_delay_and_stop_at_once() {
        let t = trace(&[5.0, 5.0, 25.0, 25.0, 25.0, 5.0]);
        let mut p = Schedule {
            desired: vec![1, 3, 3, 3, 1, 1],
            seen: vec![],
        };
        let run = simulate(&t, STEP, &config(300), &mut p);
        let ready: Vec<u32> = run.rows.iter().map(|r| r.ready).collect();
        let desired: Vec<u32> = run.rows.iter().map(|r| r.desired).collect();
        assert_eq!(desired, [1, 3, 3, 3, 1, 1]);
        assert_eq!(ready, [1, 1, 3, 3, 1, 1]);
        // Step 4 lost two replicas at once: 25 demand on 10 capacity.
        let s = &run.summary;
        assert_eq!((s.overload_intervals, s.incidents), (1, 1));
        assert_eq!(s.unserved, 15.0);
        // The policy saw only the past: at step t, t points, and the replicas then.
        assert_eq!(
            p.seen[0],
            (
                STEP,
                1,
                Replicas {
                    current: 1,
                    ready: 1
                }
            )
        );
        assert_eq!(
            p.seen[1],
            (
                2 * STEP,
                2,
                Replicas {
                    current: 3,
                    ready: 3
                }
            )
        );
        // 12 replica-steps of 5 minutes; served demand 5+5+25+25+10+5 = 75 = 7.5 replicas.
        assert!((s.replica_hours - 1.0).abs() < 1e-9);
        assert!((s.waste_replica_hours - (12.0 - 7.5) / 12.0).abs() < 1e-9);
    }

    #[test]
    fn removing_replicas_drops_starting_ones_first() {
        let t = trace(&[5.0, 5.0, 5.0, 5.0]);
        let mut p = Schedule {
            desired: vec![1, 4, 2, 2],
            seen: vec![],
        };
        let run = simulate(&t, STEP, &config(600), &mut p);
        let ready: Vec<u32> = run.rows.iter().map(|r| r.ready).collect();
        assert_eq!(ready, [1, 1, 1, 2]);
    }

    #[test]
    fn static_peak_serves_the_peak_at_the_target() {
        let t = trace(&[5.0, 30.0, 12.0]);
        let run = static_peak(&t, STEP, 10.0, 0.6);
        // 30 / (10 × 0.6) = 5 replicas.
        assert!(run.rows.iter().all(|r| r.desired == 5 && r.ready == 5));
        assert_eq!(run.summary.overload_intervals, 0);
        assert!((run.summary.waste_replica_hours - (15.0 - 4.7) / 12.0).abs() < 1e-9);
    }

    /// The demand after step `k` cannot change any decision up to step `k`: the policy is
    /// handed the past only.
    #[test]
    fn decisions_never_depend_on_future_demand() {
        let day = (86_400 / STEP) as usize;
        let wave = |i: usize| 50.0 + 40.0 * (i as f64 * std::f64::consts::TAU / day as f64).sin();
        let a: Vec<f64> = (0..3 * day).map(wave).collect();
        let k = 2 * day + 7;
        let mut b = a.clone();
        for v in &mut b[k..] {
            *v *= 3.0;
        }
        let run = |values: &[f64]| {
            let mut p = Predictive::new(
                Policy {
                    startup_secs: 300,
                    ..Policy::new(0.6, 10.0)
                },
                ForecastConfig::new(STEP),
            );
            simulate(&trace(values), STEP, &config(300), &mut p).rows
        };
        let (ra, rb) = (run(&a), run(&b));
        for t in 0..=k {
            assert_eq!(
                (ra[t].desired, ra[t].ready, ra[t].forecast),
                (rb[t].desired, rb[t].ready, rb[t].forecast),
                "step {t}"
            );
        }
        assert!(ra[k].forecast.is_some(), "the forecaster ran");
        assert_ne!(
            ra[k + 1].desired,
            rb[k + 1].desired,
            "the change is seen once past"
        );
    }
}
