//! A local Azure Resource Manager for tests and benchmarks: Azure DNS (api-version 2018-05-01)
//! zones and record sets in memory, and Virtual Machine Scale Sets (Microsoft.Compute,
//! api-version 2024-07-01, in [`super::azure_compute`]) on the same endpoint, as ARM serves
//! both. Served over HTTPS with a certificate from a throwaway CA (azure_core sends bearer
//! tokens over TLS only), with an Entra ID token endpoint.
//!
//! Every request is checked against the official contract of its API
//! (`azure-dns-2018-05-01.json`, `azure-compute-2024-07-01/`, see [`super::contract`]) before
//! it is served, and every answer the fake gives is checked too; a request the contract does
//! not allow gets a 400 and is recorded in [`AzureDnsFake::violations`], which tests assert
//! empty. Semantics follow Azure DNS: ETags on every record set, `If-Match`
//! and `If-None-Match: *` (412 when they fail), `$top` paging with an absolute `nextLink`,
//! SOA and NS record sets at the apex of every zone. Faults at set rates, from a seed: 429 with
//! `Retry-After`, 500 (half of them after the change was made), dropped connections (before or
//! after the change), and a concurrent writer that changes a record set's ETag just before a
//! conditional request for it (so that request gets 412).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::azure_compute::{self, Compute};
use super::contract::{self, Contract};
pub(super) use super::fake_http::Outcome;
use super::fake_http::{self, FaultCounters, FaultRates, Received};

/// Fault rates, each 0 to 1 of the requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub throttle: f64,
    /// Seconds in the `Retry-After` of a 429.
    pub retry_after_secs: u64,
    pub server_error: f64,
    pub reset: f64,
    /// Share of conditional writes whose record set (or scale set) another writer changes
    /// first.
    pub stale_etag: f64,
}

/// How the fake tells a client that a scale set update is still running (ARM's three ways).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AsyncHeader {
    /// `Azure-AsyncOperation`: an operation status resource to poll (what Compute sends).
    #[default]
    AzureAsyncOperation,
    /// `Location`: a URL answering 202 until the operation is over.
    Location,
    /// Neither: the resource's `provisioningState` says when it is over.
    None,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub subscription: String,
    pub resource_group: String,
    /// The bearer token requests must carry.
    pub token: String,
    /// Most record sets in one page, whatever `$top` asks (Azure: 100 by default).
    pub page_size: usize,
    pub faults: Faults,
    pub seed: u64,
    /// How long a scale set update runs before its operation succeeds.
    pub operation_time: std::time::Duration,
    /// The `Retry-After` (seconds) of an operation status answer.
    pub poll_after_secs: u64,
    pub async_header: AsyncHeader,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            subscription: "00000000-0000-0000-0000-000000000001".into(),
            resource_group: "cairn-test".into(),
            token: "test-token".into(),
            page_size: 100,
            faults: Faults::default(),
            seed: 1,
            operation_time: std::time::Duration::from_millis(30),
            poll_after_secs: 0,
            async_header: AsyncHeader::default(),
        }
    }
}

/// Counts of what the fake did, to cross-check a client's own counters.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
    pub resets: AtomicU64,
    pub stale_etags: AtomicU64,
    /// Scale set updates that changed a scale set (capacity or tags).
    pub scale_set_updates: AtomicU64,
    /// Requests for the status of a long-running operation.
    pub operation_polls: AtomicU64,
}

#[derive(Debug, Clone)]
struct RecordSet {
    etag: String,
    /// `properties` as written (TTL, the records, metadata).
    properties: Value,
}

#[derive(Debug, Default)]
struct Zone {
    etag: String,
    tags: BTreeMap<String, String>,
    /// (type, relative name) → record set.
    records: BTreeMap<(String, String), RecordSet>,
}

pub(super) struct Inner {
    contract: Contract,
    pub(super) options: Options,
    pub(super) url: String,
    zones: Mutex<BTreeMap<String, Zone>>,
    pub(super) compute: Compute,
    rng: Mutex<fastrand::Rng>,
    violations: Mutex<Vec<String>>,
    pub(super) counts: Counts,
    etags: AtomicU64,
}

pub struct AzureDnsFake {
    /// `https://127.0.0.1:PORT`: the ARM endpoint to give the provider.
    pub url: String,
    /// The PEM of the CA that signed the fake's certificate: what clients must trust.
    pub ca_pem: String,
    inner: Arc<Inner>,
}

impl AzureDnsFake {
    /// Starts the fake on a free loopback port, checking requests against `contract` (the
    /// parsed `azure-dns-2018-05-01.json`).
    pub fn start(contract: Contract, options: Options) -> AzureDnsFake {
        let tls = TestCa::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let inner = Arc::new(Inner {
            contract,
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            options,
            url: url.clone(),
            zones: Mutex::new(BTreeMap::new()),
            compute: Compute::new(),
            violations: Mutex::new(Vec::new()),
            counts: Counts::default(),
            etags: AtomicU64::new(1),
        });
        let served = inner.clone();
        fake_http::serve(listener, Some(tls.acceptor()), move |req| {
            served.clone().handle(req)
        });
        AzureDnsFake {
            url,
            ca_pem: tls.ca_pem,
            inner,
        }
    }

    /// Creates an empty zone (with its apex SOA and NS record sets), as `az network dns zone
    /// create` would.
    pub fn add_zone(&self, name: &str) {
        self.inner.add_zone_locked(name);
    }

    /// The zone's tags.
    pub fn zone_tags(&self, name: &str) -> BTreeMap<String, String> {
        let zones = self.inner.zones.lock().expect("zones");
        zones.get(name).map(|z| z.tags.clone()).unwrap_or_default()
    }

    /// Writes a record set directly (e.g. one cairn does not own).
    pub fn put_record(&self, zone: &str, rtype: &str, name: &str, properties: Value) {
        let etag = self.inner.next_etag();
        let mut zones = self.inner.zones.lock().expect("zones");
        zones
            .get_mut(zone)
            .expect("add_zone first")
            .records
            .insert((rtype.into(), name.into()), RecordSet { etag, properties });
    }

    /// The zone's record sets: (type, relative name, properties).
    pub fn records(&self, zone: &str) -> Vec<(String, String, Value)> {
        let zones = self.inner.zones.lock().expect("zones");
        zones.get(zone).map_or_else(Vec::new, |z| {
            z.records
                .iter()
                .map(|((t, n), r)| (t.clone(), n.clone(), r.properties.clone()))
                .collect()
        })
    }

    /// Adds an existing scale set (as made in the portal or by Terraform) to the resource group.
    pub fn add_scale_set(&self, set: azure_compute::ScaleSet) {
        self.inner.compute.add(&self.inner, set);
    }

    /// A scale set as it is now, if it exists.
    pub fn scale_set(&self, name: &str) -> Option<azure_compute::ScaleSet> {
        self.inner.compute.get(name)
    }

    /// Changes a scale set's capacity as someone outside cairn would (portal, autoscale).
    pub fn set_capacity(&self, name: &str, capacity: u64) {
        self.inner.compute.set_capacity(&self.inner, name, capacity);
    }

    /// Makes the next update of the scale set fail asynchronously (as an allocation failure
    /// does: the update is accepted, its operation ends `Failed`).
    pub fn fail_next_operation(&self, name: &str, code: &str, message: &str) {
        self.inner.compute.fail_next(name, code, message);
    }

    /// The capacities each scale set was updated to, in order.
    pub fn capacity_history(&self, name: &str) -> Vec<u64> {
        self.inner.compute.history(name)
    }

    /// Requests and answers the contract did not allow, in order.
    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().expect("violations").clone()
    }

    pub fn counts(&self) -> &Counts {
        &self.inner.counts
    }
}

pub(super) fn error(status: u16, code: &str, message: impl Into<String>) -> Outcome {
    Outcome::Answer(
        status,
        Some(json!({ "error": { "code": code, "message": message.into() } })),
        Vec::new(),
    )
}

impl Inner {
    fn add_zone_locked(&self, name: &str) {
        let mut zones = self.zones.lock().expect("zones");
        let zone = zones.entry(name.to_string()).or_default();
        zone.etag = self.next_etag();
        for (rtype, properties) in apex_records() {
            let etag = self.next_etag();
            zone.records
                .insert((rtype.into(), "@".into()), RecordSet { etag, properties });
        }
    }

    pub(super) fn next_etag(&self) -> String {
        let n = self.etags.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-0000-0000-{n:012x}")
    }

    pub(super) fn draw(&self, rate: f64) -> bool {
        rate > 0.0 && self.rng.lock().expect("rng").f64() < rate
    }

    pub(super) fn violation(&self, v: String) {
        self.violations.lock().expect("violations").push(v);
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let Received {
            method,
            path,
            query,
            headers,
            body: bytes,
        } = Received::read(req).await?;
        // Entra ID's token endpoint (client credentials), which azure_identity's
        // ClientSecretCredential calls when AZURE_AUTHORITY_HOST points here. It is not part
        // of the DNS contract.
        if method == "POST" && path.ends_with("/oauth2/v2.0/token") {
            return Ok(self.token(&bytes));
        }
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
        // ARM's operation status resources, which the Compute contract does not declare.
        if let Some(status) = azure_compute::OperationRequest::parse(&request) {
            let outcome = self.serve(&status.subscription, None, &request, || {
                self.compute.operation_status(&self, &status, &request)
            });
            return match outcome {
                Outcome::Reset => Err(std::io::Error::other("connection dropped by the fake")),
                Outcome::Answer(status, body, extra) => Ok(respond(status, body.as_ref(), &extra)),
            };
        }
        let compute = path.contains("/providers/Microsoft.Compute/");
        let contract = if compute {
            &self.compute.contract
        } else {
            &self.contract
        };
        let matched = match contract.check_request(&request) {
            Ok(m) => m,
            Err(v) => {
                self.violation(v.0.clone());
                let Outcome::Answer(status, body, _) = error(400, "BadRequest", v.0) else {
                    unreachable!()
                };
                return Ok(respond(status, body.as_ref(), &[]));
            }
        };
        let p = &matched.path_params;
        let outcome = self.serve(
            &p["subscriptionId"],
            Some(&p["resourceGroupName"]),
            &request,
            || {
                if compute {
                    self.compute.operation(&self, &matched, &request)
                } else {
                    self.operation(&matched, &request)
                }
            },
        );
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

    fn token(&self, form: &[u8]) -> Response<Full<Bytes>> {
        let field = |k: &str| {
            url::form_urlencoded::parse(form)
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        let ok = field("grant_type").as_deref() == Some("client_credentials")
            && field("client_id").is_some()
            && field("client_secret").as_deref() == Some(self.options.token.as_str())
            && field("scope").is_some_and(|s| s.contains("https://management.azure.com/.default"));
        if !ok {
            let form = String::from_utf8_lossy(form);
            self.violation(format!("token request not understood: {form}"));
            let body = json!({ "error": "invalid_client", "error_description": "wrong secret" });
            return respond(401, Some(&body), &[]);
        }
        let body = json!({ "token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                           "access_token": self.options.token });
        respond(200, Some(&body), &[])
    }

    /// Auth, faults, then the operation.
    fn serve(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        req: &contract::Request<'_>,
        operation: impl FnOnce() -> Outcome,
    ) -> Outcome {
        let bearer = format!("Bearer {}", self.options.token);
        if contract_header(req, "authorization") != Some(bearer.as_str()) {
            return error(401, "AuthenticationFailed", "missing or wrong bearer token");
        }
        if subscription != self.options.subscription
            || resource_group.is_some_and(|g| !g.eq_ignore_ascii_case(&self.options.resource_group))
        {
            return error(404, "ResourceGroupNotFound", "no such resource group");
        }
        let f = self.options.faults;
        let rates = FaultRates {
            throttle: f.throttle,
            retry_after_secs: f.retry_after_secs,
            server_error: f.server_error,
            reset: f.reset,
        };
        let counters = FaultCounters {
            throttled: &self.counts.throttled,
            server_errors: &self.counts.server_errors,
            resets: &self.counts.resets,
        };
        fake_http::with_faults(
            rates,
            |rate| self.draw(rate),
            counters,
            || error(429, "TooManyRequests", "throttled"),
            || error(500, "InternalServerError", "injected server error"),
            operation,
        )
    }

    fn operation(&self, m: &contract::Matched<'_>, req: &contract::Request<'_>) -> Outcome {
        let p = &m.path_params;
        let zone_name = p["zoneName"].trim_end_matches('.').to_string();
        let mut zones = self.zones.lock().expect("zones");
        let op = m.operation.id.as_str();
        match op {
            "Zones_Get" => {
                return match zones.get(&zone_name) {
                    Some(z) => {
                        Outcome::Answer(200, Some(self.zone_json(&zone_name, z)), Vec::new())
                    }
                    None => error(
                        404,
                        "ResourceNotFound",
                        format!("zone {zone_name} not found"),
                    ),
                };
            }
            "Zones_CreateOrUpdate" | "Zones_Update" => {
                let exists = zones.contains_key(&zone_name);
                if op == "Zones_Update" && !exists {
                    return error(
                        404,
                        "ResourceNotFound",
                        format!("zone {zone_name} not found"),
                    );
                }
                if contract_header(req, "if-none-match") == Some("*") && exists {
                    return error(412, "PreconditionFailed", "the zone exists");
                }
                if !exists {
                    drop(zones);
                    self.add_zone_locked(&zone_name);
                    zones = self.zones.lock().expect("zones");
                }
                let zone = zones.get_mut(&zone_name).expect("just made");
                if let Some(tags) = req.body.and_then(|b| b["tags"].as_object()) {
                    zone.tags = tags
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                }
                zone.etag = self.next_etag();
                let status = if exists || op == "Zones_Update" {
                    200
                } else {
                    201
                };
                let body = self.zone_json(&zone_name, zone);
                return Outcome::Answer(status, Some(body), Vec::new());
            }
            "Zones_Delete" => {
                let status = if zones.remove(&zone_name).is_some() {
                    200
                } else {
                    204
                };
                return Outcome::Answer(status, None, Vec::new());
            }
            _ => {}
        }
        let Some(zone) = zones.get_mut(&zone_name) else {
            return error(
                404,
                "ResourceNotFound",
                format!("zone {zone_name} not found"),
            );
        };
        match op {
            "RecordSets_ListAllByDnsZone"
            | "RecordSets_ListByDnsZone"
            | "RecordSets_ListByType" => {
                let only = p.get("recordType");
                let all: Vec<(&(String, String), &RecordSet)> = zone
                    .records
                    .iter()
                    .filter(|((t, _), _)| only.is_none_or(|o| o == t))
                    .collect();
                let top = contract_query(req, "$top")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(100usize)
                    .clamp(1, self.options.page_size);
                let skip: usize = contract_query(req, "$skipToken")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let value: Vec<Value> = all
                    .iter()
                    .skip(skip)
                    .take(top)
                    .map(|((t, n), r)| self.record_json(&zone_name, t, n, r))
                    .collect();
                let mut body = json!({ "value": value });
                if skip + top < all.len() {
                    body["nextLink"] = json!(format!(
                        "{}{}?api-version=2018-05-01&$top={top}&$skipToken={}",
                        self.url,
                        req.path,
                        skip + top
                    ));
                }
                Outcome::Answer(200, Some(body), Vec::new())
            }
            "RecordSets_Get" | "RecordSets_CreateOrUpdate" | "RecordSets_Delete" => {
                let key = (p["recordType"].clone(), p["relativeRecordSetName"].clone());
                let if_match = contract_header(req, "if-match");
                if let (Some(_), Some(existing)) = (if_match, zone.records.get_mut(&key))
                    && self.draw(self.options.faults.stale_etag)
                {
                    // Another writer got there first.
                    self.counts.stale_etags.fetch_add(1, Ordering::Relaxed);
                    existing.etag = self.next_etag();
                }
                let current = zone.records.get(&key).map(|r| r.etag.clone());
                if let Some(want) = if_match
                    && want != "*"
                    && current.as_deref() != Some(want)
                {
                    return error(412, "PreconditionFailed", "the etag does not match");
                }
                match op {
                    "RecordSets_Get" => match zone.records.get(&key) {
                        Some(r) => Outcome::Answer(
                            200,
                            Some(self.record_json(&zone_name, &key.0, &key.1, r)),
                            Vec::new(),
                        ),
                        None => error(404, "NotFound", "record set not found"),
                    },
                    "RecordSets_Delete" => {
                        let status = if zone.records.remove(&key).is_some() {
                            200
                        } else {
                            204
                        };
                        zone.etag = self.next_etag();
                        Outcome::Answer(status, None, Vec::new())
                    }
                    _ => {
                        if contract_header(req, "if-none-match") == Some("*") && current.is_some() {
                            return error(412, "PreconditionFailed", "the record set exists");
                        }
                        let mut properties =
                            req.body.map_or(json!({}), |b| b["properties"].clone());
                        if let Some(obj) = properties.as_object_mut() {
                            obj.remove("fqdn");
                            obj.remove("provisioningState");
                        }
                        let r = RecordSet {
                            etag: self.next_etag(),
                            properties,
                        };
                        let body = self.record_json(&zone_name, &key.0, &key.1, &r);
                        let status = if current.is_some() { 200 } else { 201 };
                        zone.records.insert(key, r);
                        zone.etag = self.next_etag();
                        Outcome::Answer(status, Some(body), Vec::new())
                    }
                }
            }
            other => error(
                400,
                "NotImplemented",
                format!("the fake does not serve {other}"),
            ),
        }
    }

    fn prefix(&self, zone: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/dnszones/{zone}",
            self.options.subscription, self.options.resource_group
        )
    }

    fn zone_json(&self, name: &str, z: &Zone) -> Value {
        json!({
            "id": self.prefix(name),
            "name": name,
            "type": "Microsoft.Network/dnszones",
            "location": "global",
            "tags": z.tags,
            "etag": z.etag,
            "properties": {
                "maxNumberOfRecordSets": 10000,
                "numberOfRecordSets": z.records.len(),
                "nameServers": ["ns1-01.azure-dns.com.", "ns2-01.azure-dns.net."],
            },
        })
    }

    fn record_json(&self, zone: &str, rtype: &str, name: &str, r: &RecordSet) -> Value {
        let mut properties = r.properties.clone();
        let fqdn = if name == "@" {
            format!("{zone}.")
        } else {
            format!("{name}.{zone}.")
        };
        if let Some(obj) = properties.as_object_mut() {
            obj.insert("fqdn".into(), json!(fqdn));
            obj.insert("provisioningState".into(), json!("Succeeded"));
        }
        json!({
            "id": format!("{}/{rtype}/{name}", self.prefix(zone)),
            "name": name,
            "type": format!("Microsoft.Network/dnszones/{rtype}"),
            "etag": r.etag,
            "properties": properties,
        })
    }
}

pub(super) fn contract_header<'a>(req: &contract::Request<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(super) fn contract_query<'a>(req: &contract::Request<'a>, name: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn apex_records() -> [(&'static str, Value); 2] {
    [
        (
            "SOA",
            json!({ "TTL": 3600, "SOARecord": {
                "host": "ns1-01.azure-dns.com.", "email": "azuredns-hostmaster.microsoft.com",
                "serialNumber": 1, "refreshTime": 3600, "retryTime": 300, "expireTime": 2419200,
                "minimumTTL": 300 } }),
        ),
        (
            "NS",
            json!({ "TTL": 172800, "NSRecords": [
                { "nsdname": "ns1-01.azure-dns.com." }, { "nsdname": "ns2-01.azure-dns.net." } ] }),
        ),
    ]
}

/// An ARM answer: a request ID, and the body's ETag as a header too, as ARM sends them.
fn respond(status: u16, body: Option<&Value>, extra: &[(&str, String)]) -> Response<Full<Bytes>> {
    let etag = body.and_then(|b| b.get("etag")).and_then(Value::as_str);
    let mut headers = vec![("x-ms-request-id", uuid::Uuid::new_v4().to_string())];
    headers.extend(etag.map(|e| ("etag", e.to_string())));
    headers.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    fake_http::respond(status, body, &headers)
}

/// A throwaway CA and a certificate it signed for 127.0.0.1 and localhost.
struct TestCa {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TestCa {
    fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("leaf params");
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("a leaf key");
        let cert = leaf
            .signed_by(&leaf_key, &issuer)
            .expect("a leaf certificate");
        TestCa {
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        }
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .expect("a server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(faults: Faults) -> AzureDnsFake {
        let fake = AzureDnsFake::start(
            Contract::azure_dns(),
            Options {
                page_size: 2,
                faults,
                ..Options::default()
            },
        );
        fake.add_zone("example.com");
        fake
    }

    fn client(fake: &AzureDnsFake) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(fake.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    }

    fn url(fake: &AzureDnsFake, tail: &str) -> String {
        let o = Options::default();
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/dnsZones/example.com{tail}?api-version=2018-05-01",
            fake.url, o.subscription, o.resource_group
        )
    }

    #[tokio::test]
    async fn record_sets_are_written_with_etags_and_listed_in_pages_over_tls() {
        let fake = fake(Faults::default());
        let http = client(&fake);
        let put = |name: &str, etag: Option<&str>, none_match: bool| {
            let mut r = http
                .put(url(&fake, &format!("/A/{name}")))
                .bearer_auth("test-token")
                .json(&json!({ "properties": { "TTL": 60, "ARecords": [{ "ipv4Address": "192.0.2.1" }] } }));
            if let Some(e) = etag {
                r = r.header("if-match", e);
            }
            if none_match {
                r = r.header("if-none-match", "*");
            }
            r.send()
        };
        let created = put("www", None, true).await.unwrap();
        assert_eq!(created.status(), 201);
        let etag = created.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(put("www", None, true).await.unwrap().status(), 412);
        assert_eq!(
            put("www", Some("stale"), false).await.unwrap().status(),
            412
        );
        assert_eq!(put("www", Some(&etag), false).await.unwrap().status(), 200);
        put("api", None, true).await.unwrap();

        // SOA, NS, api, www: two pages of two.
        let mut names = Vec::new();
        let mut next = Some(url(&fake, "/all"));
        while let Some(u) = next {
            let page: Value = http
                .get(u)
                .bearer_auth("test-token")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            names.extend(page["value"].as_array().unwrap().iter().map(|r| {
                format!(
                    "{} {}",
                    r["type"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                )
            }));
            next = page["nextLink"].as_str().map(str::to_string);
        }
        assert_eq!(
            names,
            [
                "Microsoft.Network/dnszones/A api",
                "Microsoft.Network/dnszones/A www",
                "Microsoft.Network/dnszones/NS @",
                "Microsoft.Network/dnszones/SOA @"
            ]
        );
        let unauthorized = http.get(url(&fake, "/all")).send().await.unwrap();
        assert_eq!(unauthorized.status(), 401);
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn a_request_outside_the_contract_is_refused_and_recorded() {
        let fake = fake(Faults::default());
        let r = client(&fake)
            .put(url(&fake, "/A/www"))
            .bearer_auth("test-token")
            .json(&json!({ "properties": { "ttl": 60 } }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v = fake.violations();
        assert_eq!(v.len(), 1);
        assert!(
            v[0].contains("RecordSets_CreateOrUpdate") && v[0].contains("ttl"),
            "{v:?}"
        );
        assert!(fake.records("example.com").iter().all(|(_, n, _)| n == "@"));
    }

    #[tokio::test]
    async fn injected_faults_are_throttling_errors_and_resets() {
        let fake = fake(Faults {
            throttle: 0.3,
            retry_after_secs: 7,
            server_error: 0.2,
            reset: 0.2,
            ..Faults::default()
        });
        let http = client(&fake);
        let c = fake.counts();
        let counted = fake_http::FaultCounters {
            throttled: &c.throttled,
            server_errors: &c.server_errors,
            resets: &c.resets,
        };
        fake_http::check_injected_faults(
            || http.get(url(&fake, "/all")).bearer_auth("test-token"),
            "7",
            counted,
        )
        .await;
    }
}
