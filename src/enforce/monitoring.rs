//! Anomaly detection in the daemon: one task per `[monitoring.KEY]` entry. Every interval it
//! reads the entry's metrics since its last read, feeds them to a `ServiceMonitor` (one
//! detector per metric: Isolation Forest and prediction-error likelihood), raises an
//! `anomaly` event per alert and, for `on_anomaly = "route_away"`, routes the deployment's
//! records without it for a while.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::Shared;
use crate::config::raw::AnomalyAction;
use crate::config::{Monitor, Stack};
use crate::ml::anomaly::{Alert, Metric as Kind, MonitorConfig, ServiceMonitor};
use crate::ml::source::MetricReader;

/// Metric resolution asked of every source.
const STEP: i64 = 300;
/// History read at start to warm the detectors.
const WARM_UP: i64 = 3 * 86_400;

#[derive(Default)]
pub struct Monitors {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Monitors {
    pub fn update(&mut self, shared: &Arc<Shared>, stack: &Stack) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        // Entries no longer configured leave /status.monitoring.
        let keys: Vec<String> = stack.monitoring.iter().map(monitor_key).collect();
        let mut status = shared.status.lock().expect("status");
        status.monitoring.retain(|k, _| keys.contains(k));
        drop(status);
        let Ok(reader) = MetricReader::new(&stack.dir, &stack.metrics) else {
            return; // reported by scaling, which reads the same sources
        };
        for m in &stack.monitoring {
            self.tasks.push(tokio::spawn(monitor_loop(
                shared.clone(),
                reader.clone(),
                m.clone(),
            )));
        }
    }
}

fn kind_of(name: &str) -> Kind {
    serde_json::from_value(json!(name)).expect("metric names are checked by config")
}

/// What the entry is called in events, metrics and /status: its deployment, else its service.
fn monitor_key(m: &Monitor) -> String {
    m.deployment.clone().unwrap_or_else(|| m.service.clone())
}

async fn monitor_loop(shared: Arc<Shared>, reader: MetricReader, m: Monitor) {
    let key = monitor_key(&m);
    let mut config = MonitorConfig::default();
    if let Some(t) = m.threshold {
        config.threshold = t;
    }
    let mut monitor = ServiceMonitor::new(key.clone(), config);
    let started = jiff::Timestamp::now().as_second();
    let mut read_until = started - WARM_UP;
    let mut ticker = tokio::time::interval(shared.settings.scale_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = jiff::Timestamp::now().as_second();
        // One scrape per timestamp: every metric's value at that time.
        let mut scrapes: BTreeMap<i64, Vec<(Kind, f64)>> = BTreeMap::new();
        for (name, metric) in &m.metrics {
            match reader.range(metric, read_until + 1, now, STEP).await {
                Ok(s) => {
                    for p in s.points {
                        scrapes
                            .entry(p.ts)
                            .or_default()
                            .push((kind_of(name), p.value));
                    }
                }
                Err(e) => tracing::warn!(monitor = key, metric = name, error = %e, "cannot read"),
            }
        }
        if let Some(last) = scrapes.keys().last() {
            read_until = *last;
        }
        // Warm-up history only trains the detectors: what was anomalous days ago is not
        // acted on now.
        let alerts: Vec<Alert> = scrapes
            .into_iter()
            .filter_map(|(ts, samples)| monitor.observe(ts, &samples))
            .filter(|alert| alert.ts >= started - 2 * STEP)
            .collect();
        if let Some(last) = monitor.last() {
            let mut status = shared.status.lock().expect("status");
            let entry = status.monitoring.entry(key.clone()).or_default();
            entry.last = Some(last.clone());
            entry.alerts += alerts.len() as u64;
            if let Some(alert) = alerts.last() {
                entry.last_alert = Some(alert.clone());
            }
        }
        for alert in alerts {
            let metrics: Vec<String> = alert
                .metrics
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.3} (score {:.2})",
                        json!(s.metric).as_str().unwrap_or("?"),
                        s.value,
                        s.score
                    )
                })
                .collect();
            shared.emit(
                "anomaly",
                format!(
                    "{key}: anomaly score {:.2}, confidence {:.0}%: {}",
                    alert.score,
                    alert.confidence * 100.0,
                    metrics.join(", ")
                ),
                json!({ "alert": alert }),
            );
            metrics::counter!("cairn_anomalies_total", "monitor" => key.clone()).increment(1);
            if let (AnomalyAction::RouteAway, Some(deployment)) = (m.on_anomaly, &m.deployment) {
                super::route_away(&shared, deployment, now + m.route_away_for.as_secs() as i64);
            }
        }
    }
}

/// Stopped with the reconciler that owns them (shutdown, or leadership lost).
impl Drop for Monitors {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
