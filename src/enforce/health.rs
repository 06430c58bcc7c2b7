//! Health checks: what to probe, how (HTTP(S), TCP, or the sandbox's simulated endpoints),
//! and a state machine with separate failure and recovery thresholds so that an endpoint that
//! fails now and then does not move DNS.

use std::time::Duration;

use serde::Serialize;

/// How one member of a routed record is probed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    /// GET `url`; healthy when the status is `expect_status` (any 2xx or 3xx when absent) and
    /// the body contains `expect_body`.
    Http {
        url: String,
        expect_status: Option<u16>,
        expect_body: Option<String>,
    },
    /// A TCP connection to `host:port` opens.
    Tcp { host: String, port: u16 },
    /// The sandbox's simulated endpoint of a deployment (`cairn sandbox endpoint up|down`).
    Sandbox { deployment: String },
}

/// When and how often to probe, and when to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Schedule {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before a healthy endpoint is unhealthy.
    pub failures: u32,
    /// Consecutive successes before an unhealthy endpoint is healthy again.
    pub recoveries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not probed enough yet: routing is left as declared.
    Unknown,
    Healthy,
    Unhealthy,
}

/// Consecutive-result hysteresis: a state changes only after `failures` failed probes in a
/// row (to unhealthy) or `recoveries` successful ones (to healthy). A single result against
/// the current state only builds a streak, which the next result the other way resets.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub health: Health,
    ok_streak: u32,
    fail_streak: u32,
    failures: u32,
    recoveries: u32,
}

impl Tracker {
    pub fn new(s: &Schedule) -> Tracker {
        Tracker {
            health: Health::Unknown,
            ok_streak: 0,
            fail_streak: 0,
            failures: s.failures.max(1),
            recoveries: s.recoveries.max(1),
        }
    }

    /// Records one probe result; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool) -> Option<Health> {
        if ok {
            self.ok_streak += 1;
            self.fail_streak = 0;
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
        }
        let next = match self.health {
            // From unknown, the first threshold reached decides; a new endpoint that answers
            // is healthy after `recoveries` successes, one that does not after `failures`.
            Health::Unknown if ok && self.ok_streak >= self.recoveries => Health::Healthy,
            Health::Unknown if !ok && self.fail_streak >= self.failures => Health::Unhealthy,
            Health::Healthy if !ok && self.fail_streak >= self.failures => Health::Unhealthy,
            Health::Unhealthy if ok && self.ok_streak >= self.recoveries => Health::Healthy,
            h => h,
        };
        (next != self.health).then(|| {
            self.health = next;
            next
        })
    }
}

/// The result of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub ok: bool,
    /// Why it failed (status, timeout, refused...).
    pub detail: Option<String>,
    pub latency: Duration,
}

/// Runs probes: network ones with a shared HTTP client, sandbox ones against its store.
pub struct Prober {
    http: reqwest::Client,
    sandbox: Option<std::sync::Arc<crate::provider::sandbox::Sandbox>>,
}

impl Prober {
    pub fn new(sandbox: Option<std::sync::Arc<crate::provider::sandbox::Sandbox>>) -> Prober {
        let http = reqwest::Client::builder()
            // Probes must see the endpoint itself, not a cached connection's luck.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Prober { http, sandbox }
    }

    pub async fn probe(&self, p: &Probe, timeout: Duration) -> Outcome {
        let start = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, self.attempt(p)).await;
        let (ok, detail) = match result {
            Ok(Ok(())) => (true, None),
            Ok(Err(e)) => (false, Some(e)),
            Err(_) => (
                false,
                Some(format!(
                    "no answer in {}",
                    humantime::format_duration(timeout)
                )),
            ),
        };
        Outcome {
            ok,
            detail,
            latency: start.elapsed(),
        }
    }

    async fn attempt(&self, p: &Probe) -> Result<(), String> {
        match p {
            Probe::Http {
                url,
                expect_status,
                expect_body,
            } => {
                let resp = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status().as_u16();
                let status_ok = match expect_status {
                    Some(want) => status == *want,
                    None => (200..400).contains(&status),
                };
                if !status_ok {
                    return Err(format!("status {status}"));
                }
                if let Some(want) = expect_body {
                    let body = resp.text().await.map_err(|e| format!("body: {e}"))?;
                    if !body.contains(want.as_str()) {
                        return Err(format!("body does not contain {want:?}"));
                    }
                }
                Ok(())
            }
            Probe::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(|_| ())
                .map_err(|e| format!("connect: {e}")),
            Probe::Sandbox { deployment } => {
                let sb = self
                    .sandbox
                    .as_ref()
                    .ok_or_else(|| "no sandbox to probe".to_string())?;
                match sb.endpoint_up(deployment) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("marked down in the sandbox".into()),
                    Err(e) => Err(format!("sandbox: {e}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(failures: u32, recoveries: u32) -> Schedule {
        Schedule {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failures,
            recoveries,
        }
    }

    #[test]
    fn thresholds_and_hysteresis() {
        let mut t = Tracker::new(&schedule(2, 3));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(Health::Healthy));
        // One failure, then a success: the streak resets, nothing changes.
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(Health::Unhealthy));
        // Recovery needs three in a row; a failure in between starts over.
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(Health::Healthy));
    }

    #[test]
    fn alternating_results_never_change_state() {
        let mut t = Tracker::new(&schedule(2, 2));
        t.observe(true);
        t.observe(true);
        assert_eq!(t.health, Health::Healthy);
        for i in 0..100 {
            assert_eq!(t.observe(i % 2 == 0), None);
        }
    }

    #[test]
    fn a_dead_endpoint_is_unhealthy_after_the_failure_threshold() {
        let mut t = Tracker::new(&schedule(2, 3));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(Health::Unhealthy));
    }
}
