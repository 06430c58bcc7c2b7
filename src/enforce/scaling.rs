//! Predictive scaling in the daemon: one task per service whose scaling policy declares a
//! load metric. Every interval it reads the load since its last read, feeds the forecaster
//! (predictive policies), decides with the same scaler as `cairn simulate` and `cairn scale
//! explain`, and when the decision changes the service's replicas, publishes them per group
//! and asks for a reconcile of those groups: the providers resize them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::{Shared, Trigger};
use crate::config::{ScalingPolicy, Stack};
use crate::ml::forecast::{ForecastConfig, Forecaster};
use crate::ml::scaler::{Policy, Replicas, Scaler};
use crate::ml::source::MetricReader;
use crate::model::{Address, Attrs};

/// Metric resolution asked of every source: the traces' and the forecaster's step.
const STEP: i64 = 300;

/// The running scaling tasks; replaced when the configuration changes.
#[derive(Default)]
pub struct Scalers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Scalers {
    /// Starts one task per service with a load metric. A reload restarts them: the new
    /// policy may differ in anything, and the forecaster refits from history in one read.
    pub fn update(&mut self, shared: &Arc<Shared>, stack: &Stack) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let groups = groups_by_service(stack);
        shared
            .scaled
            .lock()
            .expect("scaled")
            .retain(|a, _| groups.values().flatten().any(|(g, _, _)| g == a));
        let reader = match MetricReader::new(&stack.dir, &stack.metrics) {
            Ok(r) => r,
            Err(e) => {
                shared.emit(
                    "scaling_error",
                    format!("cannot read metrics: {e}"),
                    json!({}),
                );
                return;
            }
        };
        for (service, policy) in &stack.scaling {
            let Some(groups) = groups.get(service) else {
                continue;
            };
            if policy.load.is_none() {
                continue;
            }
            self.tasks.push(tokio::spawn(scale_loop(
                shared.clone(),
                reader.clone(),
                service.clone(),
                policy.clone(),
                groups.clone(),
            )));
        }
    }
}

/// Each service's groups: address, min, max, in declaration order.
type Groups = Vec<(Address, u32, u32)>;

fn groups_by_service(stack: &Stack) -> BTreeMap<String, Groups> {
    let mut out: BTreeMap<String, Groups> = BTreeMap::new();
    for d in &stack.resources {
        if let Attrs::Group(g) = &d.attrs {
            out.entry(g.service.clone())
                .or_default()
                .push((d.address.clone(), g.min, g.max));
        }
    }
    out
}

async fn scale_loop(
    shared: Arc<Shared>,
    reader: MetricReader,
    service: String,
    policy: ScalingPolicy,
    groups: Groups,
) {
    let load = policy
        .load
        .clone()
        .expect("spawned only with a load metric");
    let (history_secs, horizon_secs) = policy.predictive.as_ref().map_or((86_400, 1800), |p| {
        (p.history.as_secs() as i64, p.horizon.as_secs() as i64)
    });
    let min = groups.iter().map(|g| g.1).sum();
    let max = groups.iter().map(|g| g.2).sum();
    let mut scaler = Scaler::new(Policy::from_config(&policy, load.per_replica, min, max));
    let mut forecaster = policy.predictive.as_ref().map(|_| {
        Forecaster::new(ForecastConfig {
            step_secs: STEP,
            horizon_secs,
            history_secs,
            ..ForecastConfig::new(STEP)
        })
    });
    let mut history = Vec::new();
    let mut cost_capped = false;
    let mut ticker = tokio::time::interval(shared.settings.scale_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = jiff::Timestamp::now().as_second();
        let since = history
            .last()
            .map_or(now - history_secs, |p: &crate::ml::series::Point| p.ts + 1);
        let fresh = match reader.range(&load.metric, since, now, STEP).await {
            Ok(s) => s.points,
            Err(e) => {
                tracing::warn!(service, error = %e, "cannot read the load");
                continue;
            }
        };
        for p in &fresh {
            if let Some(f) = forecaster.as_mut() {
                f.observe(*p);
            }
        }
        history.extend(fresh);
        // The scaler reads only the recent past; the forecaster keeps its own history.
        let keep = history.len().saturating_sub(2 * 288);
        history.drain(..keep);
        let forecast = forecaster.as_mut().and_then(Forecaster::forecast);
        let current = current_replicas(&shared, &groups);
        let replicas = Replicas {
            current,
            ready: current,
        };
        let decision = scaler.decide(now, &history, replicas, forecast.as_ref());
        match (&decision.cost_capped, cost_capped) {
            (Some(c), false) => shared.emit(
                "cost_capped",
                format!(
                    "{service}: the budget of {:.2}/h allows {} replicas; {} wanted ({:.2}/h)",
                    c.max_per_hour, c.allowed, c.wanted, c.wanted_per_hour
                ),
                json!({ "service": service, "cost_capped": c }),
            ),
            (None, true) => shared.emit(
                "cost_cap_released",
                format!("{service}: the budget no longer limits replicas"),
                json!({ "service": service }),
            ),
            _ => {}
        }
        cost_capped = decision.cost_capped.is_some();
        shared
            .status
            .lock()
            .expect("status")
            .scaling
            .insert(service.clone(), json!(decision));
        if decision.desired == current {
            continue;
        }
        let sizes = split(decision.desired, &groups);
        {
            let mut scaled = shared.scaled.lock().expect("scaled");
            for ((address, _, _), size) in groups.iter().zip(&sizes) {
                scaled.insert(address.clone(), *size);
            }
        }
        metrics::counter!("cairn_scaling_decisions_total", "service" => service.clone())
            .increment(1);
        shared.emit(
            "scale",
            format!(
                "{service}: {current} -> {} replicas (reactive {}, predicted {}{})",
                decision.desired,
                decision.reactive,
                decision
                    .predicted
                    .map_or_else(|| "-".to_string(), |p| p.to_string()),
                decision
                    .binding
                    .map(|b| format!("; bound by {b}"))
                    .unwrap_or_default()
            ),
            json!({ "service": service, "decision": decision, "groups": groups
                .iter()
                .zip(&sizes)
                .map(|((a, _, _), n)| (a.to_string(), *n))
                .collect::<BTreeMap<_, _>>() }),
        );
        shared.trigger(Trigger::Scaling {
            groups: groups.iter().map(|g| g.0.to_string()).collect(),
        });
    }
}

/// The replicas the service's groups are asked to have: as published by scaling, else as
/// declared (the groups' minimum, or `desired`).
fn current_replicas(shared: &Shared, groups: &Groups) -> u32 {
    let scaled = shared.scaled.lock().expect("scaled");
    let declared = shared.status.lock().expect("status").group_desired.clone();
    groups
        .iter()
        .map(|(a, _, _)| {
            scaled
                .get(a)
                .or_else(|| declared.get(a))
                .copied()
                .unwrap_or(0)
        })
        .sum()
}

/// Spreads `total` replicas over groups: each gets its minimum, then one at a time in
/// turn up to its maximum, so deployments stay even.
pub fn split(total: u32, groups: &[(Address, u32, u32)]) -> Vec<u32> {
    let mut sizes: Vec<u32> = groups.iter().map(|g| g.1).collect();
    let mut left = total.saturating_sub(sizes.iter().sum());
    while left > 0 {
        let mut grew = false;
        for (size, (_, _, max)) in sizes.iter_mut().zip(groups) {
            if left > 0 && *size < *max {
                *size += 1;
                left -= 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    sizes
}

/// Stopped with the reconciler that owns them (shutdown, or leadership lost).
impl Drop for Scalers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cloud;

    #[test]
    fn replicas_are_spread_evenly_within_each_groups_bounds() {
        let g = |min, max| (Address::group("api", Cloud::Aws, "eu-west-1"), min, max);
        assert_eq!(split(7, &[g(1, 10), g(1, 10)]), vec![4, 3]);
        assert_eq!(split(7, &[g(1, 2), g(1, 10)]), vec![2, 5]);
        // Below the minimums: the minimums; above the maximums: the maximums.
        assert_eq!(split(0, &[g(1, 2), g(2, 3)]), vec![1, 2]);
        assert_eq!(split(99, &[g(1, 2), g(2, 3)]), vec![2, 3]);
    }
}
