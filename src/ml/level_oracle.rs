//! A yardstick between the perfect-foresight bound ([`super::bound`]) and real forecasters:
//! the best policy that is told each step's **local level** (the mean of the five steps
//! centred on it, so the next ten minutes of a 5-minute trace) but not the step's own value.
//!
//! A forecaster can at best learn the level from the past; what is left is each step's
//! deviation from it. If even a policy that knows the level cannot cut overloads by the
//! benchmark's 80% within the HPA's replica-hours, the rest of the gap is per-step noise no
//! forecast of the history can foresee (docs/scaling.md).
//!
//! The policy (the simulator's timing, src/ml/simulate.rs): the decision before step `t`
//! sizes steps `t..=t+k` (`k` startup steps) for `level × m`, never below the reactive floor
//! (the bound's: the HPA's tolerance edge for the last observed demand). The multiplier `m`
//! is chosen per bucket of (level decile, tercile of the last observed value's ratio to its
//! level) from that bucket's own ratios, to minimise `replica-steps + λ × overloaded steps`;
//! [`best_within`] tries prices `λ` and keeps the run with the fewest overloads within a
//! replica-hour budget. The ratios are the whole trace's: the oracle knows their
//! distribution too.

use super::bound::{BoundInput, reactive_floor};
use super::scaler::{Decision, Replicas};
use super::series::Series;
use super::simulate::{self, Observed, PolicyStep, Run, ScalingPolicy, SimConfig};

/// Steps either side of a step in its level.
const HALF_WINDOW: usize = 2;
/// Multipliers tried per bucket: this many quantiles of the bucket's ratios.
const CANDIDATES: usize = 41;
/// Prices per overloaded step tried by [`best_within`], in replica-steps.
const PRICES: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 15.0, 25.0, 40.0, 60.0, 90.0, 130.0, 200.0, 350.0, 600.0, 1000.0,
];

/// The known-level policy for one price: its decision before every step, computed up front.
pub struct LevelOracle {
    desired: Vec<u32>,
}

impl ScalingPolicy for LevelOracle {
    fn decide(&mut self, observed: Observed<'_>, _replicas: Replicas) -> PolicyStep {
        let desired = self.desired[observed.past().len()];
        PolicyStep {
            decision: Decision {
                desired,
                reactive: desired,
                predicted: None,
                recommended: desired,
                binding: None,
                cost_capped: None,
                confidence: None,
            },
            forecast: None,
        }
    }
}

/// The oracle's run with the fewest overloaded steps among those paying at most
/// `budget_replica_hours`, and its price; `None` if every price pays more. The service is
/// the bound's (`input`).
pub fn best_within(
    trace: &Series,
    step_secs: i64,
    config: &SimConfig,
    input: &BoundInput,
    budget_replica_hours: f64,
) -> Option<(f64, Run)> {
    let model = Model::new(&trace.values(), input);
    PRICES
        .iter()
        .map(|&price| {
            let mut policy = model.policy(price);
            (
                price,
                simulate::simulate(trace, step_secs, config, &mut policy),
            )
        })
        .filter(|(_, run)| run.summary.replica_hours <= budget_replica_hours + 1e-9)
        .min_by_key(|(_, run)| run.summary.overload_intervals)
}

/// One step of a bucket as the multiplier fit sees it: sized for by the decision `k` steps
/// before it, above that decision's floor.
struct Sample {
    level: f64,
    demand: f64,
    floor: u32,
}

struct Model {
    demand: Vec<f64>,
    level: Vec<f64>,
    /// The reactive floor under the decision before each step (index 0 unused).
    floor: Vec<u32>,
    /// Each step's bucket when a decision sizes it having last seen step `seen`:
    /// `level_bucket[step] * 3 + ratio_bucket[seen]`.
    level_bucket: Vec<usize>,
    ratio_bucket: Vec<usize>,
    capacity: f64,
    k: usize,
}

impl Model {
    fn new(demand: &[f64], input: &BoundInput) -> Model {
        let n = demand.len();
        let level: Vec<f64> = (0..n)
            .map(|u| {
                let window = &demand[u.saturating_sub(HALF_WINDOW)..(u + HALF_WINDOW + 1).min(n)];
                window.iter().sum::<f64>() / window.len() as f64
            })
            .collect();
        let ratio: Vec<f64> = (0..n)
            .map(|u| {
                if level[u] > 0.0 {
                    demand[u] / level[u]
                } else {
                    1.0
                }
            })
            .collect();
        let level_edges = quantile_edges(&level, 10);
        let ratio_edges = quantile_edges(&ratio, 3);
        Model {
            demand: demand.to_vec(),
            level_bucket: level.iter().map(|&l| bucket(&level_edges, l)).collect(),
            ratio_bucket: ratio.iter().map(|&r| bucket(&ratio_edges, r)).collect(),
            level,
            floor: reactive_floor(demand, input),
            capacity: input.capacity_per_replica,
            k: input.startup_steps.max(1),
        }
    }

    fn bucket_of(&self, step: usize, seen: usize) -> usize {
        self.level_bucket[step] * 3 + self.ratio_bucket[seen]
    }

    /// The known-level policy at `price` replica-steps per overloaded step.
    fn policy(&self, price: f64) -> LevelOracle {
        let n = self.demand.len();
        let k = self.k;
        let mut samples: Vec<Vec<Sample>> = (0..30).map(|_| Vec::new()).collect();
        for u in (k + 1)..n {
            if self.level[u] > 0.0 {
                samples[self.bucket_of(u, u - k - 1)].push(Sample {
                    level: self.level[u],
                    demand: self.demand[u],
                    floor: self.floor[u - k],
                });
            }
        }
        let multiplier: Vec<Option<f64>> = samples
            .iter()
            .map(|s| self.best_multiplier(s, price))
            .collect();
        let fallback = multiplier.iter().flatten().copied().fold(1.0, f64::max);
        let desired = (0..n)
            .map(|t| {
                if t == 0 {
                    return 0;
                }
                (t..=(t + k).min(n - 1))
                    .map(|u| {
                        let m = multiplier[self.bucket_of(u, t - 1)].unwrap_or(fallback);
                        replicas_for(self.level[u] * m, self.capacity)
                    })
                    .fold(self.floor[t], u32::max)
            })
            .collect();
        LevelOracle { desired }
    }

    /// The multiplier, among quantiles of the samples' ratios, that minimises the samples'
    /// replica-steps plus `price` per overloaded one.
    fn best_multiplier(&self, samples: &[Sample], price: f64) -> Option<f64> {
        let mut ratios: Vec<f64> = samples.iter().map(|s| s.demand / s.level).collect();
        ratios.sort_by(f64::total_cmp);
        ratios.dedup();
        if ratios.is_empty() {
            return None;
        }
        let cost = |m: f64| {
            samples
                .iter()
                .map(|s| {
                    let replicas = replicas_for(s.level * m, self.capacity).max(s.floor);
                    let overloaded = s.demand > replicas as f64 * self.capacity;
                    replicas as f64 + if overloaded { price } else { 0.0 }
                })
                .sum::<f64>()
        };
        (0..CANDIDATES)
            .map(|i| ratios[i * (ratios.len() - 1) / (CANDIDATES - 1)])
            .map(|m| (cost(m), m))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, m)| m)
    }
}

/// The fewest whole replicas of `capacity` that serve `load`.
fn replicas_for(load: f64, capacity: f64) -> u32 {
    (load / capacity - 1e-9).ceil().max(0.0) as u32
}

/// The `parts − 1` values splitting `values` into `parts` equal-count groups.
fn quantile_edges(values: &[f64], parts: usize) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (1..parts)
        .map(|i| sorted.get(i * sorted.len() / parts).copied().unwrap_or(0.0))
        .collect()
}

fn bucket(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e <= x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::scaler::Policy;
    use crate::ml::simulate::Reactive;

    const STEP: i64 = 300;

    fn series(values: &[f64]) -> Series {
        Series::from_values(values, STEP)
    }

    fn input() -> BoundInput {
        BoundInput {
            capacity_per_replica: 1.0,
            target_utilization: 0.6,
            tolerance: 0.1,
            startup_steps: 1,
            initial_replicas: 1,
            min_replicas: 1,
            step_secs: STEP,
        }
    }

    fn config(values: &[f64]) -> SimConfig {
        SimConfig {
            startup_secs: STEP,
            capacity_per_replica: 1.0,
            initial_replicas: simulate::initial_replicas(&series(values), 1.0, 0.6, 1),
        }
    }

    fn hpa(trace: &Series, values: &[f64]) -> Run {
        let policy = Policy {
            startup_secs: STEP,
            ..Policy::new(0.6, 1.0)
        };
        simulate::simulate(trace, STEP, &config(values), &mut Reactive::new(policy))
    }

    /// A load that steps between two levels every few hours, with a little noise.
    fn steps() -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(3);
        (0..2000)
            .map(|t| {
                let level = if (t / 37) % 2 == 0 { 10.0 } else { 30.0 };
                level * (0.95 + 0.1 * rng.f64())
            })
            .collect()
    }

    #[test]
    fn knowing_the_level_serves_level_shifts_the_hpa_cannot_see_coming() {
        let values = steps();
        let trace = series(&values);
        let hpa = hpa(&trace, &values);
        // Every rise from 10 to 30 overloads the HPA for the startup step and the late one.
        assert!(hpa.summary.overload_intervals >= 50, "{:?}", hpa.summary);
        let (_, oracle) = best_within(&trace, STEP, &config(&values), &input(), f64::INFINITY)
            .expect("an unlimited budget admits every price");
        assert_eq!(oracle.summary.overload_intervals, 0, "{:?}", oracle.summary);
    }

    #[test]
    fn within_the_hpas_budget_the_oracle_keeps_to_it_and_to_the_reactive_floor() {
        let values = steps();
        let trace = series(&values);
        let hpa = hpa(&trace, &values);
        let budget = hpa.summary.replica_hours;
        let (_, oracle) = best_within(&trace, STEP, &config(&values), &input(), budget)
            .expect("the floor alone costs less than the HPA");
        assert!(oracle.summary.replica_hours <= budget);
        assert!(oracle.summary.overload_intervals < hpa.summary.overload_intervals);
        for (t, row) in oracle.rows.iter().enumerate().skip(1) {
            let floor = (values[t - 1] / (0.6 * 1.1) - 1e-9).ceil() as u32;
            assert!(row.desired >= floor.max(1), "step {t}: {row:?}");
        }
        // Less than the floor's own replica-hours: no price fits.
        assert!(best_within(&trace, STEP, &config(&values), &input(), 0.5 * budget).is_none());
    }
}
