//! The Google Cloud provider: Cloud DNS managed zones and record sets (dns/v1) and the size of
//! regional managed instance groups (compute/v1), over REST with reqwest, authenticated with
//! Application Default Credentials through gcp_auth.
//!
//! Not the official `google-cloud-dns-v1` crate: it needs Rust 1.91 (cairn builds with 1.89),
//! brings OpenTelemetry, its own retry loop and its own auth stack, and the instance groups
//! would need `google-cloud-compute-v1` on top (1.2 million lines of generated code), all to
//! send a dozen JSON requests. Both speak the same REST API; here each request is a
//! `serde_json::Value`, as the contract-checked fake sees it.
//!
//! Like the other providers, a request refused without effect (429) is retried after
//! `Retry-After` or a jittered backoff; a write whose outcome is unknown (5xx, timeout,
//! dropped connection) is never resent blindly: the provider reads back what it was changing
//! first. Writes carry an idempotency key as well (`clientOperationId` on Cloud DNS,
//! `requestId` on Compute Engine), the same on every retry of one write.

mod compute;
mod dns;

pub(crate) use dns::rrdata_bytes;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use gcp_auth::TokenProvider;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use serde_json::Value;

use super::{Change, ChangeResult, LiveResource, Provider, Scope, error_chain};
use crate::config::GcpSettings;
use crate::model::{
    Attrs, Cloud, GroupAttrs, Member, ProviderKind, ProviderRef, RecordAttrs, ResourceKind, Routing,
};

const GCP: ProviderRef = ProviderRef {
    kind: ProviderKind::Gcp,
    cloud: Cloud::Gcp,
};
/// The label cairn writes on managed zones (label keys allow no colon).
pub const OWNER_LABEL: &str = "cairn_owner";
/// Cloud DNS and Compute Engine both accept this scope.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DNS: &str = "https://dns.googleapis.com";
const COMPUTE: &str = "https://compute.googleapis.com";

/// How a failed request may be retried (as in the AWS and Azure providers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Refused without effect (429): retry after a pause.
    Rejected,
    /// May or may not have taken effect (5xx, timeout, dropped connection): re-read first.
    Ambiguous,
    /// Will fail again.
    Permanent,
}

#[derive(Debug, Clone)]
struct GcpError {
    failure: Failure,
    status: u16,
    /// Google's error reason (`alreadyExists`, `conditionNotMet`, `notFound`…).
    reason: String,
    message: String,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for GcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, self.reason.is_empty()) {
            (0, _) => f.write_str(&self.message),
            (s, true) => write!(f, "HTTP {s}: {}", self.message),
            (s, false) => write!(f, "HTTP {s} {}: {}", self.reason, self.message),
        }
    }
}

fn permanent(message: impl Into<String>) -> GcpError {
    GcpError {
        failure: Failure::Permanent,
        status: 0,
        reason: String::new(),
        message: message.into(),
        retry_after: None,
    }
}

/// Where tokens come from: Application Default Credentials, found on first use (so a stack
/// that refreshes nothing on Google Cloud needs none), or a given provider (tests).
enum Credentials {
    Default(tokio::sync::OnceCell<Arc<dyn TokenProvider>>),
    Given(Arc<dyn TokenProvider>),
}

pub struct Gcp {
    http: reqwest::Client,
    credentials: Credentials,
    project: String,
    /// `https://dns.googleapis.com/dns/v1/projects/P`.
    dns: String,
    /// `https://compute.googleapis.com/compute/v1/projects/P`.
    compute: String,
    limiter: DefaultDirectRateLimiter,
    backoff: ExponentialBuilder,
    calls: AtomicU64,
    change_timeout: Duration,
    /// First wait before asking again whether a change or operation is done; doubles to 2 s.
    poll: Duration,
    seen: std::sync::Mutex<dns::Seen>,
    quota: tokio::sync::OnceCell<dns::ChangeQuota>,
}

impl Gcp {
    /// A provider using Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`
    /// (a service-account key file), gcloud's application-default login, then the metadata
    /// server of a Google Cloud VM.
    pub fn new(settings: &GcpSettings) -> Result<Gcp, String> {
        Gcp::build(settings, Credentials::Default(tokio::sync::OnceCell::new()))
    }

    /// A provider whose tokens come from `tokens` (e.g. a service account read from JSON).
    pub fn with_tokens(
        settings: &GcpSettings,
        tokens: Arc<dyn TokenProvider>,
    ) -> Result<Gcp, String> {
        Gcp::build(settings, Credentials::Given(tokens))
    }

    fn build(settings: &GcpSettings, credentials: Credentials) -> Result<Gcp, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| error_chain(&e))?;
        let base = |default: &str| {
            settings
                .endpoint
                .as_deref()
                .unwrap_or(default)
                .trim_end_matches('/')
                .to_string()
        };
        let rate = NonZeroU32::new(settings.requests_per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(settings.burst.max(1)).expect("at least 1");
        Ok(Gcp {
            http,
            credentials,
            project: settings.project.clone(),
            dns: format!("{}/dns/v1/projects/{}", base(DNS), settings.project),
            compute: format!("{}/compute/v1/projects/{}", base(COMPUTE), settings.project),
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(10)
                .with_jitter(),
            calls: AtomicU64::new(0),
            change_timeout: settings.change_timeout,
            poll: Duration::from_millis(200),
            seen: std::sync::Mutex::new(dns::Seen::default()),
            quota: tokio::sync::OnceCell::new(),
        })
    }

    async fn token(&self) -> Result<Arc<gcp_auth::Token>, GcpError> {
        let provider = match &self.credentials {
            Credentials::Given(p) => p.clone(),
            Credentials::Default(cell) => cell
                .get_or_try_init(gcp_auth::provider)
                .await
                .map_err(|e| {
                    permanent(format!(
                        "no Google Cloud credentials found (set GOOGLE_APPLICATION_CREDENTIALS to \
                         a service-account key file, run `gcloud auth application-default login`, \
                         or run on Google Cloud with a service account; see docs/gcp.md): {}",
                        error_chain(&e)
                    ))
                })?
                .clone(),
        };
        provider.token(&[SCOPE]).await.map_err(|e| {
            let from = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
                .map(|p| format!(" (GOOGLE_APPLICATION_CREDENTIALS={p})"))
                .unwrap_or_default();
            permanent(format!(
                "Google Cloud did not accept the credentials{from}: {}; check that the key \
                 belongs to a service account of the project and was not deleted, or log in \
                 with `gcloud auth application-default login` (see docs/gcp.md)",
                error_chain(&e)
            ))
        })
    }

    /// One request: a token, the rate limiter, the count, a classified failure.
    async fn once(
        &self,
        method: &Method,
        url: &reqwest::Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>, GcpError> {
        let token = self.token().await?;
        self.limiter.until_ready().await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.as_str());
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(b).expect("JSON"));
        }
        let ambiguous = |e: reqwest::Error| GcpError {
            failure: Failure::Ambiguous,
            status: 0,
            reason: String::new(),
            message: error_chain(&e),
            retry_after: None,
        };
        let res = req.send().await.map_err(ambiguous)?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs);
        let bytes = res.bytes().await.map_err(ambiguous)?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return Ok(body);
        }
        // Google's error envelope: {"error": {"code", "message", "errors": [{"reason"}]}}.
        let error = body.as_ref().map(|b| &b["error"]);
        let reason = error
            .and_then(|e| e["errors"][0]["reason"].as_str().or(e["status"].as_str()))
            .unwrap_or_default()
            .to_string();
        let message = error
            .and_then(|e| e["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(GcpError {
            failure: match status {
                429 => Failure::Rejected,
                s if s >= 500 => Failure::Ambiguous,
                _ => Failure::Permanent,
            },
            status,
            reason,
            message,
            retry_after,
        })
    }

    /// A request retried while refused without effect; with `idempotent` (reads, and writes
    /// that set a value), also when its outcome is unknown.
    async fn call(
        &self,
        idempotent: bool,
        method: Method,
        url: &reqwest::Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>, GcpError> {
        (|| self.once(&method, url, body))
            .retry(self.backoff)
            .when(|e: &GcpError| {
                e.failure == Failure::Rejected || (idempotent && e.failure == Failure::Ambiguous)
            })
            .adjust(|e: &GcpError, backoff| match (e.retry_after, backoff) {
                (Some(after), Some(b)) => Some(after.max(b)),
                (_, b) => b,
            })
            .await
    }

    /// A GET; `None` when the resource does not exist.
    async fn get(&self, url: &reqwest::Url) -> Result<Option<Value>, GcpError> {
        match self.call(true, Method::GET, url, None).await {
            Ok(v) => Ok(Some(v.unwrap_or(Value::Null))),
            Err(e) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `base` + `path` with the query.
    fn url(base: &str, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, GcpError> {
        let mut url = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| permanent(format!("{base}{path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Waits, then asks `done`, waiting longer each time, for at most `change_timeout`. (The
    /// write's own answer said it was not done yet: asking at once would only say so again.)
    async fn wait_until<T, F, Fut>(&self, what: &str, mut done: F) -> Result<T, GcpError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, GcpError>>,
    {
        let start = Instant::now();
        let mut pause = self.poll;
        loop {
            tokio::time::sleep(pause).await;
            if let Some(answer) = done().await? {
                return Ok(answer);
            }
            if start.elapsed() >= self.change_timeout {
                return Err(permanent(format!(
                    "{what} not done after {} (change_timeout)",
                    humantime::format_duration(self.change_timeout)
                )));
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait::async_trait]
impl Provider for Gcp {
    async fn refresh(&self, scope: &Scope) -> Result<Vec<LiveResource>, String> {
        let mut live = self
            .refresh_dns(scope)
            .await
            .map_err(|e| format!("Cloud DNS: {e}"))?;
        live.extend(
            self.refresh_groups(scope)
                .await
                .map_err(|e| format!("Compute Engine: {e}"))?,
        );
        Ok(live)
    }

    async fn apply(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult> {
        match changes.first().map(|c| c.address.kind) {
            Some(ResourceKind::Record) => self.apply_records(changes).await,
            Some(ResourceKind::Zone) => {
                let mut out = Vec::with_capacity(changes.len());
                for c in changes {
                    out.push(self.apply_zone(c, owner).await.map_err(|e| e.to_string()));
                }
                out
            }
            Some(ResourceKind::Group) => {
                let mut out = Vec::with_capacity(changes.len());
                for c in changes {
                    out.push(self.apply_group(c).await.map_err(|e| e.to_string()));
                }
                out
            }
            None => Vec::new(),
        }
    }

    fn batch_key(&self, change: &Change) -> String {
        let name = &change.address.name;
        match change.address.kind {
            ResourceKind::Record => format!("zone/{}", name.split('/').next().unwrap_or_default()),
            ResourceKind::Zone => "zones".into(),
            ResourceKind::Group => {
                format!("groups/{}", name.rsplit('/').next().unwrap_or_default())
            }
        }
    }

    fn max_batch(&self) -> usize {
        // Split further into changes within the project's Cloud DNS quota per change.
        1000
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// `live` with what Google Cloud does not keep taken from `declared` (see
/// [`LiveResource::attrs_against`]).
pub(crate) fn with_declared(live: &Attrs, declared: &Attrs) -> Attrs {
    match (live, declared) {
        (Attrs::Record(l), Attrs::Record(d)) => Attrs::Record(RecordAttrs {
            routing: routing_with_declared(&l.routing, &d.routing),
            ..l.clone()
        }),
        (Attrs::Group(l), Attrs::Group(d)) => Attrs::Group(GroupAttrs {
            min: d.min,
            max: d.max,
            instance_type: d.instance_type.clone(),
            endpoint: d.endpoint.clone(),
            ..l.clone()
        }),
        _ => live.clone(),
    }
}

/// Member IDs from `declared` (failover by role, weighted by position, geolocation by
/// location), and host names written with or without the final dot as declared.
fn routing_with_declared(live: &Routing, declared: &Routing) -> Routing {
    let member = |l: &Member, d: &Member| Member {
        id: d.id.clone(),
        values: values_as_declared(&l.values, &d.values),
        ..l.clone()
    };
    match (live, declared) {
        (Routing::Simple { values }, Routing::Simple { values: d }) => Routing::Simple {
            values: values_as_declared(values, d),
        },
        (
            Routing::Failover { primary, secondary },
            Routing::Failover {
                primary: dp,
                secondary: ds,
            },
        ) => Routing::Failover {
            primary: member(primary, dp),
            secondary: member(secondary, ds),
        },
        (Routing::Weighted { members }, Routing::Weighted { members: d })
            if members.len() == d.len() =>
        {
            Routing::Weighted {
                members: members.iter().zip(d).map(|(l, d)| member(l, d)).collect(),
            }
        }
        (Routing::Geolocation { members }, Routing::Geolocation { members: d }) => {
            Routing::Geolocation {
                members: members
                    .iter()
                    .map(|l| match d.iter().find(|d| d.location == l.location) {
                        Some(d) => member(l, d),
                        None => l.clone(),
                    })
                    .collect::<Vec<_>>(),
            }
            .normalized()
        }
        _ => live.clone(),
    }
}

/// Cloud DNS writes host names fully qualified (`www.example.com.`); read back without the
/// dot, they equal a declaration with or without it.
fn values_as_declared(live: &[String], declared: &[String]) -> Vec<String> {
    let bare = |v: &String| v.trim_end_matches('.').to_string();
    if live.len() == declared.len() && live.iter().zip(declared).all(|(l, d)| bare(l) == bare(d)) {
        declared.to_vec()
    } else {
        live.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::model::{Address, HealthCheck, RecordType, ZoneAttrs};
    use crate::provider::{ChangeOp, GroupRef};
    use crate::testing::google::{Faults, GoogleFake, Options};

    fn fake(faults: Faults, seed: u64) -> GoogleFake {
        let fake = GoogleFake::start(Options {
            faults,
            seed,
            page_size: 7,
            ..Options::default()
        });
        fake.add_zone("example.com.", &[]);
        fake
    }

    fn provider(fake: &GoogleFake) -> Gcp {
        let settings = GcpSettings {
            project: Options::default().project,
            endpoint: Some(fake.url.clone()),
            requests_per_second: 1000,
            burst: 1000,
            change_timeout: Duration::from_secs(10),
        };
        let account =
            gcp_auth::CustomServiceAccount::from_json(&fake.service_account_json()).unwrap();
        let mut gcp = Gcp::with_tokens(&settings, Arc::new(account)).unwrap();
        // Tests do not wait out real backoff.
        gcp.backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(5))
            .with_max_times(30);
        gcp.poll = Duration::from_millis(5);
        gcp
    }

    fn scope() -> Scope {
        Scope {
            zones: vec![(Cloud::Gcp, "example.com".into())],
            groups: Vec::new(),
        }
    }

    fn simple(name: &str, ip: &str) -> RecordAttrs {
        RecordAttrs {
            zone: "example.com".into(),
            name: name.into(),
            rtype: RecordType::A,
            ttl: 60,
            routing: Routing::Simple {
                values: vec![ip.into()],
            },
            health_check: None,
        }
    }

    fn change(attrs: &RecordAttrs, op: fn(Attrs) -> ChangeOp) -> Change {
        Change {
            address: Address::record(&attrs.zone, &attrs.name, attrs.rtype),
            provider: GCP,
            op: op(Attrs::Record(attrs.clone())),
        }
    }

    fn create(a: Attrs) -> ChangeOp {
        ChangeOp::Create { attrs: a }
    }

    fn update(a: Attrs) -> ChangeOp {
        ChangeOp::Update {
            id: String::new(),
            attrs: a,
        }
    }

    /// Live records, compared as the plan compares them with `declared`.
    fn records(live: &[LiveResource], declared: &[RecordAttrs]) -> Vec<RecordAttrs> {
        live.iter()
            .filter_map(|l| {
                let Attrs::Record(r) = &l.attrs else {
                    return None;
                };
                let d = declared.iter().find(|d| d.name == r.name)?;
                match l.attrs_against(&Attrs::Record(d.clone())) {
                    Attrs::Record(r) => Some(r),
                    _ => None,
                }
            })
            .collect()
    }

    fn member(id: &str, ip: &str, weight: Option<u32>, location: Option<&str>) -> Member {
        Member {
            id: id.into(),
            values: vec![ip.into()],
            weight,
            location: location.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn routed_records_round_trip_with_their_health_checks() {
        let fake = fake(Faults::default(), 1);
        let gcp = provider(&fake);
        let check = HealthCheck {
            protocol: "https".into(),
            port: 443,
            path: Some("/healthz".into()),
            interval_secs: 1,
            timeout_secs: 1,
            failures: 2,
            recoveries: 3,
        };
        let failover = RecordAttrs {
            routing: Routing::Failover {
                primary: member("api@aws/eu-west-1", "192.0.2.1", None, None),
                secondary: member("api@gcp/europe-west1", "198.51.100.1", None, None),
            },
            health_check: Some(check.clone()),
            ..simple("api", "")
        };
        let weighted = RecordAttrs {
            routing: Routing::Weighted {
                members: vec![
                    member("blue", "192.0.2.10", Some(90), None),
                    member("green", "192.0.2.11", Some(10), None),
                ],
            }
            .normalized(),
            health_check: Some(check.clone()),
            ..simple("web", "")
        };
        let geo = RecordAttrs {
            routing: Routing::Geolocation {
                members: vec![
                    member("eu", "192.0.2.20", None, Some("europe-west1")),
                    member("us", "192.0.2.21", None, Some("us-east1")),
                ],
            }
            .normalized(),
            ..simple("geo", "")
        };
        let txt = RecordAttrs {
            rtype: RecordType::TXT,
            routing: Routing::Simple {
                values: vec!["v=spf1 -all".into()],
            },
            ..simple("@", "")
        };
        let all = [failover, weighted, geo, txt, simple("www", "192.0.2.7")];
        let changes: Vec<Change> = all.iter().map(|r| change(r, create)).collect();
        let results = gcp.apply(&changes, "lineage-1").await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        // One atomic change for the five.
        assert_eq!(fake.changes("example.com.").len(), 1);
        // The declared spec reads back, though Compute Engine probes every 30 s at least.
        let checks = fake.health_checks();
        assert_eq!(checks.len(), 2);
        assert!(
            checks.iter().all(|c| c["checkIntervalSec"] == 30),
            "{checks:?}"
        );

        let live = gcp.refresh(&scope()).await.unwrap();
        let mut want = all.to_vec();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        let mut got = records(&live, &all);
        got.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(got, want);
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());

        // Failing over: primary and secondary swap; an update is one change of a deletion
        // and an addition.
        let Routing::Failover { primary, secondary } = &all[0].routing else {
            unreachable!()
        };
        let swapped = RecordAttrs {
            routing: Routing::Failover {
                primary: secondary.clone(),
                secondary: primary.clone(),
            },
            ..all[0].clone()
        };
        let results = gcp.apply(&[change(&swapped, update)], "lineage-1").await;
        assert!(results[0].is_ok(), "{results:?}");
        let last = fake.changes("example.com.").pop().unwrap();
        assert_eq!(
            (
                last["deletions"].as_array().unwrap().len(),
                last["additions"].as_array().unwrap().len()
            ),
            (1, 1)
        );
        let api = fake
            .rrsets("example.com.")
            .into_iter()
            .find(|s| s["name"] == "api.example.com.")
            .unwrap();
        assert_eq!(
            api["routingPolicy"]["primaryBackup"]["primaryTargets"]["externalEndpoints"],
            json!(["198.51.100.1"])
        );

        // Deleting the routed records deletes their health checks too.
        let deletes: Vec<Change> = all[..2]
            .iter()
            .map(|r| Change {
                op: ChangeOp::Delete { id: String::new() },
                ..change(r, create)
            })
            .collect();
        let results = gcp.apply(&deletes, "lineage-1").await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(
            fake.health_checks().is_empty(),
            "{:?}",
            fake.health_checks()
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn changes_converge_through_throttling_errors_and_resets_without_applying_twice() {
        let fake = fake(
            Faults {
                throttle: 0.15,
                retry_after_secs: 0,
                server_error: 0.15,
                reset: 0.15,
            },
            7,
        );
        let gcp = provider(&fake);
        let wanted: Vec<RecordAttrs> = (0..30)
            .map(|i| simple(&format!("r{i}"), &format!("192.0.2.{i}")))
            .collect();
        // One record per change, so that faults hit many changes.
        let mut results = Vec::new();
        for r in &wanted {
            results.extend(gcp.apply(&[change(r, create)], "lineage-1").await);
        }
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        loop {
            // A refresh may meet a reset too: reads are retried, so it returns.
            if gcp.refresh(&scope()).await.is_ok() {
                break;
            }
        }
        let changed: Vec<RecordAttrs> = wanted
            .iter()
            .map(|r| RecordAttrs {
                ttl: 300,
                ..r.clone()
            })
            .collect();
        let updates: Vec<Change> = changed.iter().map(|r| change(r, update)).collect();
        let results = gcp.apply(&updates, "lineage-1").await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");

        let c = fake.counts();
        let hits = |n: &AtomicU64| n.load(Ordering::Relaxed);
        assert!(hits(&c.throttled) > 0 && hits(&c.server_errors) > 0 && hits(&c.resets) > 0);
        // Every record was added once by the creates, and changed once.
        let mut added: HashMap<String, usize> = HashMap::new();
        for ch in fake.changes("example.com.") {
            for a in ch["additions"].as_array().unwrap() {
                *added
                    .entry(a["name"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        assert!(added.values().all(|n| *n == 2), "{added:?}");
        assert_eq!(added.len(), 30);
        let sets = fake.rrsets("example.com.");
        assert!(
            sets.iter()
                .filter(|s| s["type"] == "A")
                .all(|s| s["ttl"] == 300)
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn a_big_batch_is_split_within_the_project_quota() {
        let fake = fake(Faults::default(), 1);
        let gcp = provider(&fake);
        let changes: Vec<Change> = (0..250)
            .map(|i| change(&simple(&format!("r{i}"), "192.0.2.1"), create))
            .collect();
        let results = gcp.apply(&changes, "lineage-1").await;
        assert!(results.iter().all(Result::is_ok));
        let sizes: Vec<usize> = fake
            .changes("example.com.")
            .iter()
            .map(|c| c["additions"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        // Listing pages through 7 at a time.
        assert_eq!(gcp.refresh(&scope()).await.unwrap().len(), 251);
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn zones_are_created_or_adopted_with_the_owner_label_and_others_refused() {
        let fake = fake(Faults::default(), 1);
        fake.add_zone("taken.example.org.", &[(OWNER_LABEL, "someone-else")]);
        let gcp = provider(&fake);
        let zone = |name: &str| Change {
            address: Address::zone(name),
            provider: GCP,
            op: ChangeOp::Create {
                attrs: Attrs::Zone(ZoneAttrs { name: name.into() }),
            },
        };
        let results = gcp
            .apply(
                &[
                    zone("example.com"),
                    zone("new.example.net"),
                    zone("taken.example.org"),
                ],
                "lineage-1",
            )
            .await;
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert_eq!(
            results[2].as_ref().unwrap_err(),
            "zone taken.example.org is managed by another stack (owner someone-else)"
        );
        let owner = |z: &str| fake.zone_labels(z);
        let ours = vec![(OWNER_LABEL.to_string(), "lineage-1".to_string())];
        assert_eq!(owner("example.com."), ours);
        assert_eq!(owner("new.example.net."), ours);
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn a_managed_instance_group_is_resized_and_read_back() {
        let fake = fake(Faults::default(), 1);
        fake.add_group("europe-west1", "api", 2);
        let gcp = provider(&fake);
        let group = GroupAttrs {
            service: "api".into(),
            cloud: Cloud::Gcp,
            region: "europe-west1".into(),
            instance_type: Some("e2-standard-2".into()),
            min: 1,
            max: 10,
            desired: 5,
            endpoint: Some("198.51.100.7".into()),
            group_name: None,
            instances: None,
        };
        let address = Address::group("api", Cloud::Gcp, "europe-west1");
        let resize = Change {
            address: address.clone(),
            provider: GCP,
            op: ChangeOp::Update {
                id: "europe-west1/api".into(),
                attrs: Attrs::Group(group.clone()),
            },
        };
        let results = gcp.apply(&[resize], "lineage-1").await;
        let live = results[0].clone().unwrap().unwrap();
        assert_eq!(fake.group_size("europe-west1", "api"), Some(5));
        // Waited for the operation: the instances are up.
        assert_eq!(
            live.attrs,
            Attrs::Group(GroupAttrs {
                instances: Some(5),
                ..group.clone()
            })
        );
        let scope = Scope {
            zones: Vec::new(),
            groups: vec![GroupRef::of(&address, &group)],
        };
        let refreshed = gcp.refresh(&scope).await.unwrap();
        assert_eq!(
            refreshed[0].attrs_against(&Attrs::Group(group.clone())),
            live.attrs
        );
        assert!(refreshed[0].adoptable);

        let missing = Change {
            address: Address::group("web", Cloud::Gcp, "europe-west1"),
            provider: GCP,
            op: ChangeOp::Create {
                attrs: Attrs::Group(GroupAttrs {
                    service: "web".into(),
                    ..group
                }),
            },
        };
        let err = gcp.apply(&[missing], "lineage-1").await[0]
            .clone()
            .unwrap_err();
        assert!(
            err.starts_with("no managed instance group `web` in europe-west1"),
            "{err}"
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
}
