//! A perfect-foresight lower bound on the replica-hours a scaling policy needs to keep its
//! overloaded steps at or under a goal while never scaling below the reactive (HPA)
//! recommendation, as predictive scaling must (docs/scaling.md).
//!
//! No forecaster can beat an oracle that knows the whole trace, so when this bound exceeds
//! the HPA's own replica-hours, no predictive policy bound by the reactive floor can have
//! both fewer overloads than the goal and no more replica-hours than the HPA on that trace.
//!
//! The model is the simulator's (src/ml/simulate.rs): the replicas paid for during step `t`
//! are the decision made before it, `P_t`; replicas asked for before step `t` serve from step
//! `t + k` (`k` startup steps); so at most `min(P_{s-k}, …, P_s)` replicas are ready at step
//! `s`, and any policy can have exactly that many by keeping what it asked for. A step is
//! overloaded when its demand exceeds the ready capacity. The decision before step `t` is at
//! least the reactive floor `F_t`: the least the HPA algorithm recommends for the demand of
//! step `t − 1` over every possible replica count (within its tolerance it keeps the current
//! count, which can be as low as `demand / (capacity × target × (1 + tolerance))`).
//!
//! Choosing which steps to serve is a constrained minimisation; its Lagrangian relaxation
//! (a price `λ` per overloaded step) is solved exactly by dynamic programming over which of
//! the next `k + 1` steps are served, and weak duality makes `g(λ) − λ·goal` a lower bound for
//! every `λ ≥ 0`. The largest such bound over a bisection of `λ` is reported, with the cost of
//! the cheapest schedule found that meets the goal (an upper bound: an oracle achieves it).

/// What the bound assumes of the service: the simulator's and the HPA's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundInput {
    pub capacity_per_replica: f64,
    pub target_utilization: f64,
    /// The HPA's tolerance (0.1).
    pub tolerance: f64,
    /// Steps from asking for a replica to its serving (at least 1 here).
    pub startup_steps: usize,
    pub initial_replicas: u32,
    pub min_replicas: u32,
    pub step_secs: i64,
}

/// The bound, in replica-hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// No policy above the reactive floor meets the goal with fewer replica-hours.
    pub lower: f64,
    /// Replica-hours of a perfect-foresight schedule that meets the goal (`lower ≤ upper`).
    pub upper: f64,
}

/// The perfect-foresight bound for `demand` (one value per step) with at most
/// `max_overloads` overloaded steps.
pub fn replica_hours_bound(demand: &[f64], input: &BoundInput, max_overloads: usize) -> Bound {
    let problem = Problem::new(demand, input);
    let hours = input.step_secs as f64 / 3600.0;
    // λ = 0 ignores overloads (the floor alone); a price above any step's cost serves every
    // step that can be served.
    let ceiling = problem.need.iter().copied().max().unwrap_or(0) as f64
        * (input.startup_steps + 1) as f64
        + 1.0;
    let (mut lo, mut hi) = (0.0, ceiling);
    let mut lower = f64::NEG_INFINITY;
    let mut upper = f64::INFINITY;
    let mut consider = |lambda: f64| {
        let s = problem.solve(lambda);
        lower = lower.max(s.objective(lambda) - lambda * max_overloads as f64);
        if s.overloads <= max_overloads {
            upper = upper.min(s.replica_steps);
        }
        s.overloads <= max_overloads
    };
    // If even the highest price leaves too many overloads, the goal cannot be met at all.
    if !consider(hi) {
        return Bound {
            lower: f64::INFINITY,
            upper: f64::INFINITY,
        };
    }
    consider(lo);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if consider(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Bound {
        lower: lower * hours,
        upper: upper * hours,
    }
}

/// The reactive floor under the decision before each step: the fewest replicas the HPA
/// algorithm can keep for the demand of the step before, at the edge of its tolerance
/// (step 0 is the initial count).
pub fn reactive_floor(demand: &[f64], input: &BoundInput) -> Vec<u32> {
    let per_replica =
        input.capacity_per_replica * input.target_utilization * (1.0 + input.tolerance);
    (0..demand.len())
        .map(|t| {
            let f = if t == 0 {
                input.initial_replicas
            } else {
                (demand[t - 1] / per_replica - 1e-9).ceil().max(0.0) as u32
            };
            f.max(input.min_replicas)
        })
        .collect()
}

struct Problem {
    /// Replicas that serve each step's demand in full.
    need: Vec<u32>,
    /// The reactive floor under each decision (step 0 is the fixed initial count).
    floor: Vec<u32>,
    initial: u32,
    k: usize,
}

/// One schedule of the relaxed problem: replica-steps paid and overloaded steps.
#[derive(Debug, Clone, Copy)]
struct Solution {
    replica_steps: f64,
    overloads: usize,
}

impl Solution {
    const NONE: Solution = Solution {
        replica_steps: f64::INFINITY,
        overloads: usize::MAX,
    };

    fn objective(&self, lambda: f64) -> f64 {
        self.replica_steps + lambda * self.overloads as f64
    }

    /// Lower objective first; on a tie, fewer overloads.
    fn better_than(&self, other: &Solution, lambda: f64) -> bool {
        let (a, b) = (self.objective(lambda), other.objective(lambda));
        a < b || (a == b && self.overloads < other.overloads)
    }
}

impl Problem {
    fn new(demand: &[f64], input: &BoundInput) -> Problem {
        let cap = input.capacity_per_replica;
        let need = demand
            .iter()
            .map(|&d| {
                let n = (d / cap).ceil().max(0.0) as u32;
                // Float slack: the fewest whole replicas with `n × cap ≥ d`.
                if n > 0 && (n - 1) as f64 * cap >= d {
                    n - 1
                } else {
                    n
                }
            })
            .collect();
        Problem {
            need,
            floor: reactive_floor(demand, input),
            initial: input.initial_replicas,
            k: input.startup_steps.max(1),
        }
    }

    /// Minimises `replica-steps + λ × overloaded steps` exactly. The state before deciding
    /// `P_t` is which of steps `t..=t+k` are to be served (bit `i`: step `t + i`); `P_t` must
    /// cover every served step in that window, since a served step `s` needs
    /// `P_{s-k}..=P_s` all at least `need_s` (and `P_0` is the fixed initial count).
    fn solve(&self, lambda: f64) -> Solution {
        let n = self.need.len();
        let k = self.k;
        let served = |mask: usize, i: usize| mask >> i & 1 == 1;
        // Start: which of steps 0..=k are served; steps past the end are never served.
        let mut best: Vec<Solution> = (0..1usize << (k + 1))
            .map(|mask| {
                let mut overloads = 0;
                for i in 0..=k {
                    match (i < n, served(mask, i)) {
                        (false, true) => return Solution::NONE,
                        (true, true) if self.need[i] > self.initial => return Solution::NONE,
                        (true, false) => overloads += 1,
                        _ => {}
                    }
                }
                Solution {
                    replica_steps: 0.0,
                    overloads,
                }
            })
            .collect();
        for t in 0..n {
            let mut next = vec![Solution::NONE; best.len()];
            for (mask, s) in best.iter().enumerate() {
                if s.replica_steps.is_infinite() {
                    continue;
                }
                let p = if t == 0 {
                    self.initial
                } else {
                    (0..=k)
                        .filter(|&i| served(mask, i))
                        .map(|i| self.need[t + i])
                        .fold(self.floor[t], u32::max)
                };
                // Shift the window; choose whether step t + k + 1 is served.
                let incoming = t + k + 1;
                for serve in [false, true] {
                    if serve && incoming >= n {
                        continue;
                    }
                    let candidate = Solution {
                        replica_steps: s.replica_steps + p as f64,
                        overloads: s.overloads + usize::from(incoming < n && !serve),
                    };
                    let m = (mask >> 1) | (usize::from(serve) << k);
                    if candidate.better_than(&next[m], lambda) {
                        next[m] = candidate;
                    }
                }
            }
            best = next;
        }
        best.into_iter().fold(Solution::NONE, |a, b| {
            if b.better_than(&a, lambda) { b } else { a }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::scaler::Policy;
    use crate::ml::series::Series;
    use crate::ml::simulate::{self, Predictive, Reactive, SimConfig};

    const STEP: i64 = 300;

    fn input(initial: u32, startup_steps: usize) -> BoundInput {
        BoundInput {
            capacity_per_replica: 1.0,
            target_utilization: 0.6,
            tolerance: 0.1,
            startup_steps,
            initial_replicas: initial,
            min_replicas: 1,
            step_secs: STEP,
        }
    }

    /// The cheapest schedule by trying every one, for tiny traces.
    fn brute_force(demand: &[f64], input: &BoundInput, max_overloads: usize) -> f64 {
        let p = Problem::new(demand, input);
        let n = demand.len();
        let top = p.need.iter().chain(&p.floor).copied().max().unwrap() + 1;
        let mut best = f64::INFINITY;
        let mut schedule = vec![0u32; n];
        let combos = (top as usize).pow(n as u32 - 1);
        for c in 0..combos {
            schedule[0] = p.initial;
            let mut rest = c;
            for slot in schedule.iter_mut().skip(1) {
                *slot = (rest % top as usize) as u32;
                rest /= top as usize;
            }
            if (1..n).any(|t| schedule[t] < p.floor[t]) {
                continue;
            }
            let overloads = (0..n)
                .filter(|&s| {
                    let ready = schedule[s.saturating_sub(p.k)..=s].iter().min().unwrap();
                    (*ready as f64) < demand[s]
                })
                .count();
            if overloads <= max_overloads {
                best = best.min(schedule.iter().sum::<u32>() as f64);
            }
        }
        best * STEP as f64 / 3600.0
    }

    #[test]
    fn the_bound_brackets_the_cheapest_schedule() {
        let mut rng = fastrand::Rng::with_seed(7);
        for case in 0..40 {
            let n = 4 + case % 3;
            let demand: Vec<f64> = (0..n).map(|_| (rng.f64() * 4.0).round()).collect();
            let startup = 1 + case % 2;
            let i = input(2, startup);
            for goal in 0..n {
                let exact = brute_force(&demand, &i, goal);
                let b = replica_hours_bound(&demand, &i, goal);
                assert!(
                    b.lower <= exact + 1e-9 && exact <= b.upper + 1e-9,
                    "{demand:?} k={startup} goal={goal}: {b:?} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn a_spike_no_one_can_foresee_costs_two_steps_of_replicas() {
        // A flat load of 3 (floor: ceil(3 / 0.66) = 5 replicas) and one spike to 9 at step 4.
        // Serving it takes 9 replicas during steps 3 and 4: 8 more replica-steps than the floor.
        let demand = [3.0, 3.0, 3.0, 3.0, 9.0, 3.0];
        let i = input(5, 1);
        let floor_only = replica_hours_bound(&demand, &i, 1);
        let served = replica_hours_bound(&demand, &i, 0);
        let hours = STEP as f64 / 3600.0;
        assert!((floor_only.upper - floor_only.lower).abs() < 1e-9);
        // P = 5, 5, 5, 5, 5, ceil(9 / 0.66) = 14 after the spike.
        assert!(
            (floor_only.lower - 39.0 * hours).abs() < 1e-9,
            "{floor_only:?}"
        );
        assert!((served.lower - 47.0 * hours).abs() < 1e-9, "{served:?}");
    }

    fn series(values: &[f64]) -> Series {
        Series::from_values(values, STEP)
    }

    #[test]
    fn real_policies_never_beat_the_bound() {
        // A noisy daily cycle: both the HPA and predictive scaling stay above the reactive
        // floor, so neither can use fewer replica-hours than the bound at its own overloads.
        let mut rng = fastrand::Rng::with_seed(11);
        let values: Vec<f64> = (0..3 * 288)
            .map(|t| {
                let day = (t as f64 / 288.0 * std::f64::consts::TAU).sin();
                (100.0 + 60.0 * day) * (0.7 + 0.6 * rng.f64())
            })
            .collect();
        let trace = series(&values);
        let capacity = simulate::default_capacity(&trace, 0.6);
        let policy = Policy {
            startup_secs: STEP,
            ..Policy::new(0.6, capacity)
        };
        let config = SimConfig {
            startup_secs: STEP,
            capacity_per_replica: capacity,
            initial_replicas: simulate::initial_replicas(&trace, capacity, 0.6, policy.min),
        };
        let i = BoundInput {
            capacity_per_replica: capacity,
            initial_replicas: config.initial_replicas,
            ..input(0, 1)
        };
        let hpa = simulate::simulate(&trace, STEP, &config, &mut Reactive::new(policy.clone()));
        let forecast = crate::ml::forecast::ForecastConfig::new(STEP);
        let pred = simulate::simulate(
            &trace,
            STEP,
            &config,
            &mut Predictive::new(policy, forecast),
        );
        for run in [&hpa, &pred] {
            let b = replica_hours_bound(&values, &i, run.summary.overload_intervals);
            assert!(
                b.lower <= run.summary.replica_hours + 1e-6,
                "{b:?} vs {:?}",
                run.summary
            );
        }
    }
}
