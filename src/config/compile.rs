//! Validation: `RawConfig` → `Stack`. Collects every error; pure checks only (no I/O).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::{Entry, ProviderEntry, RawConfig};
use super::raw::*;
use super::*;
use crate::diag::{Diag, Location};
use crate::model::{
    Address, Attrs, Cloud, GroupAttrs, HealthCheck, Member, ProviderKind, RecordAttrs, RecordType,
    ResourceKind, Routing, ZoneAttrs,
};

const TTL_MAX: i64 = 604_800;
const DEFAULT_TTL: u32 = 300;

pub fn compile(
    raw: RawConfig,
    dir: &Path,
    explicit_env: bool,
) -> Result<(Stack, Vec<Diag>), Vec<Diag>> {
    let mut c = Compiler {
        diags: Vec::new(),
        broken: raw.broken.clone(),
        expectations: BTreeMap::new(),
    };
    let stack = c.compile(raw, dir, explicit_env);
    if c.diags.iter().any(Diag::is_error) {
        return Err(c.diags);
    }
    let stack = stack.expect("a stack is produced whenever there is no error");
    if let Err(cycle) = crate::graph::Graph::build(&stack.resources) {
        c.diags.push(cycle);
        return Err(c.diags);
    }
    Ok((stack, c.diags))
}

struct Compiler {
    diags: Vec<Diag>,
    /// Entries that failed to decode (already reported).
    broken: Vec<(String, String)>,
    /// What health probes expect, by record (see `Stack::health_expectations`).
    expectations: BTreeMap<Address, HealthExpectation>,
}

/// Whether `name` may be an entry of `section` that failed to decode. A name that was itself
/// an unresolved `${...}` could be anything, so it covers every name.
fn is_broken(broken: &[(String, String)], section: &str, name: &str) -> bool {
    broken
        .iter()
        .any(|(s, n)| s == section && (n == name || n.contains("${")))
}

/// A deployment as records see it: `api@aws/us-east-1`.
struct Deployment {
    group: Address,
    endpoint: Option<String>,
    region: String,
}

impl Compiler {
    fn error(
        &mut self,
        code: &'static str,
        msg: impl Into<String>,
        at: Location,
        label: impl Into<String>,
    ) {
        self.diags.push(Diag::error(code, msg).at(at, label));
    }

    fn compile(&mut self, raw: RawConfig, dir: &Path, explicit_env: bool) -> Option<Stack> {
        let (name, declared_env) = self.stack_identity(&raw);
        let environment = raw.environment.clone();
        if explicit_env
            && Some(&environment) != declared_env.as_ref()
            && !raw
                .environments
                .iter()
                .any(|e| e.value.get() == &environment)
        {
            let mut known: Vec<String> = raw
                .environments
                .iter()
                .map(|e| e.value.get().clone())
                .collect();
            known.extend(declared_env.clone());
            known.sort();
            known.dedup();
            self.diags.push(
                Diag::error(
                    "config::unknown_environment",
                    format!("unknown environment `{environment}`"),
                )
                .help(if known.is_empty() {
                    "declare it with an [env.NAME] table or [stack] environment".to_string()
                } else {
                    format!("declared environments: {}", known.join(", "))
                }),
            );
        }
        self.check_unique(
            raw.environments
                .iter()
                .map(|e| (e.value.get().clone(), e.loc(e.value.span()))),
            "environment",
        );

        let backend = self.backend(&raw, dir);
        let providers = self.providers(&raw, dir);

        let mut resources = Vec::new();
        let mut services = Vec::new();
        let mut deployments: BTreeMap<String, Deployment> = BTreeMap::new();
        self.services(
            &raw,
            &providers,
            &mut resources,
            &mut services,
            &mut deployments,
        );
        let zones = self.zones(&raw, &providers, &mut resources);
        self.records(&raw, &zones, &deployments, &mut resources);
        let metrics = self.metrics(&raw);
        let scaling = self.scaling(&raw, &services, &metrics);
        let compliance = self.compliance(&raw);
        let monitoring = self.monitoring(&raw, &services, &deployments, &metrics);
        self.resolve_depends_on(&raw, &services, &mut resources);

        Some(Stack {
            name: name?,
            environment,
            dir: dir.to_path_buf(),
            backend,
            providers,
            resources,
            services,
            scaling,
            compliance,
            metrics,
            monitoring,
            files: raw.files.clone(),
            origin: raw.stack.first().map(|e| e.whole()),
            health_expectations: std::mem::take(&mut self.expectations),
        })
    }

    fn stack_identity(&mut self, raw: &RawConfig) -> (Option<String>, Option<String>) {
        let Some(first) = raw.stack.first() else {
            let mut d = Diag::error(
                "config::missing_stack",
                "no file declares the [stack] table",
            );
            if let Some(f) = raw.files.first() {
                d = d.at(
                    Location {
                        file: f.clone(),
                        span: 0..0,
                    },
                    "add [stack] with a name here or in another file",
                );
            }
            self.diags
                .push(d.help("add:\n[stack]\nname = \"my-stack\""));
            return (None, None);
        };
        for dup in &raw.stack[1..] {
            self.diags.push(
                Diag::error("config::duplicate", "[stack] is declared more than once")
                    .at(dup.whole(), "declared again here")
                    .also(first.whole(), "first declared here"),
            );
        }
        let name = first.value.name.get().clone();
        if !is_identifier(&name) {
            self.error(
                "config::invalid_value",
                format!("invalid stack name `{name}`"),
                first.loc(first.value.name.span()),
                "use letters, digits, `-` and `_`",
            );
        }
        (
            Some(name),
            first.value.environment.as_ref().map(|e| e.get().clone()),
        )
    }

    fn backend(&mut self, raw: &RawConfig, dir: &Path) -> Backend {
        for dup in raw.backend.iter().skip(1) {
            self.diags.push(
                Diag::error("config::duplicate", "[backend] is declared more than once")
                    .at(dup.whole(), "declared again here")
                    .also(raw.backend[0].whole(), "first declared here"),
            );
        }
        let Some(b) = raw.backend.first() else {
            return Backend::Local {
                dir: dir.join(".cairn"),
            };
        };
        match b.value.kind.get() {
            BackendKind::Local => {
                for (key, v) in [("url", &b.value.url), ("ca_file", &b.value.ca_file)] {
                    if let Some(v) = v {
                        self.error(
                            "config::invalid_value",
                            format!("`{key}` is only for the postgres backend"),
                            b.loc(v.span()),
                            "remove this",
                        );
                    }
                }
                let path = b.value.path.as_ref().map_or(".cairn", |p| p.get().as_str());
                Backend::Local {
                    dir: dir.join(path),
                }
            }
            BackendKind::Postgres => {
                if let Some(p) = &b.value.path {
                    self.error(
                        "config::invalid_value",
                        "`path` is only for the local backend",
                        b.loc(p.span()),
                        "remove this",
                    );
                }
                Backend::Postgres {
                    db: crate::state::pg::Db {
                        url: b.value.url.as_ref().map(|u| u.get().clone()),
                        ca_file: b.value.ca_file.as_ref().map(|p| dir.join(p.get())),
                    },
                    dir: dir.join(".cairn"),
                }
            }
        }
    }

    fn providers(&mut self, raw: &RawConfig, dir: &Path) -> Providers {
        // Each environment gets its own simulated cloud by default, as it would its own account.
        let mut seen: HashMap<String, Location> = HashMap::new();
        let mut p = Providers {
            by_cloud: BTreeMap::new(),
            sandbox_dir: dir.join(".cairn").join("sandbox").join(&raw.environment),
            aws: None,
            azure: None,
            gcp: None,
        };
        for e in &raw.providers {
            let (name, entry) = &e.value;
            let loc = e.loc(name.span());
            if let Some(first) = seen.get(name.get()) {
                self.diags.push(
                    Diag::error(
                        "config::duplicate",
                        format!("provider `{}` is declared more than once", name.get()),
                    )
                    .at(loc, "declared again here")
                    .also(first.clone(), "first declared here"),
                );
                continue;
            }
            seen.insert(name.get().clone(), loc);
            match entry {
                ProviderEntry::Sandbox(s) => {
                    if let Some(path) = &s.path {
                        p.sandbox_dir = dir.join(path.get());
                    }
                }
                ProviderEntry::Aws(a) => {
                    if !is_region(a.region.get()) {
                        self.error(
                            "config::invalid_value",
                            format!("invalid AWS region `{}`", a.region.get()),
                            e.loc(a.region.span()),
                            "expected e.g. `us-east-1`",
                        );
                    }
                    self.check_url(e, a.endpoint.as_ref());
                    p.by_cloud.insert(Cloud::Aws, ProviderKind::Aws);
                    let rate = a.requests_per_second.as_ref().map_or(Some(10), |v| {
                        self.int_in(e, v, 1, 1000, "requests_per_second")
                    });
                    let burst = a
                        .burst
                        .as_ref()
                        .map_or(Some(50), |v| self.int_in(e, v, 1, 1000, "burst"));
                    let insync =
                        a.insync_timeout
                            .as_ref()
                            .map_or(Some(Duration::from_secs(60)), |v| {
                                self.duration_in(
                                    e,
                                    v,
                                    Duration::from_secs(1),
                                    Duration::from_secs(3600),
                                    "insync_timeout",
                                )
                            });
                    p.aws = Some(AwsSettings {
                        region: a.region.get().clone(),
                        profile: a.profile.as_ref().map(|x| x.get().clone()),
                        endpoint: a.endpoint.as_ref().map(|x| x.get().clone()),
                        requests_per_second: rate.unwrap_or(10),
                        burst: burst.unwrap_or(50),
                        insync_timeout: insync.unwrap_or(Duration::from_secs(60)),
                    });
                }
                ProviderEntry::Azure(a) => {
                    if !is_uuid(a.subscription_id.get()) {
                        self.error(
                            "config::invalid_value",
                            "subscription_id must be a UUID",
                            e.loc(a.subscription_id.span()),
                            "not a UUID",
                        );
                    }
                    self.check_url(e, a.endpoint.as_ref());
                    p.by_cloud.insert(Cloud::Azure, ProviderKind::Azure);
                    let rate = a.requests_per_second.as_ref().map_or(Some(20), |v| {
                        self.int_in(e, v, 1, 1000, "requests_per_second")
                    });
                    let burst = a
                        .burst
                        .as_ref()
                        .map_or(Some(100), |v| self.int_in(e, v, 1, 1000, "burst"));
                    let operation_timeout = a.operation_timeout.as_ref().map_or(
                        Some(crate::config::DEFAULT_AZURE_OPERATION_TIMEOUT),
                        |v| {
                            self.duration_in(
                                e,
                                v,
                                Duration::from_secs(1),
                                Duration::from_secs(2 * 3600),
                                "operation_timeout",
                            )
                        },
                    );
                    p.azure = Some(AzureSettings {
                        subscription_id: a.subscription_id.get().clone(),
                        resource_group: a.resource_group.get().clone(),
                        tenant_id: a.tenant_id.as_ref().map(|x| x.get().clone()),
                        endpoint: a.endpoint.as_ref().map(|x| x.get().clone()),
                        requests_per_second: rate.unwrap_or(20),
                        burst: burst.unwrap_or(100),
                        operation_timeout: operation_timeout
                            .unwrap_or(crate::config::DEFAULT_AZURE_OPERATION_TIMEOUT),
                    });
                }
                ProviderEntry::Gcp(g) => {
                    if !is_gcp_project(g.project.get()) {
                        self.error(
                            "config::invalid_value",
                            format!("invalid Google Cloud project ID `{}`", g.project.get()),
                            e.loc(g.project.span()),
                            "expected 6 to 30 lower-case letters, digits or dashes, starting with a letter",
                        );
                    }
                    self.check_url(e, g.endpoint.as_ref());
                    p.by_cloud.insert(Cloud::Gcp, ProviderKind::Gcp);
                    let rate = g.requests_per_second.as_ref().map_or(Some(20), |v| {
                        self.int_in(e, v, 1, 1000, "requests_per_second")
                    });
                    let burst = g
                        .burst
                        .as_ref()
                        .map_or(Some(100), |v| self.int_in(e, v, 1, 1000, "burst"));
                    let timeout =
                        g.change_timeout
                            .as_ref()
                            .map_or(Some(Duration::from_secs(60)), |v| {
                                self.duration_in(
                                    e,
                                    v,
                                    Duration::from_secs(1),
                                    Duration::from_secs(3600),
                                    "change_timeout",
                                )
                            });
                    p.gcp = Some(GcpSettings {
                        project: g.project.get().clone(),
                        endpoint: g.endpoint.as_ref().map(|x| x.get().clone()),
                        requests_per_second: rate.unwrap_or(20),
                        burst: burst.unwrap_or(100),
                        change_timeout: timeout.unwrap_or(Duration::from_secs(60)),
                    });
                }
            }
        }
        p
    }

    fn check_url<T>(&mut self, e: &Entry<T>, url: Option<&Sp<String>>) {
        if let Some(u) = url {
            let s = u.get();
            if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() < 10 {
                self.error(
                    "config::invalid_value",
                    format!("invalid endpoint URL `{s}`"),
                    e.loc(u.span()),
                    "expected http:// or https:// URL",
                );
            }
        }
    }

    fn services(
        &mut self,
        raw: &RawConfig,
        providers: &Providers,
        resources: &mut Vec<Desired>,
        services: &mut Vec<Service>,
        deployments: &mut BTreeMap<String, Deployment>,
    ) {
        self.check_unique(
            raw.services
                .iter()
                .map(|e| (e.value.name.get().clone(), e.loc(e.value.name.span()))),
            "service",
        );
        let mut seen_groups: HashMap<Address, Location> = HashMap::new();
        for e in &raw.services {
            let s = &e.value;
            let name = s.name.get();
            if !is_identifier(name) {
                self.error(
                    "config::invalid_value",
                    format!("invalid service name `{name}`"),
                    e.loc(s.name.span()),
                    "use letters, digits, `-` and `_`",
                );
            }
            if s.deployment.is_empty() {
                self.diags.push(
                    Diag::warning(
                        "config::no_deployments",
                        format!("service `{name}` has no deployments"),
                    )
                    .at(e.loc(s.name.span()), "declared here")
                    .help("add [[service.deployment]] tables with cloud, region, min and max"),
                );
            }
            let protected = s.protected.as_ref().is_some_and(|p| *p.get());
            let mut groups = Vec::new();
            for d in &s.deployment {
                let cloud = *d.cloud.get();
                let region = d.region.get();
                if !is_region(region) {
                    self.error(
                        "config::invalid_value",
                        format!("invalid region `{region}`"),
                        e.loc(d.region.span()),
                        "expected e.g. `us-east-1` or `europe-west1`",
                    );
                }
                let address = Address::group(name, cloud, region);
                if let Some(first) = seen_groups.get(&address) {
                    self.diags.push(
                        Diag::error(
                            "config::duplicate",
                            format!("service `{name}` is deployed twice to {cloud}/{region}"),
                        )
                        .at(e.loc(d.region.span()), "second deployment here")
                        .also(first.clone(), "first deployment here"),
                    );
                    continue;
                }
                seen_groups.insert(address.clone(), e.loc(d.region.span()));
                let min = self.int_in(e, &d.min, 0, 10_000, "min");
                let max = self.int_in(e, &d.max, 1, 10_000, "max");
                let desired = match &d.desired {
                    Some(v) => self.int_in(e, v, 0, 10_000, "desired"),
                    None => min,
                };
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        self.diags.push(
                            Diag::error(
                                "config::invalid_value",
                                format!("min ({lo}) is greater than max ({hi})"),
                            )
                            .at(e.loc(d.min.span()), "min")
                            .also(e.loc(d.max.span()), "max"),
                        );
                    } else if let (Some(want), Some(dspan)) = (desired, d.desired.as_ref())
                        && (want < lo || want > hi)
                    {
                        self.error(
                            "config::invalid_value",
                            format!("desired ({want}) must be between min ({lo}) and max ({hi})"),
                            e.loc(dspan.span()),
                            "out of range",
                        );
                    }
                }
                if let Some(ep) = &d.endpoint
                    && !is_ip(ep.get())
                    && !is_dns_name(ep.get())
                {
                    self.error(
                        "config::invalid_value",
                        format!("invalid endpoint `{}`", ep.get()),
                        e.loc(ep.span()),
                        "expected an IP address or host name",
                    );
                }
                let key = format!("{name}@{cloud}/{region}");
                deployments.insert(
                    key,
                    Deployment {
                        group: address.clone(),
                        endpoint: d.endpoint.as_ref().map(|x| x.get().clone()),
                        region: region.clone(),
                    },
                );
                groups.push(address.clone());
                resources.push(Desired {
                    address,
                    provider: providers.for_cloud(cloud),
                    attrs: Attrs::Group(GroupAttrs {
                        service: name.clone(),
                        cloud,
                        region: region.clone(),
                        instance_type: d.instance_type.as_ref().map(|x| x.get().clone()),
                        min: min.unwrap_or(0),
                        max: max.unwrap_or(1),
                        desired: desired.unwrap_or(0),
                        endpoint: d.endpoint.as_ref().map(|x| x.get().clone()),
                        group_name: d.group.as_ref().map(|x| x.get().clone()),
                        instances: None,
                    }),
                    depends_on: Vec::new(),
                    protected,
                    origin: e.loc(d.span()),
                });
            }
            if let Some(v) = &s.tls_min_version
                && !TLS_VERSIONS.contains(&v.get().as_str())
            {
                self.error(
                    "config::invalid_value",
                    format!("unknown TLS version `{}`", v.get()),
                    e.loc(v.span()),
                    "expected \"1.0\", \"1.1\", \"1.2\" or \"1.3\"",
                );
            }
            let days = |this: &mut Self, v: &Option<Sp<i64>>, what: &str| {
                v.as_ref().and_then(|v| this.int_in(e, v, 0, 36_500, what))
            };
            let backup_retention_days =
                days(self, &s.backup_retention_days, "backup_retention_days");
            let log_retention_days = days(self, &s.log_retention_days, "log_retention_days");
            services.push(Service {
                name: name.clone(),
                data_classification: s.data_classification.as_ref().map(|c| *c.get()),
                groups,
                protected,
                protocol: s.protocol.as_ref().map(|p| *p.get()),
                tls_min_version: s.tls_min_version.as_ref().map(|v| v.get().clone()),
                encryption_at_rest: s.encryption_at_rest.as_ref().map(|v| *v.get()),
                backup_retention_days,
                audit_logging: s.audit_logging.as_ref().map(|v| *v.get()),
                log_retention_days,
                origin: e.loc(s.name.span()),
            });
        }
    }

    fn zones(
        &mut self,
        raw: &RawConfig,
        providers: &Providers,
        resources: &mut Vec<Desired>,
    ) -> BTreeMap<String, Cloud> {
        self.check_unique(
            raw.zones.iter().map(|e| {
                (
                    e.value.name.get().trim_end_matches('.').to_string(),
                    e.loc(e.value.name.span()),
                )
            }),
            "zone",
        );
        let mut zones = BTreeMap::new();
        for e in &raw.zones {
            let z = &e.value;
            let name = z.name.get().trim_end_matches('.').to_string();
            if !is_dns_name(&name) || !name.contains('.') {
                self.error(
                    "config::invalid_value",
                    format!("invalid zone name `{}`", z.name.get()),
                    e.loc(z.name.span()),
                    "expected a domain like `shop.example.com`",
                );
            } else if name != name.to_lowercase() {
                self.lower_case(e.loc(z.name.span()), &name);
            }
            if zones.insert(name.clone(), *z.cloud.get()).is_some() {
                continue;
            }
            resources.push(Desired {
                address: Address::zone(&name),
                provider: providers.for_cloud(*z.cloud.get()),
                attrs: Attrs::Zone(ZoneAttrs { name }),
                depends_on: Vec::new(),
                protected: z.protected.as_ref().is_some_and(|p| *p.get()),
                origin: e.whole(),
            });
        }
        zones
    }

    fn records(
        &mut self,
        raw: &RawConfig,
        zones: &BTreeMap<String, Cloud>,
        deployments: &BTreeMap<String, Deployment>,
        resources: &mut Vec<Desired>,
    ) {
        let providers_for_zone: HashMap<&str, crate::model::ProviderRef> = resources
            .iter()
            .filter(|r| r.address.kind == ResourceKind::Zone)
            .map(|r| (r.address.name.as_str(), r.provider))
            .collect();
        let mut records = Vec::new();
        let mut seen: HashMap<Address, Location> = HashMap::new();
        for e in &raw.records {
            let r = &e.value;
            let zone = r.zone.get().trim_end_matches('.');
            let zone_known = zones.contains_key(zone);
            if !zone_known && !is_broken(&raw.broken, "zone", zone) {
                let known: Vec<&str> = zones.keys().map(String::as_str).collect();
                let mut d = Diag::error(
                    "config::unknown_reference",
                    format!("record refers to undeclared zone `{zone}`"),
                )
                .at(e.loc(r.zone.span()), "no [[zone]] has this name");
                if let Some(s) = suggest(zone, &known) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                self.diags.push(d);
            }
            let name = r.name.get();
            if !(name == "@" || is_record_name(name)) {
                self.error(
                    "config::invalid_value",
                    format!("invalid record name `{name}`"),
                    e.loc(r.name.span()),
                    "expected a name relative to the zone, or `@`",
                );
            } else if *name != name.to_lowercase() {
                self.lower_case(e.loc(r.name.span()), name);
            }
            let rtype = *r.rtype.get();
            let address = Address::record(zone, name, rtype);
            if let Some(first) = seen.get(&address) {
                self.diags.push(
                    Diag::error("config::duplicate", format!("record `{name}` {rtype} in zone `{zone}` is declared twice"))
                        .at(e.loc(r.name.span()), "declared again here")
                        .also(first.clone(), "first declared here")
                        .help("one record holds all answers of a name and type; use routing members for several"),
                );
                continue;
            }
            seen.insert(address.clone(), e.loc(r.name.span()));
            let ttl = match &r.ttl {
                Some(t) => self.int_in(e, t, 1, TTL_MAX, "ttl"),
                None => Some(DEFAULT_TTL),
            };
            let mut depends = Vec::new();
            // Cloud DNS routes by Google Cloud region, not by continent or country.
            let regions = zones.get(zone) == Some(&Cloud::Gcp);
            let routing = self
                .routing(e, rtype, deployments, regions, &mut depends)
                .map(Routing::normalized);
            let health_check = r
                .health_check
                .as_ref()
                .and_then(|h| self.health_check(e, h));
            if let Some(h) = &r.health_check {
                let h = h.get();
                let status = h
                    .expect_status
                    .as_ref()
                    .and_then(|v| self.int_in(e, v, 100, 599, "expect_status"))
                    .map(|v| v as u16);
                let body = h.expect_body.as_ref().map(|b| b.get().clone());
                if status.is_some() || body.is_some() {
                    self.expectations
                        .insert(address.clone(), HealthExpectation { status, body });
                }
            }
            if let (Some(rt), None) = (&routing, &r.health_check)
                && matches!(rt, Routing::Failover { .. } | Routing::Weighted { .. })
            {
                self.diags.push(
                    Diag::warning(
                        "config::no_health_check",
                        format!("{} record `{name}` has no health check", rt.policy()),
                    )
                    .at(
                        e.loc(r.name.span()),
                        "routing cannot react to failures without one",
                    )
                    .help("add health_check = { protocol = \"https\", path = \"/healthz\" }"),
                );
            }
            let (Some(ttl), Some(routing)) = (ttl, routing) else {
                continue;
            };
            if !zone_known {
                continue;
            }
            depends.push(Dependency {
                address: Address::zone(zone),
                origin: None,
            });
            records.push(Desired {
                address,
                provider: providers_for_zone[zone],
                attrs: Attrs::Record(RecordAttrs {
                    zone: zone.to_string(),
                    name: name.clone(),
                    rtype,
                    ttl,
                    routing,
                    health_check,
                }),
                depends_on: depends,
                protected: false,
                origin: e.whole(),
            });
        }
        resources.extend(records);
    }

    fn routing(
        &mut self,
        e: &Entry<RawRecord>,
        rtype: RecordType,
        deployments: &BTreeMap<String, Deployment>,
        regions: bool,
        depends: &mut Vec<Dependency>,
    ) -> Option<Routing> {
        let r = &e.value;
        let Some(routing) = &r.routing else {
            return match (&r.values, &r.target) {
                (Some(values), None) => self
                    .literal_values(e, rtype, values)
                    .map(|values| Routing::Simple { values }),
                (None, Some(target)) => self
                    .target(e, rtype, target, deployments, depends)
                    .map(|(values, _)| Routing::Simple { values }),
                (Some(_), Some(t)) => {
                    self.error(
                        "config::conflict",
                        "give either `values` or `target`, not both",
                        e.loc(t.span()),
                        "remove one",
                    );
                    None
                }
                (None, None) => {
                    self.error(
                        "config::missing_value",
                        "record has no answer",
                        e.loc(r.name.span()),
                        "needs `values`, `target` or `routing`",
                    );
                    None
                }
            };
        };
        if let Some(v) = r.values.as_ref().and_then(|v| v.first()) {
            self.error(
                "config::conflict",
                "`values` cannot be combined with `routing`",
                e.loc(v.span()),
                "use routing members instead",
            );
        }
        let raw = routing.get();
        let policy = *raw.policy.get();
        let policy_span = e.loc(raw.policy.span());
        match policy {
            RoutingPolicy::Failover => {
                if raw.members.is_some() {
                    self.error(
                        "config::conflict",
                        "failover routing takes `primary` and `secondary`, not `members`",
                        policy_span.clone(),
                        "failover",
                    );
                }
                let (Some(p), Some(s)) = (&raw.primary, &raw.secondary) else {
                    self.error(
                        "config::missing_value",
                        "failover routing needs both `primary` and `secondary`",
                        e.loc(routing.span()),
                        "incomplete failover",
                    );
                    return None;
                };
                let primary = self.target(e, rtype, p, deployments, depends);
                let secondary = self.target(e, rtype, s, deployments, depends);
                if p.get() == s.get() {
                    self.error(
                        "config::invalid_value",
                        "primary and secondary are the same deployment",
                        e.loc(s.span()),
                        "must differ from primary",
                    );
                }
                let member = |(values, id): (Vec<String>, String)| Member {
                    id,
                    values,
                    weight: None,
                    location: None,
                };
                Some(Routing::Failover {
                    primary: member(primary?),
                    secondary: member(secondary?),
                })
            }
            RoutingPolicy::Simple => {
                self.error(
                    "config::invalid_value",
                    "`routing` with policy `simple` is redundant",
                    policy_span,
                    "use `values` or `target` on the record",
                );
                None
            }
            RoutingPolicy::Weighted
            | RoutingPolicy::Latency
            | RoutingPolicy::Geolocation
            | RoutingPolicy::Multivalue => {
                for key in [&raw.primary, &raw.secondary].into_iter().flatten() {
                    self.error(
                        "config::conflict",
                        "`primary`/`secondary` are for failover routing",
                        e.loc(key.span()),
                        "use `members`",
                    );
                }
                let Some(members) = raw.members.as_ref().filter(|m| !m.is_empty()) else {
                    self.error(
                        "config::missing_value",
                        format!("{} routing needs `members`", policy_name(policy)),
                        e.loc(routing.span()),
                        "no members",
                    );
                    return None;
                };
                let mut out = Vec::new();
                let mut ids: HashMap<String, Location> = HashMap::new();
                let mut ok = true;
                for m in members {
                    if let (RoutingPolicy::Geolocation, Some(l)) = (policy, &m.get().location) {
                        self.geo_location(e, l, regions);
                    }
                    match self.member(e, rtype, policy, m, deployments, depends) {
                        Some(member) => {
                            let loc = e.loc(m.span());
                            if let Some(first) = ids.get(&member.id) {
                                self.diags.push(
                                    Diag::error(
                                        "config::duplicate",
                                        format!("routing member `{}` appears twice", member.id),
                                    )
                                    .at(loc, "again here")
                                    .also(first.clone(), "first here"),
                                );
                                ok = false;
                            }
                            ids.insert(member.id.clone(), e.loc(m.span()));
                            out.push(member);
                        }
                        None => ok = false,
                    }
                }
                if policy == RoutingPolicy::Weighted
                    && ok
                    && out.iter().all(|m| m.weight == Some(0))
                {
                    self.error(
                        "config::invalid_value",
                        "all weights are 0: the record would never answer",
                        e.loc(routing.span()),
                        "give at least one member a weight above 0",
                    );
                    ok = false;
                }
                if !ok {
                    return None;
                }
                Some(match policy {
                    RoutingPolicy::Weighted => Routing::Weighted { members: out },
                    RoutingPolicy::Latency => Routing::Latency { members: out },
                    RoutingPolicy::Multivalue => Routing::Multivalue { members: out },
                    _ => Routing::Geolocation { members: out },
                })
            }
        }
    }

    fn member(
        &mut self,
        e: &Entry<RawRecord>,
        rtype: RecordType,
        policy: RoutingPolicy,
        m: &Sp<RawMember>,
        deployments: &BTreeMap<String, Deployment>,
        depends: &mut Vec<Dependency>,
    ) -> Option<Member> {
        let raw = m.get();
        let mut region = None;
        let resolved = match (&raw.target, &raw.values) {
            (Some(t), None) => {
                self.target(e, rtype, t, deployments, depends)
                    .map(|(values, id)| {
                        region = deployments.get(t.get()).map(|d| d.region.clone());
                        (values, id)
                    })
            }
            (None, Some(v)) => {
                let values = self.literal_values(e, rtype, v);
                match &raw.id {
                    Some(id) => values.map(|v| (v, id.get().clone())),
                    None => {
                        self.error(
                            "config::missing_value",
                            "a member with literal `values` needs an `id`",
                            e.loc(m.span()),
                            "add id = \"...\"",
                        );
                        None
                    }
                }
            }
            _ => {
                self.error(
                    "config::missing_value",
                    "a routing member needs either `target` or `values`",
                    e.loc(m.span()),
                    "this member",
                );
                None
            }
        };
        let weight = match (&raw.weight, policy) {
            (Some(w), RoutingPolicy::Weighted) => self.int_in(e, w, 0, 255, "weight"),
            (None, RoutingPolicy::Weighted) => {
                self.error(
                    "config::missing_value",
                    "weighted members need a `weight` (0 to 255)",
                    e.loc(m.span()),
                    "no weight",
                );
                None
            }
            (Some(w), _) => {
                self.error(
                    "config::conflict",
                    "`weight` is only for weighted routing",
                    e.loc(w.span()),
                    "remove this",
                );
                None
            }
            (None, _) => None,
        };
        let location = match (&raw.location, policy) {
            // Checked by `geo_location`, which knows the zone's cloud.
            (Some(l), RoutingPolicy::Geolocation) => Some(l.get().clone()),
            (None, RoutingPolicy::Geolocation) => {
                self.error(
                    "config::missing_value",
                    "geolocation members need a `location`",
                    e.loc(m.span()),
                    "no location",
                );
                None
            }
            (Some(l), RoutingPolicy::Latency) => Some(l.get().clone()),
            (None, RoutingPolicy::Latency) => {
                if region.is_none() {
                    self.error(
                        "config::missing_value",
                        "latency members with literal values need a `location` (the region)",
                        e.loc(m.span()),
                        "no region",
                    );
                }
                region
            }
            (Some(l), _) => {
                self.error(
                    "config::conflict",
                    "`location` is only for latency and geolocation routing",
                    e.loc(l.span()),
                    "remove this",
                );
                None
            }
            (None, _) => None,
        };
        let (values, default_id) = resolved?;
        if policy == RoutingPolicy::Weighted && weight.is_none() {
            return None;
        }
        let id = raw.id.as_ref().map_or(default_id, |i| i.get().clone());
        Some(Member {
            id,
            values,
            weight,
            location,
        })
    }

    /// A geolocation member's `location`: a Google Cloud region in a zone on gcp (`regions`),
    /// a continent or country code elsewhere.
    fn geo_location(&mut self, e: &Entry<RawRecord>, l: &Sp<String>, regions: bool) {
        let s = l.get();
        let (ok, expected) = if regions {
            (
                is_gcp_region(s),
                "in a zone on gcp, expected a Google Cloud region like `europe-west1`",
            )
        } else {
            (
                s == "*" || (s.len() == 2 && s.chars().all(|c| c.is_ascii_uppercase())),
                "expected a continent or country code like `EU`, `DE`, or `*`",
            )
        };
        if !ok {
            self.error(
                "config::invalid_value",
                format!("invalid location `{s}`"),
                e.loc(l.span()),
                expected,
            );
        }
    }

    /// Resolves `service@cloud/region` to the deployment's endpoint; adds the dependency.
    fn target(
        &mut self,
        e: &Entry<RawRecord>,
        rtype: RecordType,
        target: &Sp<String>,
        deployments: &BTreeMap<String, Deployment>,
        depends: &mut Vec<Dependency>,
    ) -> Option<(Vec<String>, String)> {
        let t = target.get();
        let loc = e.loc(target.span());
        let Some(d) = deployments.get(t) else {
            if is_broken(
                &self.broken,
                "service",
                t.split('@').next().unwrap_or_default(),
            ) {
                return None;
            }
            let known: Vec<&str> = deployments.keys().map(String::as_str).collect();
            let mut diag = Diag::error(
                "config::unknown_reference",
                format!("unknown deployment `{t}`"),
            )
            .at(loc, "no service is deployed here");
            diag = match suggest(t, &known) {
                Some(s) => diag.help(format!("did you mean `{s}`?")),
                None if !t.contains('@') => {
                    diag.help("targets are written SERVICE@CLOUD/REGION, e.g. `api@aws/us-east-1`")
                }
                None => diag,
            };
            self.diags.push(diag);
            return None;
        };
        let Some(endpoint) = &d.endpoint else {
            self.error(
                "config::missing_value",
                format!("deployment `{t}` has no endpoint to route to"),
                loc,
                "add `endpoint` to this deployment",
            );
            return None;
        };
        if let Err(msg) = check_value(rtype, endpoint) {
            self.error(
                "config::invalid_value",
                format!("endpoint of `{t}` cannot be a {rtype} value: {msg}"),
                loc,
                "wrong record type for this target",
            );
            return None;
        }
        depends.push(Dependency {
            address: d.group.clone(),
            origin: None,
        });
        Some((vec![endpoint.clone()], t.clone()))
    }

    fn literal_values(
        &mut self,
        e: &Entry<RawRecord>,
        rtype: RecordType,
        values: &[Sp<String>],
    ) -> Option<Vec<String>> {
        if values.is_empty() {
            self.error(
                "config::missing_value",
                "`values` is empty",
                e.whole(),
                "needs at least one value",
            );
            return None;
        }
        let mut ok = true;
        for v in values {
            if let Err(msg) = check_value(rtype, v.get()) {
                self.error(
                    "config::invalid_value",
                    format!("invalid {rtype} value `{}`", v.get()),
                    e.loc(v.span()),
                    msg,
                );
                ok = false;
            }
        }
        if rtype == RecordType::CNAME && values.len() > 1 {
            self.error(
                "config::invalid_value",
                "a CNAME record has exactly one value",
                e.loc(values[1].span()),
                "extra value",
            );
            ok = false;
        }
        ok.then(|| values.iter().map(|v| v.get().clone()).collect())
    }

    fn health_check(
        &mut self,
        e: &Entry<RawRecord>,
        h: &Sp<RawHealthCheck>,
    ) -> Option<HealthCheck> {
        let raw = h.get();
        let protocol = *raw.protocol.get();
        let mut ok = true;
        let port = match &raw.port {
            Some(p) => self.int_in(e, p, 1, 65_535, "port").map(|p| p as u16),
            None => match protocol {
                Protocol::Http => Some(80),
                Protocol::Https => Some(443),
                Protocol::Tcp => {
                    self.error(
                        "config::missing_value",
                        "tcp health checks need a `port`",
                        e.loc(h.span()),
                        "no port",
                    );
                    None
                }
            },
        };
        if let Some(path) = &raw.path {
            if protocol == Protocol::Tcp {
                self.error(
                    "config::conflict",
                    "`path` is only for http and https checks",
                    e.loc(path.span()),
                    "tcp checks connect only",
                );
                ok = false;
            } else if !path.get().starts_with('/') {
                self.error(
                    "config::invalid_value",
                    format!("path `{}` must start with `/`", path.get()),
                    e.loc(path.span()),
                    "not an absolute path",
                );
                ok = false;
            }
        }
        let interval = match &raw.interval {
            Some(i) => self.duration_in(
                e,
                i,
                Duration::from_secs(1),
                Duration::from_secs(300),
                "interval",
            ),
            None => Some(Duration::from_secs(10)),
        };
        let timeout = match &raw.timeout {
            Some(t) => self.duration_in(
                e,
                t,
                Duration::from_secs(1),
                Duration::from_secs(60),
                "timeout",
            ),
            None => interval.map(|i| i.min(Duration::from_secs(5))),
        };
        if let (Some(i), Some(t), Some(ts)) = (interval, timeout, &raw.timeout)
            && t > i
        {
            self.error(
                "config::invalid_value",
                format!(
                    "timeout ({}) is longer than the interval ({})",
                    humantime::format_duration(t),
                    humantime::format_duration(i)
                ),
                e.loc(ts.span()),
                "must not exceed the interval",
            );
            ok = false;
        }
        // Probes are scheduled in whole seconds; say so rather than round silently.
        for (value, raw_value) in [(interval, &raw.interval), (timeout, &raw.timeout)] {
            if let (Some(d), Some(r)) = (value, raw_value)
                && d.subsec_nanos() != 0
            {
                self.error(
                    "config::invalid_value",
                    format!("`{}` is not a whole number of seconds", r.get()),
                    e.loc(r.span()),
                    "use whole seconds, e.g. `2s`",
                );
                ok = false;
            }
        }
        let failures = raw
            .failures
            .as_ref()
            .map_or(Some(3), |f| self.int_in(e, f, 1, 10, "failures"));
        let recoveries = raw
            .recoveries
            .as_ref()
            .map_or(Some(3), |r| self.int_in(e, r, 1, 10, "recoveries"));
        Some(HealthCheck {
            protocol: match protocol {
                Protocol::Http => "http",
                Protocol::Https => "https",
                Protocol::Tcp => "tcp",
            }
            .to_string(),
            port: port?,
            path: raw
                .path
                .as_ref()
                .map(|p| p.get().clone())
                .or_else(|| (protocol != Protocol::Tcp).then(|| "/".to_string())),
            interval_secs: interval?.as_secs(),
            timeout_secs: timeout?.as_secs(),
            failures: failures?,
            recoveries: recoveries?,
        })
        .filter(|_| ok)
    }

    fn scaling(
        &mut self,
        raw: &RawConfig,
        services: &[Service],
        metrics: &MetricsConfig,
    ) -> BTreeMap<String, ScalingPolicy> {
        self.check_unique(
            raw.scaling
                .iter()
                .map(|e| (e.value.0.get().clone(), e.loc(e.value.0.span()))),
            "scaling policy",
        );
        let mut out = BTreeMap::new();
        for e in &raw.scaling {
            let (name, s) = &e.value;
            if !services.iter().any(|svc| &svc.name == name.get()) {
                let known: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
                let mut d = Diag::error(
                    "config::unknown_reference",
                    format!("scaling policy for undeclared service `{}`", name.get()),
                )
                .at(e.loc(name.span()), "no [[service]] has this name");
                if let Some(sug) = suggest(name.get(), &known) {
                    d = d.help(format!("did you mean `{sug}`?"));
                }
                self.diags.push(d);
            }
            let target = *s.target_utilization.get();
            if !(target > 0.0 && target <= 1.0) {
                self.error(
                    "config::invalid_value",
                    format!("target_utilization {target} is out of range"),
                    e.loc(s.target_utilization.span()),
                    "must be above 0 and at most 1",
                );
            }
            let day = Duration::from_secs(86_400);
            let startup = s
                .startup
                .as_ref()
                .map_or(Some(Duration::from_secs(60)), |d| {
                    self.duration_in(e, d, Duration::ZERO, day, "startup")
                });
            let stabilization = s
                .scale_in_stabilization
                .as_ref()
                .map_or(Some(Duration::from_secs(300)), |d| {
                    self.duration_in(e, d, Duration::ZERO, day, "scale_in_stabilization")
                });
            let predictive = s.predictive.as_ref().and_then(|p| {
                let raw = p.get();
                let horizon =
                    self.duration_in(e, &raw.horizon, Duration::from_secs(60), day, "horizon");
                let history = raw.history.as_ref().map_or(Some(14 * day), |h| {
                    self.duration_in(e, h, day, 90 * day, "history")
                });
                Some(Predictive {
                    horizon: horizon?,
                    history: history?,
                })
            });
            let cost = s.cost.as_ref().and_then(|c| {
                let raw = c.get();
                let price = *raw.per_replica_hour.get();
                if price.is_nan() || price < 0.0 {
                    self.error(
                        "config::invalid_value",
                        "per_replica_hour must be 0 or more",
                        e.loc(raw.per_replica_hour.span()),
                        "negative price",
                    );
                    return None;
                }
                if let Some(max) = &raw.max_per_hour
                    && (max.get().is_nan() || *max.get() <= 0.0)
                {
                    self.error(
                        "config::invalid_value",
                        "max_per_hour must be above 0",
                        e.loc(max.span()),
                        "no budget",
                    );
                    return None;
                }
                Some(Cost {
                    per_replica_hour: price,
                    max_per_hour: raw.max_per_hour.as_ref().map(|m| *m.get()),
                })
            });
            let load = self.load(e, s, metrics);
            let load_factor = s.load_factor.as_ref().map_or(1.0, |f| {
                let v = *f.get();
                if !(v > 0.0 && v.is_finite()) {
                    self.error(
                        "config::invalid_value",
                        format!("load_factor {v} is out of range"),
                        e.loc(f.span()),
                        "must be above 0",
                    );
                }
                v
            });
            let scale_in_limit = s.scale_in_limit.as_ref().and_then(|l| {
                let raw = l.get();
                let percent = *raw.percent.get();
                if !(percent > 0.0 && percent <= 100.0) {
                    self.error(
                        "config::invalid_value",
                        format!("scale_in_limit.percent {percent} is out of range"),
                        e.loc(raw.percent.span()),
                        "must be above 0 and at most 100",
                    );
                }
                let period = self.duration_in(
                    e,
                    &raw.period,
                    Duration::from_secs(1),
                    day,
                    "scale_in_limit.period",
                )?;
                Some((percent, period))
            });
            let scale_to_zero_after = s.scale_to_zero_after.as_ref().and_then(|d| {
                self.duration_in(
                    e,
                    d,
                    Duration::from_secs(60),
                    30 * day,
                    "scale_to_zero_after",
                )
            });
            if let (Some(startup), Some(scale_in_stabilization)) = (startup, stabilization) {
                out.insert(
                    name.get().clone(),
                    ScalingPolicy {
                        target_utilization: target,
                        startup,
                        scale_in_stabilization,
                        predictive,
                        cost,
                        load,
                        load_factor,
                        scale_in_limit,
                        scale_to_zero_after,
                        origin: e.loc(name.span()),
                    },
                );
            }
        }
        out
    }

    /// `load` and `per_replica` come together: a load without a replica's share cannot be
    /// turned into replicas.
    fn load<T>(&mut self, e: &Entry<T>, s: &RawScaling, metrics: &MetricsConfig) -> Option<Load> {
        let per_replica = match (&s.load, &s.per_replica) {
            (None, None) => return None,
            (Some(load), None) => {
                self.error(
                    "config::missing_value",
                    "a load metric needs `per_replica`",
                    e.loc(load.span()),
                    "add `per_replica = N`: the load one replica serves",
                );
                return None;
            }
            (None, Some(p)) => {
                self.error(
                    "config::missing_value",
                    "`per_replica` needs a load metric",
                    e.loc(p.span()),
                    "add `load = { query = \"…\" }` (or `file`, or `trace`)",
                );
                return None;
            }
            (Some(_), Some(p)) => {
                let v = *p.get();
                if !(v > 0.0 && v.is_finite()) {
                    self.error(
                        "config::invalid_value",
                        format!("per_replica {v} is out of range"),
                        e.loc(p.span()),
                        "must be above 0",
                    );
                    return None;
                }
                v
            }
        };
        let metric = self.metric(e, s.load.as_ref()?, metrics)?;
        Some(Load {
            metric,
            per_replica,
        })
    }

    fn metric<T>(
        &mut self,
        e: &Entry<T>,
        m: &Sp<RawMetric>,
        metrics: &MetricsConfig,
    ) -> Option<Metric> {
        let raw = m.get();
        let given: Vec<&Sp<String>> = [&raw.query, &raw.file, &raw.trace]
            .into_iter()
            .flatten()
            .collect();
        if given.len() != 1 {
            self.error(
                "config::invalid_value",
                "a metric needs exactly one of `query`, `file` or `trace`",
                e.loc(m.span()),
                if given.is_empty() {
                    "none given"
                } else {
                    "more than one given"
                },
            );
            return None;
        }
        if let Some(q) = &raw.query {
            if q.get().trim().is_empty() {
                self.error(
                    "config::invalid_value",
                    "empty PromQL query",
                    e.loc(q.span()),
                    "empty",
                );
                return None;
            }
            if metrics.prometheus.is_none() {
                self.diags.push(
                    Diag::error(
                        "config::missing_value",
                        "a `query` metric needs a Prometheus server",
                    )
                    .at(e.loc(q.span()), "asked of no server")
                    .help("declare it: [metrics] prometheus = \"http://HOST:9090\""),
                );
                return None;
            }
            return Some(Metric::Query(q.get().clone()));
        }
        if let Some(f) = &raw.file {
            return Some(Metric::File(PathBuf::from(f.get())));
        }
        raw.trace
            .as_ref()
            .map(|t| Metric::Trace(PathBuf::from(t.get())))
    }

    fn monitoring(
        &mut self,
        raw: &RawConfig,
        services: &[Service],
        deployments: &BTreeMap<String, Deployment>,
        metrics: &MetricsConfig,
    ) -> Vec<Monitor> {
        self.check_unique(
            raw.monitoring
                .iter()
                .map(|e| (e.value.0.get().clone(), e.loc(e.value.0.span()))),
            "monitoring entry",
        );
        let mut out = Vec::new();
        for e in &raw.monitoring {
            let (key, m) = &e.value;
            let (service, deployment) = match key.get().split_once('@') {
                Some((svc, _)) => (svc.to_string(), Some(key.get().clone())),
                None => (key.get().clone(), None),
            };
            let known = match &deployment {
                Some(d) => deployments.contains_key(d),
                None => services.iter().any(|s| s.name == service),
            };
            if !known {
                let what = if deployment.is_some() {
                    "deployment"
                } else {
                    "service"
                };
                let candidates: Vec<&str> = match &deployment {
                    Some(_) => deployments.keys().map(String::as_str).collect(),
                    None => services.iter().map(|s| s.name.as_str()).collect(),
                };
                let mut d = Diag::error(
                    "config::unknown_reference",
                    format!("monitoring of undeclared {what} `{}`", key.get()),
                )
                .at(e.loc(key.span()), format!("no such {what}"));
                if let Some(sug) = suggest(key.get(), &candidates) {
                    d = d.help(format!("did you mean `{sug}`?"));
                }
                self.diags.push(d);
                continue;
            }
            let declared = [
                ("cpu", &m.cpu),
                ("memory", &m.memory),
                ("latency", &m.latency),
                ("error_rate", &m.error_rate),
                ("disk", &m.disk),
                ("network", &m.network),
            ];
            let mut watched = Vec::new();
            let mut ok = true;
            for (name, metric) in declared {
                if let Some(metric) = metric {
                    match self.metric(e, metric, metrics) {
                        Some(x) => watched.push((name.to_string(), x)),
                        None => ok = false,
                    }
                }
            }
            if watched.is_empty() && ok {
                self.error(
                    "config::missing_value",
                    "monitoring watches no metric",
                    e.loc(key.span()),
                    "add one of cpu, memory, latency, error_rate, disk, network",
                );
                continue;
            }
            if let Some(t) = &m.threshold
                && !(*t.get() > 0.0 && *t.get() < 1.0)
            {
                self.error(
                    "config::invalid_value",
                    format!("threshold {} is out of range", t.get()),
                    e.loc(t.span()),
                    "must be above 0 and below 1",
                );
                ok = false;
            }
            let on_anomaly = m
                .on_anomaly
                .as_ref()
                .map_or(AnomalyAction::Alert, |a| *a.get());
            if let (AnomalyAction::RouteAway, None, Some(a)) =
                (on_anomaly, &deployment, &m.on_anomaly)
            {
                self.diags.push(
                    Diag::error(
                        "config::invalid_value",
                        "`route_away` needs a deployment to route away from",
                    )
                    .at(e.loc(a.span()), "this entry monitors a whole service")
                    .help(format!(
                        "monitor a deployment instead: [monitoring.\"{service}@CLOUD/REGION\"]"
                    )),
                );
                ok = false;
            }
            let route_away_for =
                m.route_away_for
                    .as_ref()
                    .map_or(Some(Duration::from_secs(900)), |d| {
                        self.duration_in(
                            e,
                            d,
                            Duration::from_secs(1),
                            Duration::from_secs(86_400),
                            "route_away_for",
                        )
                    });
            if let (true, Some(route_away_for)) = (ok, route_away_for) {
                out.push(Monitor {
                    service,
                    deployment,
                    metrics: watched,
                    threshold: m.threshold.as_ref().map(|t| *t.get()),
                    on_anomaly,
                    route_away_for,
                    origin: e.loc(key.span()),
                });
            }
        }
        out
    }

    fn metrics(&mut self, raw: &RawConfig) -> MetricsConfig {
        for dup in raw.metrics.iter().skip(1) {
            self.diags.push(
                Diag::error("config::duplicate", "[metrics] is declared more than once")
                    .at(dup.whole(), "declared again here")
                    .also(raw.metrics[0].whole(), "first declared here"),
            );
        }
        let Some(e) = raw.metrics.first() else {
            return MetricsConfig::default();
        };
        let prometheus = e.value.prometheus.as_ref().and_then(|url| {
            let ok = url
                .get()
                .strip_prefix("http://")
                .or_else(|| url.get().strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty());
            if !ok {
                self.error(
                    "config::invalid_value",
                    format!("invalid Prometheus URL `{}`", url.get()),
                    e.loc(url.span()),
                    "expected http://HOST:PORT or https://…",
                );
            }
            ok.then(|| url.get().trim_end_matches('/').to_string())
        });
        let timeout = e.value.timeout.as_ref().and_then(|t| {
            self.duration_in(
                e,
                t,
                Duration::from_millis(100),
                Duration::from_secs(300),
                "timeout",
            )
        });
        MetricsConfig {
            prometheus,
            timeout,
        }
    }

    fn compliance(&mut self, raw: &RawConfig) -> Compliance {
        for dup in raw.compliance.iter().skip(1) {
            self.diags.push(
                Diag::error(
                    "config::duplicate",
                    "[compliance] is declared more than once",
                )
                .at(dup.whole(), "declared again here")
                .also(raw.compliance[0].whole(), "first declared here"),
            );
        }
        let Some(e) = raw.compliance.first() else {
            return Compliance::default();
        };
        let mut out = Compliance {
            origin: Some(e.whole()),
            change_approvers: e
                .value
                .change_approvers
                .iter()
                .map(|a| a.get().clone())
                .collect(),
            enforcement: e
                .value
                .enforcement
                .iter()
                .map(|(rule, level)| (rule.clone(), (*level.get(), e.loc(level.span()))))
                .collect(),
            ..Compliance::default()
        };
        for f in &e.value.frameworks {
            if !out.frameworks.contains(f.get()) {
                out.frameworks.push(*f.get());
            }
        }
        for (class, regions) in &e.value.allowed_regions {
            let parsed: Result<DataClassification, _> =
                serde::Deserialize::deserialize(serde::de::value::StrDeserializer::<
                    serde::de::value::Error,
                >::new(class));
            match parsed {
                Ok(c) => {
                    for r in regions {
                        if !is_region(r.get()) {
                            self.error(
                                "config::invalid_value",
                                format!("invalid region `{}`", r.get()),
                                e.loc(r.span()),
                                "expected e.g. `eu-west-1`",
                            );
                        }
                    }
                    out.allowed_regions
                        .insert(c, regions.iter().map(|r| r.get().clone()).collect());
                }
                Err(_) => {
                    let span = regions.first().map_or(e.span.clone(), |r| r.span());
                    self.diags.push(
                        Diag::error(
                            "config::invalid_value",
                            format!("unknown data classification `{class}` in allowed_regions"),
                        )
                        .at(e.loc(span), "regions for an unknown classification")
                        .help(
                            "classifications are: public, internal, confidential, personal, health",
                        ),
                    );
                }
            }
        }
        out
    }

    /// Resolves explicit `depends_on` entries to addresses; `service.NAME` means all its groups.
    fn resolve_depends_on(
        &mut self,
        raw: &RawConfig,
        services: &[Service],
        resources: &mut [Desired],
    ) {
        let index: HashMap<Address, usize> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.address.clone(), i))
            .collect();
        // `owners` are the addresses the entry declares (a service: one per deployment).
        let add = |c: &mut Compiler,
                   owners: &[Address],
                   entry_loc: &dyn Fn(&Sp<String>) -> Location,
                   deps: &[Sp<String>]| {
            let mut found = Vec::new();
            for d in deps {
                let loc = entry_loc(d);
                let text = d.get();
                let targets: Vec<Address> = if let Some(svc) = text.strip_prefix("service.") {
                    match services.iter().find(|s| s.name == svc) {
                        Some(s) => s.groups.clone(),
                        None => {
                            c.error(
                                "config::unknown_reference",
                                format!("depends_on names undeclared service `{svc}`"),
                                loc,
                                "no such service",
                            );
                            continue;
                        }
                    }
                } else {
                    match text.parse::<Address>() {
                        Ok(a) if index.contains_key(&a) => vec![a],
                        Ok(a) => {
                            let known: Vec<String> = index.keys().map(|k| k.to_string()).collect();
                            let known: Vec<&str> = known.iter().map(String::as_str).collect();
                            let mut diag = Diag::error(
                                "config::unknown_reference",
                                format!("depends_on names `{a}`, which is not declared"),
                            )
                            .at(loc, "no such resource");
                            if let Some(s) = suggest(text, &known) {
                                diag = diag.help(format!("did you mean `{s}`?"));
                            }
                            c.diags.push(diag);
                            continue;
                        }
                        Err(msg) => {
                            c.error("config::invalid_value", msg, loc, "not an address");
                            continue;
                        }
                    }
                };
                for t in targets {
                    if owners.contains(&t) {
                        c.error(
                            "config::cycle",
                            format!("`{t}` depends on itself"),
                            loc.clone(),
                            "self-reference",
                        );
                        continue;
                    }
                    found.push(Dependency {
                        address: t,
                        origin: Some(loc.clone()),
                    });
                }
            }
            found
        };
        let mut extra: Vec<(Address, Vec<Dependency>)> = Vec::new();
        for e in &raw.zones {
            let owner = Address::zone(e.value.name.get().trim_end_matches('.'));
            let deps = add(
                self,
                std::slice::from_ref(&owner),
                &|d| e.loc(d.span()),
                &e.value.depends_on,
            );
            extra.push((owner, deps));
        }
        for e in &raw.services {
            // Resolved once per service, then given to each of its groups.
            let groups = services
                .iter()
                .find(|s| &s.name == e.value.name.get())
                .map(|s| s.groups.clone())
                .unwrap_or_default();
            let deps = add(self, &groups, &|d| e.loc(d.span()), &e.value.depends_on);
            for group in groups {
                extra.push((group, deps.clone()));
            }
        }
        for e in &raw.records {
            let owner = Address::record(
                e.value.zone.get().trim_end_matches('.'),
                e.value.name.get(),
                *e.value.rtype.get(),
            );
            let deps = add(
                self,
                std::slice::from_ref(&owner),
                &|d| e.loc(d.span()),
                &e.value.depends_on,
            );
            extra.push((owner, deps));
        }
        for (owner, deps) in extra {
            if let Some(&i) = index.get(&owner) {
                resources[i].depends_on.extend(deps);
            }
        }
    }

    /// DNS ignores case and clouds store names in lower case: upper case would read back as
    /// a difference on every plan.
    fn lower_case(&mut self, at: Location, name: &str) {
        self.diags.push(
            Diag::error(
                "config::invalid_value",
                format!("`{name}` has upper-case letters"),
            )
            .at(at, "write DNS names in lower case")
            .help(format!(
                "use `{}`: DNS ignores case and clouds store names in lower case",
                name.to_lowercase()
            )),
        );
    }

    fn check_unique(&mut self, items: impl Iterator<Item = (String, Location)>, what: &str) {
        let mut seen: HashMap<String, Location> = HashMap::new();
        for (name, loc) in items {
            if let Some(first) = seen.get(&name) {
                self.diags.push(
                    Diag::error(
                        "config::duplicate",
                        format!("{what} `{name}` is declared more than once"),
                    )
                    .at(loc, "declared again here")
                    .also(first.clone(), "first declared here"),
                );
            } else {
                seen.insert(name, loc);
            }
        }
    }

    fn int_in<T>(
        &mut self,
        e: &Entry<T>,
        v: &Sp<i64>,
        lo: i64,
        hi: i64,
        what: &str,
    ) -> Option<u32> {
        let n = *v.get();
        if n < lo || n > hi {
            self.error(
                "config::invalid_value",
                format!("{what} {n} is out of range"),
                e.loc(v.span()),
                format!("must be between {lo} and {hi}"),
            );
            None
        } else {
            Some(n as u32)
        }
    }

    fn duration_in<T>(
        &mut self,
        e: &Entry<T>,
        v: &Sp<String>,
        lo: Duration,
        hi: Duration,
        what: &str,
    ) -> Option<Duration> {
        match humantime::parse_duration(v.get()) {
            Ok(d) if d >= lo && d <= hi => Some(d),
            Ok(_) => {
                self.error(
                    "config::invalid_value",
                    format!("{what} `{}` is out of range", v.get()),
                    e.loc(v.span()),
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(lo),
                        humantime::format_duration(hi)
                    ),
                );
                None
            }
            Err(err) => {
                self.diags.push(
                    Diag::error(
                        "config::invalid_value",
                        format!("invalid duration `{}` for {what}: {err}", v.get()),
                    )
                    .at(e.loc(v.span()), "not a duration")
                    .help("durations look like `500ms`, `30s`, `5m`, `2h`, `14d`"),
                );
                None
            }
        }
    }
}

const TLS_VERSIONS: &[&str] = &["1.0", "1.1", "1.2", "1.3"];

fn policy_name(p: RoutingPolicy) -> &'static str {
    match p {
        RoutingPolicy::Simple => "simple",
        RoutingPolicy::Weighted => "weighted",
        RoutingPolicy::Failover => "failover",
        RoutingPolicy::Latency => "latency",
        RoutingPolicy::Multivalue => "multivalue",
        RoutingPolicy::Geolocation => "geolocation",
    }
}

/// Checks a record value's syntax for its type; the message is used as the label.
fn check_value(rtype: RecordType, v: &str) -> Result<(), String> {
    match rtype {
        RecordType::A => v
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| "expected an IPv4 address".into()),
        RecordType::AAAA => v
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| "expected an IPv6 address".into()),
        RecordType::CNAME | RecordType::NS => {
            if is_dns_name(v.trim_end_matches('.')) {
                Ok(())
            } else {
                Err("expected a host name".into())
            }
        }
        RecordType::TXT => {
            if v.len() <= 255 {
                Ok(())
            } else {
                Err("TXT strings are at most 255 characters".into())
            }
        }
        RecordType::MX => match v.split_once(' ') {
            Some((prio, host))
                if prio.parse::<u16>().is_ok() && is_dns_name(host.trim_end_matches('.')) =>
            {
                Ok(())
            }
            _ => Err("expected `PRIORITY HOST`, e.g. `10 mail.example.com`".into()),
        },
        RecordType::SRV => {
            let parts: Vec<&str> = v.split_whitespace().collect();
            if parts.len() == 4 && parts[..3].iter().all(|p| p.parse::<u16>().is_ok()) {
                Ok(())
            } else {
                Err("expected `PRIORITY WEIGHT PORT TARGET`".into())
            }
        }
        RecordType::CAA => {
            if v.split_whitespace().count() >= 3 {
                Ok(())
            } else {
                Err("expected `FLAGS TAG VALUE`".into())
            }
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A Google Cloud project ID: 6 to 30 characters, lower-case letters, digits and dashes,
/// starting with a letter and not ending with a dash.
fn is_gcp_project(s: &str) -> bool {
    (6..=30).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A Google Cloud region, e.g. `europe-west1`, `northamerica-northeast2`.
pub(crate) fn is_gcp_region(s: &str) -> bool {
    let Some((head, tail)) = s.rsplit_once('-') else {
        return false;
    };
    let digits = tail.trim_start_matches(|c: char| c.is_ascii_lowercase());
    !head.is_empty()
        && head.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && !head.starts_with('-')
        && digits.len() < tail.len()
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// A record name relative to its zone; a leading `*` label makes a wildcard.
fn is_record_name(s: &str) -> bool {
    let rest = s
        .strip_prefix("*.")
        .unwrap_or(if s == "*" { "" } else { s });
    rest.is_empty() || is_dns_name(rest)
}
