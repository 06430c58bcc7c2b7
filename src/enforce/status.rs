//! What the daemon knows and shows on `/status`, and the events it emits on `/events`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::Settings;
use super::health::{Health, Outcome, Probe};
use crate::config::Stack;
use crate::ml::anomaly::{Alert, Scored};
use crate::model::{Address, Attrs, Routing};

/// One thing that happened, as `/events` sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub time: jiff::Timestamp,
    /// `reconcile`, `drift`, `health`, `failover`, `failback`, `alert`, `config_rejected`, ...
    pub kind: String,
    pub message: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberHealth {
    pub record: String,
    pub member: String,
    pub probe: Probe,
    pub health: Health,
    pub last_ok: bool,
    pub last_detail: Option<String>,
    pub last_latency_ms: f64,
    pub last_probe: jiff::Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastReconcile {
    pub at: jiff::Timestamp,
    pub trigger: String,
    pub seconds: f64,
    /// Changes planned.
    pub changes: usize,
    /// Changes made.
    pub applied: usize,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub at: jiff::Timestamp,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub at: jiff::Timestamp,
    pub diagnostics: Vec<serde_json::Value>,
}

/// A monitored service or deployment, as `/status.monitoring` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorStatus {
    /// The newest scrape scored: its time, every metric's value and score, the service score.
    pub last: Option<Scored>,
    /// The last alert acted on (alerts on the warm-up history are not).
    pub last_alert: Option<Alert>,
    /// Alerts acted on since start.
    pub alerts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub stack: String,
    pub environment: String,
    pub report_only: bool,
    /// A reconcile has completed since start.
    pub ready: bool,
    pub resources: Vec<String>,
    pub last_reconcile: Option<LastReconcile>,
    pub reconciles: u64,
    /// The last drift check of each kind (`zone`, `record`, `group`).
    pub drift: BTreeMap<String, Drift>,
    pub health: Vec<MemberHealth>,
    /// Records answering other than declared, with what they answer.
    pub failovers: BTreeMap<String, Routing>,
    pub config_accepted_at: jiff::Timestamp,
    /// Soft and advisory findings of the configuration in force (not enforced by the daemon).
    pub findings: usize,
    pub last_rejection: Option<Rejection>,
    /// The last scaling decision of each service with a load metric.
    pub scaling: BTreeMap<String, serde_json::Value>,
    /// What the anomaly detectors of each `[monitoring.KEY]` entry last saw, by KEY.
    pub monitoring: BTreeMap<String, MonitorStatus>,
    /// Which replica leads this stack, for a stack shared by replicas (postgres backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leadership: Option<super::ha::Leadership>,
    /// Declared replicas of each group, where scaling starts from.
    #[serde(skip)]
    pub group_desired: BTreeMap<Address, u32>,
    /// Declared routing of the records with members, for failover decisions.
    #[serde(skip)]
    pub routed: BTreeMap<Address, Routing>,
    #[serde(skip)]
    seq: u64,
    /// The last events, for a client that connects late.
    #[serde(skip)]
    pub recent: std::collections::VecDeque<Event>,
}

impl Status {
    pub fn new(stack: &Stack, settings: &Settings) -> Status {
        let mut s = Status {
            stack: stack.name.clone(),
            environment: stack.environment.clone(),
            report_only: settings.report_only,
            ready: false,
            resources: Vec::new(),
            last_reconcile: None,
            reconciles: 0,
            drift: BTreeMap::new(),
            health: Vec::new(),
            failovers: BTreeMap::new(),
            config_accepted_at: jiff::Timestamp::now(),
            findings: 0,
            last_rejection: None,
            scaling: BTreeMap::new(),
            monitoring: BTreeMap::new(),
            leadership: None,
            group_desired: BTreeMap::new(),
            routed: BTreeMap::new(),
            seq: 0,
            recent: Default::default(),
        };
        s.configured(stack, &[]);
        s
    }

    pub fn event(&mut self, kind: &str, message: String, details: serde_json::Value) -> Event {
        self.seq += 1;
        let e = Event {
            seq: self.seq,
            time: jiff::Timestamp::now(),
            kind: kind.into(),
            message,
            details,
        };
        if self.recent.len() == 100 {
            self.recent.pop_front();
        }
        self.recent.push_back(e.clone());
        e
    }

    pub fn configured(&mut self, stack: &Stack, findings: &[crate::policy::Finding]) {
        self.resources = stack
            .resources
            .iter()
            .map(|r| r.address.to_string())
            .collect();
        self.routed = stack
            .resources
            .iter()
            .filter_map(|r| match &r.attrs {
                Attrs::Record(rec) if !matches!(rec.routing, Routing::Simple { .. }) => {
                    Some((r.address.clone(), rec.routing.clone()))
                }
                _ => None,
            })
            .collect();
        self.group_desired = stack
            .resources
            .iter()
            .filter_map(|r| match &r.attrs {
                Attrs::Group(g) => Some((r.address.clone(), g.desired)),
                _ => None,
            })
            .collect();
        self.config_accepted_at = jiff::Timestamp::now();
        self.findings = findings.len();
    }

    pub fn rejected(&mut self, diagnostics: Vec<serde_json::Value>) {
        self.last_rejection = Some(Rejection {
            at: jiff::Timestamp::now(),
            diagnostics,
        });
    }

    pub fn set_failovers(&mut self, overlay: &BTreeMap<Address, Routing>) {
        self.failovers = overlay
            .iter()
            .map(|(a, r)| (a.to_string(), r.clone()))
            .collect();
    }

    pub fn probed(
        &mut self,
        record: &str,
        member: &str,
        probe: &Probe,
        health: Health,
        o: &Outcome,
    ) {
        let entry = MemberHealth {
            record: record.into(),
            member: member.into(),
            probe: probe.clone(),
            health,
            last_ok: o.ok,
            last_detail: o.detail.clone(),
            last_latency_ms: o.latency.as_secs_f64() * 1000.0,
            last_probe: jiff::Timestamp::now(),
        };
        match self
            .health
            .iter_mut()
            .find(|h| h.record == record && h.member == member)
        {
            Some(h) => *h = entry,
            None => {
                self.health.push(entry);
                self.health
                    .sort_by(|a, b| (&a.record, &a.member).cmp(&(&b.record, &b.member)));
            }
        }
    }

    pub fn drift(&mut self, kind: &str, resources: &[String]) {
        self.drift.insert(
            kind.into(),
            Drift {
                at: jiff::Timestamp::now(),
                resources: resources.to_vec(),
            },
        );
    }

    pub fn reconciled(
        &mut self,
        trigger: &str,
        elapsed: Duration,
        changes: usize,
        applied: usize,
        error: Option<String>,
    ) {
        self.reconciles += 1;
        if error.is_none() {
            self.ready = true;
        }
        self.last_reconcile = Some(LastReconcile {
            at: jiff::Timestamp::now(),
            trigger: trigger.into(),
            seconds: elapsed.as_secs_f64(),
            changes,
            applied,
            error,
        });
    }
}
