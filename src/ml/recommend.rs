//! Rightsizing from metric history: per service, the minimum replicas, the scaling target and
//! the instance size that would have served the recorded load at the lowest cost, with a
//! confidence and the expected savings.
//!
//! Candidates are judged by replaying the history through a plain reactive model (replicas =
//! max(min, ⌈load / (per_replica × target)⌉)): simple on purpose, so the figures can be
//! checked by hand and the proposal never relies on a forecast being right.

use serde::Serialize;

use super::series::Series;

/// Hours in an average month, for monthly cost figures.
const HOURS_PER_MONTH: f64 = 730.0;
/// Targets recommended stay within these bounds, in steps of 0.05.
const TARGET_RANGE: (f64, f64) = (0.3, 0.85);
/// A proposal must save at least this share of the cost to be worth a change.
const WORTH_IT: f64 = 0.05;

/// What is known about one service besides its load history.
#[derive(Debug, Clone)]
pub struct ServiceSizing {
    pub service: String,
    /// Load one replica of the current instance type serves at 100% utilization.
    pub per_replica: f64,
    pub target: f64,
    /// Replica startup delay, seconds: load may grow this long (plus one metric step)
    /// before new capacity serves it.
    pub startup_secs: i64,
    /// The service's deployments' `min` and `max`, one entry per deployment.
    pub deployments: Vec<(u32, u32)>,
    pub instance_type: Option<String>,
    pub price_per_replica_hour: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub service: String,
    pub days_of_history: f64,
    /// 0 to 1: grows with history (full at 14 days) and shrinks with day-to-day variation
    /// of the daily peak.
    pub confidence: f64,
    pub target: Change<f64>,
    /// Per deployment.
    pub min_replicas: Change<u32>,
    pub instance_type: Option<Change<String>>,
    /// Capacity of the proposed instance size relative to the current one (0.5, 1 or 2).
    pub size_factor: f64,
    /// Replica-hours per month, replaying the history.
    pub replica_hours_per_month: Change<f64>,
    /// Per month, when a price is declared.
    pub cost_per_month: Option<Change<f64>>,
    /// Why each value was chosen, for the reader of the pull request.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change<T> {
    pub current: T,
    pub proposed: T,
}

impl<T: PartialEq> Change<T> {
    pub fn changed(&self) -> bool {
        self.current != self.proposed
    }
}

impl Recommendation {
    pub fn changes_anything(&self) -> bool {
        self.target.changed()
            || self.min_replicas.changed()
            || self.instance_type.as_ref().is_some_and(Change::changed)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecommendError {
    #[error("{service}: {hours:.1} h of load history; at least 24 h are needed")]
    TooLittleHistory { service: String, hours: f64 },
}

/// One candidate configuration and what it costs on the history.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    size_factor: f64,
    target: f64,
    min_per_deployment: u32,
}

pub fn recommend(load: &Series, sizing: &ServiceSizing) -> Result<Recommendation, RecommendError> {
    let step = load.step().unwrap_or(300).max(1);
    let hours = load.points.len() as f64 * step as f64 / 3600.0;
    if hours < 24.0 {
        return Err(RecommendError::TooLittleHistory {
            service: sizing.service.clone(),
            hours,
        });
    }
    let values = load.values();
    let deployments = sizing.deployments.len().max(1) as u32;
    let current_min = sizing.deployments.iter().map(|d| d.0).min().unwrap_or(0);
    let max_total: u32 = sizing.deployments.iter().map(|d| d.1).sum();
    let mut reasons = Vec::new();

    // Target: the headroom must absorb the load's growth over the lead time (startup plus
    // one metric step), in 99% of the windows seen.
    let lead_steps = (sizing.startup_secs as f64 / step as f64).ceil() as usize + 1;
    let growth = quantile(
        values
            .windows(lead_steps + 1)
            .filter(|w| w[0] > 0.0)
            .map(|w| w[lead_steps] / w[0])
            .collect(),
        0.99,
    )
    .unwrap_or(1.0)
    .max(1.0);
    let target = ((1.0 / growth) / 0.05).floor() * 0.05;
    let target = round2(target.clamp(TARGET_RANGE.0, TARGET_RANGE.1));
    reasons.push(format!(
        "target {target:.2}: load grew at most {:.0}% over {} min (startup plus one metric step) in 99% of windows",
        (growth - 1.0) * 100.0,
        lead_steps as i64 * step / 60
    ));

    // Minimum: what the quietest 1% of the history needs, spread over the deployments; a
    // deployment that had replicas keeps at least one, so no region goes dark.
    let min_for = |size_factor: f64, target: f64| {
        let low = quantile(values.clone(), 0.01).unwrap_or(0.0);
        let total = (low / (sizing.per_replica * size_factor * target)).ceil() as u32;
        let floor = u32::from(current_min > 0);
        total
            .div_ceil(deployments)
            .max(floor)
            .min(current_min.max(floor))
    };

    let current = Candidate {
        size_factor: 1.0,
        target: sizing.target,
        min_per_deployment: current_min,
    };
    // Replica-hours per month (in replicas of the current size) and the steps whose load
    // exceeded full capacity, replaying the history; replicas are capped at the max.
    let replay = |c: &Candidate| -> (f64, usize) {
        let capacity = sizing.per_replica * c.size_factor;
        let floor = c.min_per_deployment * deployments;
        let mut replica_steps = 0.0;
        let mut overloaded = 0;
        for v in &values {
            let replicas = ((v / (capacity * c.target)).ceil() as u32)
                .max(floor)
                .min(max_total);
            if *v > replicas as f64 * capacity {
                overloaded += 1;
            }
            replica_steps += replicas as f64 * c.size_factor;
        }
        (
            replica_steps / values.len() as f64 * HOURS_PER_MONTH,
            overloaded,
        )
    };
    // The target is a reliability call, proposed even when it costs more; the minimum and
    // the instance size are cost calls, and a resize must pay beyond the retuning.
    let retuned = Candidate {
        size_factor: 1.0,
        target,
        min_per_deployment: min_for(1.0, target),
    };
    let (retuned_hours, retuned_overloaded) = replay(&retuned);
    let mut best = (retuned, retuned_hours);
    let ladder = sizing.instance_type.as_deref().map(InstanceLadder::of);
    if let Some(Some(ladder)) = &ladder {
        for factor in [0.5, 2.0] {
            let c = Candidate {
                size_factor: factor,
                target,
                min_per_deployment: min_for(factor, target),
            };
            let (hours, overloaded) = replay(&c);
            if ladder.resized(factor).is_some()
                && overloaded <= retuned_overloaded
                && hours < best.1 * (1.0 - WORTH_IT)
            {
                best = (c, hours);
            }
        }
    }
    let now = replay(&current).0;
    let (chosen, proposed_hours) = best;
    if chosen.min_per_deployment != current_min {
        reasons.push(format!(
            "min {} per deployment: the quietest 1% of the history needs {} in all",
            chosen.min_per_deployment,
            chosen.min_per_deployment * deployments
        ));
    }
    let instance_type = match (&sizing.instance_type, &ladder) {
        (Some(now), Some(Some(ladder))) => {
            let proposed = Some(chosen.size_factor)
                .filter(|f| *f != 1.0)
                .and_then(|f| ladder.resized(f))
                .unwrap_or_else(|| now.clone());
            if proposed != *now {
                reasons.push(format!(
                    "{proposed}: {}× the capacity per replica is cheaper for this load's shape",
                    chosen.size_factor
                ));
            }
            Some(Change {
                current: now.clone(),
                proposed,
            })
        }
        (Some(now), _) => Some(Change {
            current: now.clone(),
            proposed: now.clone(),
        }),
        (None, _) => None,
    };

    Ok(Recommendation {
        service: sizing.service.clone(),
        days_of_history: round2(hours / 24.0),
        confidence: round2(confidence(load, hours)),
        target: Change {
            current: sizing.target,
            proposed: chosen.target,
        },
        min_replicas: Change {
            current: current_min,
            proposed: chosen.min_per_deployment,
        },
        instance_type,
        size_factor: chosen.size_factor,
        replica_hours_per_month: Change {
            current: round2(now),
            proposed: round2(proposed_hours),
        },
        cost_per_month: sizing.price_per_replica_hour.map(|p| Change {
            current: round2(now * p),
            proposed: round2(proposed_hours * p),
        }),
        reasons,
    })
}

/// Grows with history (full at 14 days); shrinks as the daily peaks vary (coefficient of
/// variation), since a history whose days differ says less about tomorrow.
fn confidence(load: &Series, hours: f64) -> f64 {
    let mut peaks: std::collections::BTreeMap<i64, f64> = Default::default();
    for p in &load.points {
        let day = p.ts.div_euclid(86_400);
        let e = peaks.entry(day).or_insert(f64::MIN);
        *e = e.max(p.value);
    }
    let peaks: Vec<f64> = peaks.into_values().collect();
    let mean = peaks.iter().sum::<f64>() / peaks.len() as f64;
    let var = peaks.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / peaks.len() as f64;
    let cv = if mean > 0.0 { var.sqrt() / mean } else { 1.0 };
    (hours / (14.0 * 24.0)).min(1.0) * (1.0 - cv.min(1.0))
}

fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    Some(v[i])
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The instance type with `factor` (0.5 or 2) times the capacity, in the same family.
pub fn resize_instance(name: &str, factor: f64) -> Option<String> {
    InstanceLadder::of(name)?.resized(factor)
}

/// Instance sizes one step smaller or larger in the same family, for the naming schemes
/// whose sizes double: AWS (`m5.large` → `m5.xlarge`), Google (`n2-standard-2` →
/// `n2-standard-4`) and Azure (`Standard_D2s_v5` → `Standard_D4s_v5`).
#[derive(Debug, Clone, PartialEq)]
enum InstanceLadder {
    Aws {
        family: String,
        size: usize,
    },
    /// Name split around the vCPU count.
    Counted {
        prefix: String,
        vcpus: u32,
        suffix: String,
    },
}

const AWS_SIZES: &[&str] = &[
    "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge",
    "16xlarge",
];

impl InstanceLadder {
    fn of(name: &str) -> Option<InstanceLadder> {
        if let Some((family, size)) = name.split_once('.') {
            let size = AWS_SIZES.iter().position(|s| *s == size)?;
            return Some(InstanceLadder::Aws {
                family: family.to_string(),
                size,
            });
        }
        if let Some(rest) = name.strip_prefix("Standard_") {
            // Standard_D2s_v5: a family letter, the vCPU count, then the rest.
            let digits_at = rest.find(|c: char| c.is_ascii_digit())?;
            let digits_end = rest[digits_at..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len(), |i| digits_at + i);
            return Some(InstanceLadder::Counted {
                prefix: format!("Standard_{}", &rest[..digits_at]),
                vcpus: rest[digits_at..digits_end].parse().ok()?,
                suffix: rest[digits_end..].to_string(),
            });
        }
        let (prefix, count) = name.rsplit_once('-')?;
        Some(InstanceLadder::Counted {
            prefix: format!("{prefix}-"),
            vcpus: count.parse().ok()?,
            suffix: String::new(),
        })
    }

    /// The name of the size `factor` times this one (0.5: one size down; otherwise one up),
    /// if the family has it.
    fn resized(&self, factor: f64) -> Option<String> {
        match self {
            InstanceLadder::Aws { family, size } => {
                let i = if factor < 1.0 {
                    size.checked_sub(1)?
                } else {
                    size + 1
                };
                // Below `large`, AWS sizes do not double in CPU.
                if i < 4 {
                    return None;
                }
                AWS_SIZES.get(i).map(|s| format!("{family}.{s}"))
            }
            InstanceLadder::Counted {
                prefix,
                vcpus,
                suffix,
            } => {
                let n = if factor < 1.0 {
                    (*vcpus % 2 == 0).then_some(vcpus / 2)?
                } else {
                    vcpus * 2
                };
                (2..=64)
                    .contains(&n)
                    .then(|| format!("{prefix}{n}{suffix}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::series::Point;

    fn daily(days: i64, low: f64, high: f64) -> Series {
        // A smooth day: low at midnight, high at noon, 5-minute steps.
        Series {
            name: "load".into(),
            points: (0..days * 288)
                .map(|i| {
                    let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                    Point {
                        ts: 1_700_000_000 - 1_700_000_000 % 86_400 + i * 300,
                        value: low + (high - low) * (1.0 - phase.cos()) / 2.0,
                    }
                })
                .collect(),
        }
    }

    fn sizing() -> ServiceSizing {
        ServiceSizing {
            service: "api".into(),
            per_replica: 100.0,
            target: 0.5,
            startup_secs: 180,
            deployments: vec![(4, 20), (4, 20)],
            instance_type: Some("m5.large".into()),
            price_per_replica_hour: Some(0.1),
        }
    }

    #[test]
    fn instance_ladders_step_within_their_family() {
        let up = |n: &str, f| InstanceLadder::of(n).and_then(|l| l.resized(f));
        assert_eq!(up("m5.large", 2.0).as_deref(), Some("m5.xlarge"));
        assert_eq!(up("m5.large", 0.5), None);
        assert_eq!(up("c5.2xlarge", 0.5).as_deref(), Some("c5.xlarge"));
        assert_eq!(up("n2-standard-2", 2.0).as_deref(), Some("n2-standard-4"));
        assert_eq!(up("n2-standard-4", 0.5).as_deref(), Some("n2-standard-2"));
        assert_eq!(
            up("Standard_D2s_v5", 2.0).as_deref(),
            Some("Standard_D4s_v5")
        );
        assert_eq!(up("weird", 2.0), None);
    }

    #[test]
    fn a_smooth_load_gets_a_higher_target_and_a_lower_min() {
        let r = recommend(&daily(14, 100.0, 1000.0), &sizing()).unwrap();
        // Smooth growth: about 6% per 10 minutes at most, so the target rises to the cap.
        assert_eq!(r.target.proposed, 0.85);
        // The quietest hour needs 100 / (100 × 0.85) → 2 replicas in all, 1 per deployment.
        assert_eq!(
            r.min_replicas,
            Change {
                current: 4,
                proposed: 1
            }
        );
        assert!(r.replica_hours_per_month.proposed < r.replica_hours_per_month.current);
        let cost = r.cost_per_month.unwrap();
        assert!(cost.proposed < cost.current);
        assert_eq!(r.days_of_history, 14.0);
        assert_eq!(r.confidence, 1.0);
    }

    #[test]
    fn a_bursty_load_keeps_its_headroom() {
        let mut load = daily(3, 100.0, 1000.0);
        // Every hour the load triples for one step: growth of 200% within the lead time.
        for (i, p) in load.points.iter_mut().enumerate() {
            if i % 12 == 0 {
                p.value *= 3.0;
            }
        }
        let r = recommend(&load, &sizing()).unwrap();
        assert_eq!(r.target.proposed, 0.3);
        assert!(r.confidence < 0.25, "3 days of history: {}", r.confidence);
    }

    #[test]
    fn a_day_of_history_is_required() {
        let e = recommend(&daily(0, 1.0, 2.0), &sizing()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "api: 0.0 h of load history; at least 24 h are needed"
        );
    }
}
