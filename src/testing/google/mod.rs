//! A local Google Cloud for tests and benchmarks: Cloud DNS (managed zones, record sets,
//! changes) and the part of Compute Engine cairn uses (regional managed instance groups, global
//! health checks, operations), in memory, plus an OAuth token endpoint.
//!
//! Every request is checked against Google's official discovery documents before it is served
//! (`gcp-dns-v1-discovery.json` and the subset of `compute.v1.json` cairn calls, see
//! [`super::contract`]), and every answer the fake gives is checked too; a request the contract
//! does not allow gets a 400 and is recorded in [`GoogleFake::violations`], which tests assert
//! empty. Credentials are real: the fake makes a service account (an RSA key) whose key file
//! points `token_uri` at the fake, verifies the signed JWT a client sends there (RS256, issuer,
//! audience, scope, expiry) and hands out the token the API then requires.
//!
//! Plain HTTP: gcp_auth and reqwest send tokens over it, and TLS is what the Azure fake tests.
//! Faults at set rates, from a seed: 429 with `Retry-After`, 500 (half of them after the
//! request took effect) and dropped connections (before or after).

mod compute;
mod dns;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::contract::{self, Contract};
use super::fake_http::{self, FaultCounters, Outcome, Received, respond};

/// Fault rates, each 0 to 1 of the API requests (the token endpoint is left alone).
pub use super::fake_http::FaultRates as Faults;

#[derive(Debug, Clone)]
pub struct Options {
    pub project: String,
    /// The access token the token endpoint issues and the API requires.
    pub token: String,
    /// Most items in one page, whatever `maxResults` asks.
    pub page_size: usize,
    /// How long a Cloud DNS change stays `pending`, and a Compute Engine operation `RUNNING`.
    pub settle: Duration,
    /// The project's Cloud DNS quota per change: additions, deletions, bytes of record data.
    pub quota: (usize, usize, usize),
    pub faults: Faults,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            project: "cairn-test".into(),
            token: "ya29.test-token".into(),
            page_size: 100,
            settle: Duration::from_millis(20),
            quota: (100, 100, 10_000),
            faults: Faults::default(),
            seed: 1,
        }
    }
}

/// Counts of what the fake did, to cross-check a client's own counters.
#[derive(Debug, Default)]
pub struct Counts {
    /// API requests (not token requests).
    pub requests: AtomicU64,
    pub tokens: AtomicU64,
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
    pub resets: AtomicU64,
    /// Writes carrying an idempotency key already used, answered without acting again.
    pub replays: AtomicU64,
}

/// The service account the fake trusts: its key file and the key to check signatures with.
struct Account {
    email: String,
    key_pem: String,
    public_key: Vec<u8>,
}

impl Account {
    fn new(email: &str) -> Account {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("an RSA key");
        Account {
            email: email.to_string(),
            key_pem: key.serialize_pem(),
            public_key: key.public_key_raw().to_vec(),
        }
    }

    /// A service-account key file, as the Cloud console downloads it.
    fn key_file(&self, project: &str, token_uri: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": "0123456789abcdef",
            "private_key": self.key_pem,
            "client_email": self.email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string()
    }
}

/// The fake's data: Cloud DNS and Compute Engine share one lock, as a change's routing
/// policy refers to health checks.
#[derive(Default)]
struct State {
    dns: dns::Dns,
    compute: compute::Compute,
}

struct Inner {
    dns_contract: Contract,
    compute_contract: Contract,
    options: Options,
    url: String,
    account: Account,
    state: Mutex<State>,
    rng: Mutex<fastrand::Rng>,
    violations: Mutex<Vec<String>>,
    counts: Counts,
}

pub struct GoogleFake {
    /// `http://127.0.0.1:PORT`: the `endpoint` to give the provider.
    pub url: String,
    inner: Arc<Inner>,
}

/// What a request asked, once matched to the contract.
struct Call<'a> {
    /// The operation's ID, e.g. `dns.changes.create`.
    op: &'a str,
    path: &'a HashMap<String, String>,
    query: &'a [(String, String)],
    body: Option<&'a Value>,
    options: &'a Options,
}

impl Call<'_> {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// One page of `items` from `pageToken` (an offset), at most `maxResults` and the fake's
    /// page size; and the next page's token.
    fn page<T: Clone>(&self, items: &[T]) -> (Vec<T>, Option<String>) {
        let start: usize = self
            .query("pageToken")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let size = self
            .query("maxResults")
            .and_then(|m| m.parse().ok())
            .unwrap_or(usize::MAX)
            .min(self.options.page_size)
            .max(1);
        let page = items.iter().skip(start).take(size).cloned().collect();
        let next = (start + size < items.len()).then(|| (start + size).to_string());
        (page, next)
    }
}

fn ok(body: Value) -> Outcome {
    Outcome::Answer(200, Some(body), Vec::new())
}

/// Google's error envelope.
fn error(status: u16, reason: &str, message: impl Into<String>) -> Outcome {
    let message = message.into();
    Outcome::Answer(
        status,
        Some(json!({ "error": {
            "code": status,
            "message": message,
            "errors": [{ "domain": "global", "reason": reason, "message": message }],
        } })),
        Vec::new(),
    )
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

impl GoogleFake {
    /// Starts the fake on a free loopback port.
    pub fn start(options: Options) -> GoogleFake {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let inner = Arc::new(Inner {
            dns_contract: Contract::google_dns(),
            compute_contract: Contract::google_compute(),
            account: Account::new(&format!(
                "cairn@{}.iam.gserviceaccount.com",
                options.project
            )),
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            options,
            url: url.clone(),
            state: Mutex::new(State::default()),
            violations: Mutex::new(Vec::new()),
            counts: Counts::default(),
        });
        let served = inner.clone();
        fake_http::serve(listener, None, move |req| served.clone().handle(req));
        GoogleFake { url, inner }
    }

    /// A service-account key file the fake accepts (its `token_uri` is the fake's).
    pub fn service_account_json(&self) -> String {
        let o = &self.inner.options;
        self.inner
            .account
            .key_file(&o.project, &format!("{}/token", self.url))
    }

    /// A well-formed key file for an account the fake does not know (a bad credential).
    pub fn unknown_service_account_json(&self) -> String {
        let o = &self.inner.options;
        Account::new("intruder@elsewhere.iam.gserviceaccount.com")
            .key_file(&o.project, &format!("{}/token", self.url))
    }

    /// Creates a public managed zone (with its SOA and NS record sets), as `gcloud dns
    /// managed-zones create` would; returns its name.
    pub fn add_zone(&self, dns_name: &str, labels: &[(&str, &str)]) -> String {
        let mut state = self.inner.state.lock().expect("state");
        state.dns.add_zone(dns_name, labels)
    }

    /// The managed zone's labels.
    pub fn zone_labels(&self, dns_name: &str) -> Vec<(String, String)> {
        let state = self.inner.state.lock().expect("state");
        state.dns.zone_labels(dns_name)
    }

    /// Writes a record set directly (e.g. one cairn does not own), as JSON.
    pub fn put_rrset(&self, dns_name: &str, set: Value) {
        let mut state = self.inner.state.lock().expect("state");
        state.dns.put_rrset(dns_name, set);
    }

    /// The zone's record sets, as Cloud DNS would list them.
    pub fn rrsets(&self, dns_name: &str) -> Vec<Value> {
        let state = self.inner.state.lock().expect("state");
        state.dns.rrsets(dns_name)
    }

    /// The changes applied to the zone, oldest first.
    pub fn changes(&self, dns_name: &str) -> Vec<Value> {
        let state = self.inner.state.lock().expect("state");
        state.dns.changes(dns_name)
    }

    /// Creates a regional managed instance group of `size` instances.
    pub fn add_group(&self, region: &str, name: &str, size: u32) {
        let mut state = self.inner.state.lock().expect("state");
        state.compute.add_group(region, name, size);
    }

    /// A group's target size, if it exists.
    pub fn group_size(&self, region: &str, name: &str) -> Option<u32> {
        let state = self.inner.state.lock().expect("state");
        state.compute.group_size(region, name)
    }

    /// The global health checks.
    pub fn health_checks(&self) -> Vec<Value> {
        let state = self.inner.state.lock().expect("state");
        state.compute.health_checks()
    }

    /// Requests and answers the contract did not allow, in order.
    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().expect("violations").clone()
    }

    pub fn counts(&self) -> &Counts {
        &self.inner.counts
    }
}

impl Inner {
    fn draw(&self, rate: f64) -> bool {
        rate > 0.0 && self.rng.lock().expect("rng").f64() < rate
    }

    fn violation(&self, v: String) {
        self.violations.lock().expect("violations").push(v);
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let Received {
            method,
            path,
            query,
            headers,
            body: bytes,
        } = Received::read(req).await?;
        // Google's OAuth token endpoint (the JWT bearer grant), which the key file names. It
        // is not part of the API contracts.
        if method == "POST" && path == "/token" {
            return Ok(self.token(&bytes));
        }
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let contract = if path.starts_with("/compute/") {
            &self.compute_contract
        } else {
            &self.dns_contract
        };
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.violation(format!("{method} {path}: body is not JSON: {e}"));
                    return Ok(respond(400, None, &[]));
                }
            }
        };
        let request = contract::Request {
            method: &method,
            path: &path,
            query: &query,
            headers: &headers,
            body: body.as_ref(),
        };
        let matched = match contract.check_request(&request) {
            Ok(m) => m,
            Err(v) => {
                self.violation(v.0.clone());
                let Outcome::Answer(status, body, _) = error(400, "invalid", v.0) else {
                    unreachable!()
                };
                return Ok(respond(status, body.as_ref(), &[]));
            }
        };
        let bearer = format!("Bearer {}", self.options.token);
        let authorized = headers
            .iter()
            .any(|(k, v)| k == "authorization" && *v == bearer);
        let call = Call {
            op: &matched.operation.id,
            path: &matched.path_params,
            query: &query,
            body: body.as_ref(),
            options: &self.options,
        };
        let outcome = if !authorized {
            error(
                401,
                "authError",
                "Request had invalid authentication credentials.",
            )
        } else if call.path.get("project") != Some(&self.options.project) {
            error(403, "forbidden", "The caller does not have permission")
        } else {
            self.serve(&call)
        };
        match outcome {
            Outcome::Reset => Err(std::io::Error::other("connection dropped by the fake")),
            Outcome::Answer(status, body, extra) => {
                if let Err(v) = contract.check_response(matched.operation, status, body.as_ref()) {
                    self.violation(format!("the fake's own answer: {v}"));
                }
                Ok(respond(status, body.as_ref(), &extra))
            }
        }
    }

    /// Faults, then the operation.
    fn serve(&self, call: &Call<'_>) -> Outcome {
        let counters = FaultCounters {
            throttled: &self.counts.throttled,
            server_errors: &self.counts.server_errors,
            resets: &self.counts.resets,
        };
        fake_http::with_faults(
            self.options.faults,
            |rate| self.draw(rate),
            counters,
            || error(429, "rateLimitExceeded", "Rate Limit Exceeded"),
            || error(500, "backendError", "Internal error. Please try again."),
            || {
                let mut state = self.state.lock().expect("state");
                let State { dns, compute } = &mut *state;
                if call.op.starts_with("compute.") {
                    compute.serve(call, &self.counts, &|check| dns.uses_check(check))
                } else {
                    dns.serve(call, compute, &self.counts)
                }
            },
        )
    }

    /// The OAuth 2.0 JWT bearer grant: a token for an assertion signed by the known account.
    fn token(&self, form: &[u8]) -> Response<Full<Bytes>> {
        self.counts.tokens.fetch_add(1, Ordering::Relaxed);
        let fields: HashMap<String, String> =
            url::form_urlencoded::parse(form).into_owned().collect();
        let grant = fields.get("grant_type").map(String::as_str);
        let verdict = match (grant, fields.get("assertion")) {
            (Some("urn:ietf:params:oauth:grant-type:jwt-bearer"), Some(jwt)) => self.check_jwt(jwt),
            _ => Err("unsupported_grant_type"),
        };
        match verdict {
            Ok(()) => {
                let body = json!({ "access_token": self.options.token, "expires_in": 3599,
                                   "token_type": "Bearer" });
                respond(200, Some(&body), &[])
            }
            Err(why) => {
                let body = json!({ "error": "invalid_grant", "error_description": why });
                respond(400, Some(&body), &[])
            }
        }
    }

    fn check_jwt(&self, jwt: &str) -> Result<(), &'static str> {
        let b64 = base64::engine::GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let mut parts = jwt.split('.');
        let (Some(head), Some(claims), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
            );
        };
        let decode = |s: &str| b64.decode(s).map_err(|_| "Invalid JWT: bad encoding");
        let json = |s: &str| -> Result<Value, &'static str> {
            serde_json::from_slice(&decode(s)?).map_err(|_| "Invalid JWT: not JSON")
        };
        if json(head)?["alg"] != "RS256" {
            return Err("Invalid JWT: alg must be RS256");
        }
        let signed = &jwt[..head.len() + 1 + claims.len()];
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.account.public_key,
        )
        .verify(signed.as_bytes(), &decode(sig)?)
        .map_err(|_| "Invalid JWT Signature.")?;
        let c = json(claims)?;
        let now = jiff::Timestamp::now().as_second();
        let scope_ok = c["scope"].as_str().is_some_and(|s| {
            s.split(' ')
                .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
        });
        if c["iss"] != self.account.email.as_str()
            || c["aud"] != format!("{}/token", self.url).as_str()
            || !scope_ok
            || c["exp"].as_i64().is_none_or(|e| e <= now || e > now + 3600)
        {
            return Err("Invalid JWT: issuer, audience, scope or expiry");
        }
        Ok(())
    }
}

/// A short wait before a write is `done`, so that clients poll.
fn settled(since: std::time::Instant, options: &Options) -> bool {
    since.elapsed() >= options.settle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(faults: Faults) -> GoogleFake {
        let fake = GoogleFake::start(Options {
            page_size: 2,
            faults,
            ..Options::default()
        });
        fake.add_zone("example.com.", &[]);
        fake
    }

    fn url(fake: &GoogleFake, tail: &str) -> String {
        format!(
            "{}/dns/v1/projects/cairn-test/managedZones/example-com{tail}",
            fake.url
        )
    }

    #[tokio::test]
    async fn a_service_account_gets_a_token_and_a_stranger_does_not() {
        use gcp_auth::TokenProvider;
        let fake = fake(Faults::default());
        let scopes = ["https://www.googleapis.com/auth/cloud-platform"];
        let account =
            gcp_auth::CustomServiceAccount::from_json(&fake.service_account_json()).unwrap();
        assert_eq!(
            account.token(&scopes).await.unwrap().as_str(),
            "ya29.test-token"
        );
        let stranger =
            gcp_auth::CustomServiceAccount::from_json(&fake.unknown_service_account_json())
                .unwrap();
        assert!(stranger.token(&scopes).await.is_err());
        let answer = reqwest::Client::new()
            .get(url(&fake, "/rrsets"))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn changes_are_atomic_and_a_replayed_operation_id_changes_nothing() {
        let fake = fake(Faults::default());
        let http = reqwest::Client::new();
        let post = |body: Value, op: &str| {
            http.post(format!("{}?clientOperationId={op}", url(&fake, "/changes")))
                .bearer_auth("ya29.test-token")
                .json(&body)
                .send()
        };
        let www =
            json!({ "name": "www.example.com.", "type": "A", "ttl": 60, "rrdatas": ["192.0.2.1"] });
        let created = post(json!({ "additions": [www] }), "op-1").await.unwrap();
        assert_eq!(created.status(), 200);
        let change: Value = created.json().await.unwrap();
        assert_eq!(change["status"], "pending");
        // The same operation again: the first change is returned, nothing is applied twice.
        let again: Value = post(json!({ "additions": [www] }), "op-1")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(again["id"], change["id"]);
        assert_eq!(fake.counts().replays.load(Ordering::Relaxed), 1);
        // A deletion that does not match exactly fails the whole change, addition included.
        let stale = json!({ "name": "www.example.com.", "type": "A", "ttl": 300, "rrdatas": ["192.0.2.1"] });
        let api =
            json!({ "name": "api.example.com.", "type": "A", "ttl": 60, "rrdatas": ["192.0.2.2"] });
        let refused = post(json!({ "deletions": [stale], "additions": [api] }), "op-2")
            .await
            .unwrap();
        assert_eq!(refused.status(), 412);
        let dup = post(json!({ "additions": [www] }), "op-3").await.unwrap();
        assert_eq!(dup.status(), 409);
        let names: Vec<String> = fake
            .rrsets("example.com.")
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s["type"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            names,
            ["NS example.com.", "SOA example.com.", "A www.example.com."]
        );
        // Pending, then done.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let id = change["id"].as_str().unwrap();
        let now: Value = http
            .get(url(&fake, &format!("/changes/{id}")))
            .bearer_auth("ya29.test-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(now["status"], "done");
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn a_request_outside_the_contract_is_refused_and_recorded() {
        let fake = fake(Faults::default());
        let misspelt =
            json!({ "additions": [{ "name": "a.example.com.", "type": "A", "TTL": 60 }] });
        let r = reqwest::Client::new()
            .post(url(&fake, "/changes"))
            .bearer_auth("ya29.test-token")
            .json(&misspelt)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v = fake.violations();
        assert!(
            v.len() == 1 && v[0].contains("dns.changes.create") && v[0].contains("TTL"),
            "{v:?}"
        );
        assert_eq!(fake.rrsets("example.com.").len(), 2);
    }

    #[tokio::test]
    async fn injected_faults_are_throttling_errors_and_resets() {
        let fake = fake(Faults {
            throttle: 0.3,
            retry_after_secs: 7,
            server_error: 0.2,
            reset: 0.2,
        });
        let http = reqwest::Client::new();
        let c = fake.counts();
        let counted = fake_http::FaultCounters {
            throttled: &c.throttled,
            server_errors: &c.server_errors,
            resets: &c.resets,
        };
        fake_http::check_injected_faults(
            || {
                http.get(url(&fake, "/rrsets"))
                    .bearer_auth("ya29.test-token")
            },
            "7",
            counted,
        )
        .await;
    }
}
