//! The scaling decision: how many replicas a service should have now, from the load observed
//! so far, the replicas it has, its policy and (for predictive scaling) a load forecast.
//!
//! Clock-free: the caller passes `now` and the observations, so the daemon, `cairn scale
//! explain` and the simulator share this code. Without a forecast it is the Kubernetes
//! Horizontal Pod Autoscaler's algorithm (10% tolerance, scale-down stabilization window,
//! optional scale-in rate limit); with one, the forecast's recommendation is added, never
//! below the reactive one. Then come min/max, the cost cap and scale-to-zero. Rules and their
//! order are in docs/scaling.md.

use std::collections::VecDeque;

use super::forecast::Forecast;
use super::series::Point;

/// How a service scales. Load and capacity are in the same (arbitrary) units.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The utilization replicas are sized for (0 < u ≤ 1), e.g. 0.6.
    pub target_utilization: f64,
    /// The load one replica serves at 100% utilization.
    pub capacity_per_replica: f64,
    /// Per-service factor applied to the observed and forecast load before sizing: the share
    /// of a shared metric this service serves, or a safety margin. 1 by default.
    pub load_factor: f64,
    pub min: u32,
    pub max: u32,
    /// Seconds from asking for a replica to its serving: the provisioning lead time the
    /// forecast must cover.
    pub startup_secs: i64,
    /// No change while the utilization is within this fraction of the target (HPA: 0.1).
    pub tolerance: f64,
    /// Scale in only to the highest recommendation of this many seconds (HPA: 300).
    pub scale_in_stabilization_secs: i64,
    pub scale_in_limit: Option<ScaleInLimit>,
    pub cost: Option<CostCap>,
    /// Scale to zero once the load has been zero for this many seconds; wake when load
    /// appears again.
    pub scale_to_zero_after_secs: Option<i64>,
}

/// At most `percent` of the replicas present at the start of any `period_secs` removed
/// within it (the HPA's scale-down `Percent` policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleInLimit {
    pub percent: f64,
    pub period_secs: i64,
}

/// A budget: never more replicas than `max_per_hour / per_replica_hour`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostCap {
    pub per_replica_hour: f64,
    pub max_per_hour: f64,
}

impl CostCap {
    /// The most replicas the budget pays for.
    pub fn affordable(&self) -> u32 {
        if self.per_replica_hour <= 0.0 {
            return u32::MAX;
        }
        (self.max_per_hour / self.per_replica_hour + 1e-9)
            .floor()
            .min(u32::MAX as f64) as u32
    }
}

impl Policy {
    /// The HPA's defaults: 10% tolerance, 5-minute scale-in stabilization, no scale-in limit,
    /// 1 to unlimited replicas, 1-minute startup.
    pub fn new(target_utilization: f64, capacity_per_replica: f64) -> Policy {
        Policy {
            target_utilization,
            capacity_per_replica,
            load_factor: 1.0,
            min: 1,
            max: u32::MAX,
            startup_secs: 60,
            tolerance: 0.1,
            scale_in_stabilization_secs: 300,
            scale_in_limit: None,
            cost: None,
            scale_to_zero_after_secs: None,
        }
    }

    /// A stack's `[scaling.SERVICE]` policy for a group of `min..=max` replicas, each serving
    /// `capacity_per_replica` of the scaling metric.
    pub fn from_config(
        p: &crate::config::ScalingPolicy,
        capacity_per_replica: f64,
        min: u32,
        max: u32,
    ) -> Policy {
        Policy {
            min,
            max,
            startup_secs: p.startup.as_secs() as i64,
            scale_in_stabilization_secs: p.scale_in_stabilization.as_secs() as i64,
            cost: p.cost.as_ref().and_then(|c| {
                c.max_per_hour.map(|max_per_hour| CostCap {
                    per_replica_hour: c.per_replica_hour,
                    max_per_hour,
                })
            }),
            load_factor: p.load_factor,
            scale_in_limit: p.scale_in_limit.map(|(percent, period)| ScaleInLimit {
                percent,
                period_secs: period.as_secs() as i64,
            }),
            scale_to_zero_after_secs: p.scale_to_zero_after.map(|d| d.as_secs() as i64),
            ..Policy::new(p.target_utilization, capacity_per_replica)
        }
    }

    /// Replicas (fractional) that serve `load` at `utilization`.
    fn replicas_needed(&self, load: f64, utilization: f64) -> f64 {
        load * self.load_factor / (self.capacity_per_replica * utilization)
    }

    /// Whole replicas that serve `load` at `utilization`.
    fn replicas_for(&self, load: f64, utilization: f64) -> u32 {
        // A hair of slack so a load of exactly N replicas' worth is not rounded up to N+1.
        (self.replicas_needed(load, utilization) - 1e-9)
            .ceil()
            .clamp(0.0, u32::MAX as f64) as u32
    }
}

/// Sets `desired` to `value`, recording `why` when that changes it.
fn bind(desired: &mut u32, binding: &mut Option<Constraint>, value: u32, why: Constraint) {
    if value != *desired {
        *desired = value;
        *binding = Some(why);
    }
}

/// The replicas a service has now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    /// Asked for (running or starting): what the service pays for.
    pub current: u32,
    /// Started and serving.
    pub ready: u32,
}

/// What bound the decision, when it differs from the recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    Min,
    Max,
    CostCap,
    ScaleInLimit,
    Stabilization,
    ScaleToZero,
    Wake,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Constraint::Min => "min replicas",
            Constraint::Max => "max replicas",
            Constraint::CostCap => "cost cap",
            Constraint::ScaleInLimit => "scale-in limit",
            Constraint::Stabilization => "scale-in stabilization",
            Constraint::ScaleToZero => "scale to zero (idle)",
            Constraint::Wake => "wake on demand",
        })
    }
}

/// The cost cap lowered the decision: an event for the operator.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CostCapped {
    /// Replicas wanted before the cap.
    pub wanted: u32,
    /// Replicas the budget pays for.
    pub allowed: u32,
    /// What `wanted` would cost per hour.
    pub wanted_per_hour: f64,
    pub max_per_hour: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    /// The replicas to have.
    pub desired: u32,
    /// The HPA's recommendation from the last observed load.
    pub reactive: u32,
    /// The forecast's recommendation, when a forecast was given.
    pub predicted: Option<u32>,
    /// The larger of the two, before constraints.
    pub recommended: u32,
    /// The constraint that set `desired`, if it is not `recommended`.
    pub binding: Option<Constraint>,
    pub cost_capped: Option<CostCapped>,
    /// The forecast's confidence (0 to 1), when a forecast was given.
    pub confidence: Option<f64>,
}

/// Decides replicas for one service; remembers its recent recommendations and scale-ins,
/// which stabilization and the scale-in limit need.
#[derive(Debug, Clone)]
pub struct Scaler {
    policy: Policy,
    recommendations: VecDeque<(i64, u32)>,
    scale_ins: VecDeque<(i64, u32)>,
}

impl Scaler {
    pub fn new(policy: Policy) -> Scaler {
        Scaler {
            policy,
            recommendations: VecDeque::new(),
            scale_ins: VecDeque::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The decision at `now` (Unix seconds) from the load observed so far (`load`, in time
    /// order; only its recent part is read), the service's replicas and, for predictive
    /// scaling, a forecast made from the same observations. The scaler assumes its decisions
    /// are carried out.
    pub fn decide(
        &mut self,
        now: i64,
        load: &[Point],
        replicas: Replicas,
        forecast: Option<&Forecast>,
    ) -> Decision {
        let last_load = load.last().map_or(0.0, |pt| pt.value.max(0.0));
        let reactive = self.reactive(last_load, replicas);
        let predicted = forecast.map(|f| self.predicted(now, f, replicas.current));
        let recommended = reactive.max(predicted.unwrap_or(0));

        let mut desired = recommended;
        let mut binding = None;
        let stabilized = self.stabilize(now, recommended, replicas.current);
        bind(
            &mut desired,
            &mut binding,
            stabilized,
            Constraint::Stabilization,
        );
        let limited = self.limit_scale_in(now, desired, replicas.current);
        bind(
            &mut desired,
            &mut binding,
            limited,
            Constraint::ScaleInLimit,
        );
        let p = &self.policy;
        let floor = desired.max(p.min);
        bind(&mut desired, &mut binding, floor, Constraint::Min);
        let ceiling = desired.min(p.max);
        bind(&mut desired, &mut binding, ceiling, Constraint::Max);
        let mut cost_capped = None;
        if let Some(cost) = p.cost {
            // The budget does not take a service below its declared minimum.
            let allowed = cost.affordable().max(p.min);
            if desired > allowed {
                cost_capped = Some(CostCapped {
                    wanted: desired,
                    allowed,
                    wanted_per_hour: desired as f64 * cost.per_replica_hour,
                    max_per_hour: cost.max_per_hour,
                });
                bind(&mut desired, &mut binding, allowed, Constraint::CostCap);
            }
        }
        if self.idle(now, load) {
            bind(&mut desired, &mut binding, 0, Constraint::ScaleToZero);
        } else if replicas.current == 0 && last_load > 0.0 {
            // Load reached a service at zero: wake it, whatever else bound the decision.
            desired = desired.max(1);
            binding = Some(Constraint::Wake);
        }
        if desired < replicas.current {
            self.scale_ins.push_back((now, replicas.current - desired));
        }
        Decision {
            desired,
            reactive,
            predicted,
            recommended,
            binding,
            cost_capped,
            confidence: forecast.map(|f| f.confidence),
        }
    }

    /// The HPA's recommendation: `ceil(load / (capacity × target))`, unless the utilization
    /// of the ready replicas is within the tolerance of the target, or it asks for more
    /// while starting replicas (counted as idle, as the HPA counts unready pods) would
    /// already bring the utilization back within it.
    fn reactive(&self, load: f64, r: Replicas) -> u32 {
        let p = &self.policy;
        let wanted = p.replicas_for(load, p.target_utilization);
        if r.ready == 0 {
            return wanted;
        }
        let ratio_of = |replicas: u32| {
            load * p.load_factor / (replicas as f64 * p.capacity_per_replica) / p.target_utilization
        };
        let ratio = ratio_of(r.ready);
        if (ratio - 1.0).abs() <= p.tolerance {
            return r.current;
        }
        if ratio > 1.0 && r.current > r.ready && ratio_of(r.current) <= 1.0 + p.tolerance {
            return r.current;
        }
        wanted
    }

    /// Replicas for the forecast over the lead time: every step from now until replicas
    /// asked for now would be ready must fit its point forecast at the target utilization
    /// and its upper quantile at full capacity. Within the tolerance of `current`, `current`.
    fn predicted(&self, now: i64, f: &Forecast, current: u32) -> u32 {
        let p = &self.policy;
        let window: Vec<_> = f
            .points
            .iter()
            .filter(|pt| pt.ts >= now && pt.ts <= now + p.startup_secs)
            .collect();
        // A horizon shorter than the startup delay: use all of it.
        let window = if window.is_empty() {
            f.points.iter().filter(|pt| pt.ts >= now).collect()
        } else {
            window
        };
        let need = window
            .iter()
            .map(|pt| {
                p.replicas_needed(pt.point, p.target_utilization)
                    .max(p.replicas_needed(pt.upper, 1.0))
            })
            .fold(0.0, f64::max);
        // The HPA's tolerance, for the same reason: no change for a few percent.
        if current > 0 && (need / current as f64 - 1.0).abs() <= p.tolerance {
            return current;
        }
        (need - 1e-9).ceil().max(0.0) as u32
    }

    /// The HPA's scale-down stabilization: never below the highest recommendation made in the
    /// window. The window includes its start: decisions every step stand for the HPA's
    /// 15-second syncs in between, which saw the previous step's load.
    fn stabilize(&mut self, now: i64, recommended: u32, current: u32) -> u32 {
        let window = self.policy.scale_in_stabilization_secs;
        self.recommendations.push_back((now, recommended));
        while self
            .recommendations
            .front()
            .is_some_and(|(ts, _)| *ts < now - window)
        {
            self.recommendations.pop_front();
        }
        let highest = self
            .recommendations
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommended);
        if recommended >= current {
            recommended
        } else {
            current.min(highest)
        }
    }

    fn limit_scale_in(&mut self, now: i64, desired: u32, current: u32) -> u32 {
        let Some(limit) = self.policy.scale_in_limit else {
            return desired;
        };
        while self
            .scale_ins
            .front()
            .is_some_and(|(ts, _)| *ts <= now - limit.period_secs)
        {
            self.scale_ins.pop_front();
        }
        if desired >= current {
            return desired;
        }
        let removed: u32 = self.scale_ins.iter().map(|(_, n)| n).sum();
        let period_start = (current + removed) as f64;
        let floor = (period_start * (1.0 - limit.percent / 100.0) - 1e-9).ceil() as u32;
        desired.max(floor.min(current))
    }

    /// Whether the load has been zero for the whole idle period (with history covering it).
    fn idle(&self, now: i64, load: &[Point]) -> bool {
        let Some(after) = self.policy.scale_to_zero_after_secs else {
            return false;
        };
        let since = now - after;
        load.first().is_some_and(|p| p.ts <= since)
            && load
                .iter()
                .rev()
                .take_while(|p| p.ts >= since)
                .all(|p| p.value <= 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::forecast::ForecastPoint;

    const STEP: i64 = 300;

    /// Capacity 10 per replica, target 50%: a replica is sized for 5 units.
    fn policy() -> Policy {
        Policy {
            min: 1,
            ..Policy::new(0.5, 10.0)
        }
    }

    fn at(ts: i64, value: f64) -> Vec<Point> {
        vec![Point { ts, value }]
    }

    fn steady(n: u32) -> Replicas {
        Replicas {
            current: n,
            ready: n,
        }
    }

    #[test]
    fn hpa_formula_and_tolerance() {
        let mut s = Scaler::new(policy());
        // 4 replicas at 60% (load 24): ratio 1.2, outside the 10% tolerance: ceil(4 × 1.2) = 5.
        let d = s.decide(0, &at(0, 24.0), steady(4), None);
        assert_eq!((d.reactive, d.desired, d.binding), (5, 5, None));
        // 4 replicas at 54% (ratio 1.08): within tolerance, no change.
        let d = s.decide(STEP, &at(STEP, 21.6), steady(4), None);
        assert_eq!(d.desired, 4);
        // At 30% (ratio 0.6), once the stabilization window has passed: ceil(12 / 5) = 3.
        let d = s.decide(10 * STEP, &at(10 * STEP, 12.0), steady(4), None);
        assert_eq!((d.reactive, d.desired), (3, 3));
    }

    #[test]
    fn starting_replicas_count_as_idle_before_asking_for_more() {
        let mut s = Scaler::new(policy());
        // 2 ready of 4 at load 17: the ready pair runs at 85% (ratio 1.7), but all four
        // would run at 42.5%: the HPA waits for the starting pair.
        let r = Replicas {
            current: 4,
            ready: 2,
        };
        assert_eq!(s.decide(0, &at(0, 17.0), r, None).desired, 4);
        // At load 30 even all four are short (ratio 1.5): ceil(30 / 5) = 6.
        assert_eq!(s.decide(STEP, &at(STEP, 30.0), r, None).desired, 6);
    }

    #[test]
    fn scale_in_is_stabilized_over_the_window() {
        let mut s = Scaler::new(policy());
        assert_eq!(s.decide(0, &at(0, 50.0), steady(8), None).desired, 10);
        // The load drops at once; the recommendation of 5 minutes ago (10) still holds.
        let d = s.decide(STEP, &at(STEP, 10.0), steady(10), None);
        assert_eq!(
            (d.recommended, d.desired, d.binding),
            (2, 10, Some(Constraint::Stabilization))
        );
        // 10 minutes later the window holds only low recommendations.
        let d = s.decide(2 * STEP, &at(2 * STEP, 10.0), steady(10), None);
        assert_eq!((d.desired, d.binding), (2, None));
        // Scaling up is never delayed.
        let d = s.decide(3 * STEP, &at(3 * STEP, 40.0), steady(2), None);
        assert_eq!(d.desired, 8);
    }

    #[test]
    fn scale_in_limit_bounds_removals_per_period() {
        let mut s = Scaler::new(Policy {
            scale_in_stabilization_secs: 0,
            scale_in_limit: Some(ScaleInLimit {
                percent: 50.0,
                period_secs: 600,
            }),
            ..policy()
        });
        // From 20 to 1 wanted: at most half of 20 may go within 10 minutes.
        let d = s.decide(0, &at(0, 1.0), steady(20), None);
        assert_eq!((d.desired, d.binding), (10, Some(Constraint::ScaleInLimit)));
        // 5 minutes later the period still counts the 10 removed: none more.
        let d = s.decide(STEP, &at(STEP, 1.0), steady(10), None);
        assert_eq!(d.desired, 10);
        // Once the period has passed, half of 10.
        let d = s.decide(2 * STEP, &at(2 * STEP, 1.0), steady(10), None);
        assert_eq!(d.desired, 5);
    }

    #[test]
    fn min_and_max_bind() {
        let mut s = Scaler::new(Policy {
            min: 3,
            max: 6,
            ..policy()
        });
        let d = s.decide(0, &at(0, 100.0), steady(3), None);
        assert_eq!(
            (d.recommended, d.desired, d.binding),
            (20, 6, Some(Constraint::Max))
        );
        let mut s = Scaler::new(Policy { min: 3, ..policy() });
        let d = s.decide(0, &at(0, 1.0), steady(3), None);
        assert_eq!((d.desired, d.binding), (3, Some(Constraint::Min)));
    }

    #[test]
    fn cost_cap_binds_with_an_event() {
        let mut s = Scaler::new(Policy {
            cost: Some(CostCap {
                per_replica_hour: 0.25,
                max_per_hour: 2.0,
            }),
            ..policy()
        });
        let d = s.decide(0, &at(0, 60.0), steady(4), None);
        assert_eq!((d.desired, d.binding), (8, Some(Constraint::CostCap)));
        assert_eq!(
            d.cost_capped,
            Some(CostCapped {
                wanted: 12,
                allowed: 8,
                wanted_per_hour: 3.0,
                max_per_hour: 2.0
            })
        );
        // Under budget (after the stabilization window): no event.
        let d = s.decide(2 * STEP, &at(2 * STEP, 30.0), steady(8), None);
        assert_eq!((d.desired, d.cost_capped), (6, None));
    }

    #[test]
    fn scales_to_zero_when_idle_and_wakes_on_demand() {
        let mut s = Scaler::new(Policy {
            scale_to_zero_after_secs: Some(900),
            ..policy()
        });
        let zeros: Vec<Point> = (0..4)
            .map(|i| Point {
                ts: i * STEP,
                value: 0.0,
            })
            .collect();
        // 10 minutes of no load: not yet idle long enough.
        let d = s.decide(2 * STEP, &zeros[..3], steady(1), None);
        assert_eq!((d.desired, d.binding), (1, Some(Constraint::Min)));
        // 15 minutes: to zero.
        let d = s.decide(3 * STEP, &zeros, steady(1), None);
        assert_eq!((d.desired, d.binding), (0, Some(Constraint::ScaleToZero)));
        // Load arrives: wake with what it needs (at least one).
        let mut woken = zeros.clone();
        woken.push(Point {
            ts: 4 * STEP,
            value: 12.0,
        });
        let d = s.decide(4 * STEP, &woken, steady(0), None);
        assert_eq!((d.desired, d.binding), (3, Some(Constraint::Wake)));
        woken.last_mut().unwrap().value = 0.5;
        let d = s.decide(5 * STEP, &woken, steady(0), None);
        assert_eq!((d.desired, d.binding), (1, Some(Constraint::Wake)));
    }

    #[test]
    fn forecast_over_the_lead_time_never_below_reactive() {
        let mut s = Scaler::new(Policy {
            startup_secs: 600,
            ..policy()
        });
        let point = |ts, point, upper| ForecastPoint { ts, point, upper };
        let f = Forecast {
            points: vec![
                point(STEP, 10.0, 12.0),
                point(2 * STEP, 20.0, 24.0),
                point(3 * STEP, 30.0, 70.0),
                // Beyond the 10-minute lead time from now (= STEP): ignored.
                point(4 * STEP, 90.0, 99.0),
            ],
            confidence: 0.8,
        };
        // Point 30 at 50% needs 6 replicas; upper 70 at 100% needs 7.
        let d = s.decide(STEP, &at(0, 10.0), steady(2), Some(&f));
        assert_eq!(
            (d.reactive, d.predicted, d.desired, d.confidence),
            (2, Some(7), 7, Some(0.8))
        );
        // A forecast below the observed load does not lower the decision.
        let low = Forecast {
            points: vec![point(2 * STEP, 1.0, 1.0)],
            confidence: 0.8,
        };
        let d = s.decide(2 * STEP, &at(STEP, 40.0), steady(7), Some(&low));
        assert_eq!((d.reactive, d.predicted, d.desired), (8, Some(1), 8));
    }
}
