//! The AWS provider: Route53 (hosted zones, record sets, health checks) and Auto Scaling
//! groups, through aws-sdk-rust.
//!
//! Every call passes a client-side token bucket (Route53 documents a burst of 50 and a refill
//! of 10 per second per account) and is counted. The SDK's own retries are off: calls that
//! were rejected without effect (throttling, PriorRequestNotComplete) are retried here with
//! jittered backoff; a change whose outcome is unknown (5xx, timeout, dropped connection) is
//! re-read before it is retried, so a change is never applied twice nor lost.

mod asg;
mod route53;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{Change, ChangeResult, LiveResource, Provider, Scope, error_chain};
use crate::config::AwsSettings;
use crate::model::{Attrs, ResourceKind};

/// Tag keys cairn writes where AWS allows tags (hosted zones, health checks, groups).
pub const OWNER_TAG: &str = "cairn:owner";
pub const ADDRESS_TAG: &str = "cairn:address";

/// How a failed call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused without effect (throttling): retry after a pause.
    Rejected,
    /// May or may not have taken effect (5xx, timeout, reset): re-read before retrying.
    Ambiguous,
    /// Will fail again (invalid request, missing resource).
    Permanent,
}

#[derive(Debug, Clone)]
pub struct AwsError {
    pub failure: Failure,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, HttpResponse>,
) -> AwsError {
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default().to_string();
            let message = se.err().message().unwrap_or_default().to_string();
            let status = se.raw().status().as_u16();
            let failure = if matches!(
                code.as_str(),
                "Throttling"
                    | "ThrottlingException"
                    | "PriorRequestNotComplete"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
            ) || status == 429
            {
                Failure::Rejected
            } else if status >= 500 {
                Failure::Ambiguous
            } else {
                Failure::Permanent
            };
            AwsError {
                failure,
                code,
                message: if message.is_empty() {
                    format!("HTTP {status}")
                } else {
                    message
                },
            }
        }
        SdkError::ConstructionFailure(_) => AwsError {
            failure: Failure::Permanent,
            code: String::new(),
            message: error_chain(&e),
        },
        _ => AwsError {
            failure: Failure::Ambiguous,
            code: String::new(),
            message: error_chain(&e),
        },
    }
}

pub struct Aws {
    route53: aws_sdk_route53::Client,
    sdk: aws_config::SdkConfig,
    autoscaling: Mutex<HashMap<String, aws_sdk_autoscaling::Client>>,
    limiter: DefaultDirectRateLimiter,
    backoff: ExponentialBuilder,
    calls: AtomicU64,
    insync_timeout: Duration,
    /// ResourceRecord elements per Route53 request: 1000, Route53's limit, unless the test
    /// knob `CAIRN_AWS_BATCH_ELEMENTS` lowers it to make many small requests.
    max_elements: usize,
    /// What the last refresh saw, for exact DELETEs and health check reuse.
    seen: Mutex<route53::Seen>,
    /// One change batch per hosted zone at a time, as Route53 processes them (it answers
    /// PriorRequestNotComplete otherwise), so that re-reading a zone after an ambiguous
    /// answer sees only that batch's effect.
    zone_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Aws {
    /// The lock that keeps change batches to one hosted zone one at a time.
    fn zone_lock(&self, zone: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.zone_locks
            .lock()
            .expect("zone locks")
            .entry(zone.to_string())
            .or_default()
            .clone()
    }

    /// Builds clients from the standard credential chain (environment, profiles, SSO, IMDS).
    /// `endpoint` (or `AWS_ENDPOINT_URL`) points them at a compatible API such as moto.
    pub async fn new(settings: &AwsSettings) -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            // Retries happen here, where a change's outcome can be checked first.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(p) = &settings.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &settings.endpoint {
            loader = loader.endpoint_url(e);
        }
        let sdk = loader.load().await;
        let burst = NonZeroU32::new(settings.burst.max(1)).expect("at least 1");
        let rate = NonZeroU32::new(settings.requests_per_second.max(1)).expect("at least 1");
        Aws {
            route53: aws_sdk_route53::Client::new(&sdk),
            autoscaling: Mutex::new(HashMap::new()),
            sdk,
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(3))
                .with_max_times(12)
                .with_jitter(),
            calls: AtomicU64::new(0),
            insync_timeout: settings.insync_timeout,
            max_elements: std::env::var("CAIRN_AWS_BATCH_ELEMENTS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(route53::MAX_ELEMENTS)
                .clamp(1, route53::MAX_ELEMENTS),
            seen: Mutex::new(route53::Seen::default()),
            zone_locks: Mutex::new(HashMap::new()),
        }
    }

    fn autoscaling(&self, region: &str) -> aws_sdk_autoscaling::Client {
        let mut clients = self.autoscaling.lock().expect("client map");
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let conf = aws_sdk_autoscaling::config::Builder::from(&self.sdk)
                    .region(aws_config::Region::new(region.to_string()))
                    .build();
                aws_sdk_autoscaling::Client::from_conf(conf)
            })
            .clone()
    }

    /// One API call: waits for the token bucket, counts it, classifies its failure.
    async fn once<T, E, F, Fut>(&self, f: &F) -> Result<T, AwsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.limiter.until_ready().await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        f().await.map_err(classify)
    }

    /// A call retried while it fails without effect; with `idempotent`, also when the
    /// outcome is unknown (reads and idempotent writes).
    async fn call<T, E, F, Fut>(&self, idempotent: bool, f: F) -> Result<T, AwsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        (|| self.once(&f))
            .retry(self.backoff)
            .when(|e: &AwsError| {
                e.failure == Failure::Rejected || (idempotent && e.failure == Failure::Ambiguous)
            })
            .await
    }
}

#[async_trait::async_trait]
impl Provider for Aws {
    async fn refresh(&self, scope: &Scope) -> Result<Vec<LiveResource>, String> {
        let mut live = self
            .refresh_route53(scope)
            .await
            .map_err(|e| format!("Route53: {e}"))?;
        live.extend(
            self.refresh_groups(scope)
                .await
                .map_err(|e| format!("Auto Scaling: {e}"))?,
        );
        Ok(live)
    }

    async fn apply(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult> {
        match changes.first().map(|c| c.address.kind) {
            Some(ResourceKind::Group) => self.apply_groups(changes, owner).await,
            Some(ResourceKind::Zone) => {
                let mut out = Vec::new();
                for c in changes {
                    out.push(self.apply_zone(c, owner).await);
                }
                out
            }
            Some(ResourceKind::Record) => self.apply_records(changes, owner).await,
            None => Vec::new(),
        }
    }

    fn batch_key(&self, change: &Change) -> String {
        match change.address.kind {
            ResourceKind::Record => format!(
                "zone/{}",
                change.address.name.split('/').next().unwrap_or_default()
            ),
            ResourceKind::Zone => "zones".into(),
            ResourceKind::Group => match change.op.attrs() {
                Some(Attrs::Group(g)) => format!("groups/{}", g.region),
                _ => format!(
                    "groups/{}",
                    change.address.name.rsplit('/').next().unwrap_or_default()
                ),
            },
        }
    }

    fn max_batch(&self) -> usize {
        // Record changes are split further to fit Route53's limits per request.
        1000
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}
