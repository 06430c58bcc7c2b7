//! The AWS provider against a real AWS API (moto): Route53 zones, every routing policy,
//! health checks, ownership, drift and Auto Scaling groups.

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};

use crate::Work;
use crate::moto::moto;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_route53::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// The hosted zone ID of `zone`, if it exists.
async fn find_zone(r53: &aws_sdk_route53::Client, zone: &str) -> Option<String> {
    let fqdn = format!("{zone}.");
    let zones = r53
        .list_hosted_zones_by_name()
        .dns_name(&fqdn)
        .send()
        .await
        .unwrap();
    zones
        .hosted_zones()
        .iter()
        .find(|z| z.name() == fqdn)
        .map(|z| z.id().to_string())
}

/// Every record set of a zone as `NAME TYPE [SET-ID] TTL VALUES...`, sorted (SOA/NS left out).
pub fn zone_listing(endpoint: &str, zone: &str) -> Vec<String> {
    rt().block_on(async {
        let r53 = aws_sdk_route53::Client::new(&sdk(endpoint).await);
        let id = find_zone(&r53, zone).await.expect("zone exists");
        let mut out = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let mut req = r53.list_resource_record_sets().hosted_zone_id(&id);
            if let Some((n, t, i)) = &next {
                req = req
                    .start_record_name(n)
                    .start_record_type(t.clone())
                    .set_start_record_identifier(i.clone());
            }
            let page = req.send().await.unwrap();
            for s in page.resource_record_sets() {
                if matches!(s.r#type(), RrType::Soa | RrType::Ns) {
                    continue;
                }
                let values: Vec<&str> = s.resource_records().iter().map(|r| r.value()).collect();
                out.push(format!(
                    "{} {} {} {} {}",
                    s.name(),
                    s.r#type().as_str(),
                    s.set_identifier().unwrap_or("-"),
                    s.ttl().unwrap_or(0),
                    values.join(",")
                ));
            }
            if !page.is_truncated() {
                break;
            }
            next = Some((
                page.next_record_name().unwrap().to_string(),
                page.next_record_type().unwrap().clone(),
                page.next_record_identifier().map(str::to_string),
            ));
        }
        out.sort();
        out
    })
}

/// The failover role of each record set of a zone: `SET-ID ROLE VALUES`, sorted.
pub fn failover_roles(endpoint: &str, zone: &str) -> Vec<String> {
    rt().block_on(async {
        let r53 = aws_sdk_route53::Client::new(&sdk(endpoint).await);
        let id = find_zone(&r53, zone).await.expect("zone exists");
        let page = r53
            .list_resource_record_sets()
            .hosted_zone_id(&id)
            .send()
            .await
            .unwrap();
        let mut out: Vec<String> = page
            .resource_record_sets()
            .iter()
            .filter_map(|s| {
                let role = s.failover()?;
                let values: Vec<&str> = s.resource_records().iter().map(|r| r.value()).collect();
                Some(format!(
                    "{} {} {}",
                    s.set_identifier().unwrap_or("-"),
                    role.as_str(),
                    values.join(",")
                ))
            })
            .collect();
        out.sort();
        out
    })
}

/// Changes a record set behind cairn's back (UPSERT).
fn upsert(endpoint: &str, zone: &str, name: &str, ttl: i64, value: &str) {
    rt().block_on(async {
        let r53 = aws_sdk_route53::Client::new(&sdk(endpoint).await);
        let id = find_zone(&r53, zone).await.expect("zone exists");
        let set = ResourceRecordSet::builder()
            .name(format!("{name}.{zone}."))
            .r#type(RrType::A)
            .ttl(ttl)
            .resource_records(ResourceRecord::builder().value(value).build().unwrap())
            .build()
            .unwrap();
        let change = Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(set)
            .build()
            .unwrap();
        r53.change_resource_record_sets()
            .hosted_zone_id(id)
            .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
            .send()
            .await
            .unwrap();
    });
}

/// Creates an Auto Scaling group in moto, as an operator would before handing it to cairn.
pub fn create_group(endpoint: &str, region: &str, name: &str) {
    rt().block_on(async {
        let conf = aws_sdk_autoscaling::config::Builder::from(&sdk(endpoint).await)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        let asg = aws_sdk_autoscaling::Client::from_conf(conf);
        asg.create_launch_configuration()
            .launch_configuration_name(format!("{name}-lc"))
            .image_id("ami-12c6146b")
            .instance_type("m5.large")
            .send()
            .await
            .unwrap();
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name(format!("{name}-lc"))
            .min_size(0)
            .max_size(1)
            .desired_capacity(0)
            .availability_zones(format!("{region}a"))
            .send()
            .await
            .unwrap();
    });
}

pub fn group_capacity(endpoint: &str, region: &str, name: &str) -> (i32, i32, i32) {
    rt().block_on(async {
        let conf = aws_sdk_autoscaling::config::Builder::from(&sdk(endpoint).await)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        let asg = aws_sdk_autoscaling::Client::from_conf(conf);
        let out = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .unwrap();
        let g = &out.auto_scaling_groups()[0];
        (
            g.min_size().unwrap(),
            g.max_size().unwrap(),
            g.desired_capacity().unwrap(),
        )
    })
}

pub fn aws_stack(endpoint: &str, body: &str) -> String {
    format!(
        "[stack]\nname = \"aws\"\nenvironment = \"test\"\n\n[provider.aws]\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n\n{body}"
    )
}

const ROUTED: &str = r#"
[[zone]]
name = "cloud.example.com"
cloud = "aws"

[[service]]
name = "api"
  [[service.deployment]]
  cloud = "aws"
  region = "us-east-1"
  min = 2
  max = 6
  endpoint = "192.0.2.10"
  [[service.deployment]]
  cloud = "gcp"
  region = "europe-west1"
  min = 1
  max = 3
  endpoint = "198.51.100.7"

[[record]]
zone = "cloud.example.com"
name = "www"
type = "A"
ttl = 60
values = ["192.0.2.1", "192.0.2.2"]

[[record]]
zone = "cloud.example.com"
name = "@"
type = "TXT"
values = ["v=spf1 -all"]

[[record]]
zone = "cloud.example.com"
name = "api"
type = "A"
ttl = 30
routing = { policy = "failover", primary = "api@aws/us-east-1", secondary = "api@gcp/europe-west1" }
health_check = { protocol = "https", path = "/healthz", interval = "10s", failures = 2 }

[[record]]
zone = "cloud.example.com"
name = "split"
type = "A"
routing = { policy = "weighted", members = [{ target = "api@aws/us-east-1", weight = 70 }, { target = "api@gcp/europe-west1", weight = 30 }] }
health_check = { protocol = "tcp", port = 443 }

[[record]]
zone = "cloud.example.com"
name = "near"
type = "A"
routing = { policy = "latency", members = [{ id = "use1", values = ["192.0.2.10"], location = "us-east-1" }, { id = "euw1", values = ["198.51.100.7"], location = "eu-west-1" }] }

[[record]]
zone = "cloud.example.com"
name = "geo"
type = "A"
routing = { policy = "geolocation", members = [{ id = "eu", values = ["198.51.100.7"], location = "EU" }, { id = "default", values = ["192.0.2.10"], location = "*" }] }

[[record]]
zone = "cloud.example.com"
name = "many"
type = "A"
routing = { policy = "multivalue", members = [{ id = "a", values = ["192.0.2.21"] }, { id = "b", values = ["192.0.2.22"] }] }
health_check = { protocol = "http", path = "/" }
"#;

#[test]
fn every_routing_policy_round_trips_through_route53() {
    let Some((moto, _guard)) = moto() else { return };
    let w = Work::new();
    w.write("s/stack.toml", &aws_stack(&moto.url, ROUTED));
    create_group(&moto.url, "us-east-1", "api");
    let r = w.ok(&["apply", "s", "--auto-approve"], 0);
    assert!(
        r.stdout.contains("Apply complete! 10 added"),
        "{}",
        r.stdout
    );
    let r = w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    insta::assert_snapshot!(
        "route53_zone",
        zone_listing(&moto.url, "cloud.example.com").join("\n")
    );
    assert_eq!(group_capacity(&moto.url, "us-east-1", "api"), (2, 6, 2));
}

#[test]
fn drift_is_corrected_and_records_cairn_does_not_own_are_left_alone() {
    let Some((moto, _guard)) = moto() else { return };
    let w = Work::new();
    let body = "[[zone]]\nname = \"d.example.com\"\ncloud = \"aws\"\n\n[[record]]\nzone = \"d.example.com\"\nname = \"www\"\ntype = \"A\"\nvalues = [\"192.0.2.1\"]\n";
    w.write("s/stack.toml", &aws_stack(&moto.url, body));
    w.ok(&["apply", "s", "--auto-approve"], 0);
    upsert(&moto.url, "d.example.com", "www", 999, "192.0.2.99");
    upsert(&moto.url, "d.example.com", "manual", 60, "192.0.2.50");
    let r = w.ok(&["plan", "s", "--detailed-exitcode"], 2);
    insta::assert_snapshot!("route53_drift", r.stdout);
    w.ok(&["apply", "s", "--auto-approve"], 0);
    w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    assert_eq!(
        zone_listing(&moto.url, "d.example.com"),
        vec![
            "manual.d.example.com. A - 60 192.0.2.50",
            "www.d.example.com. A - 300 192.0.2.1"
        ]
    );
    // Destroy removes what cairn owns; the zone stays because of the record it does not own.
    let r = w.ok(&["destroy", "s", "--auto-approve"], 1);
    assert!(r.stdout.contains("HostedZoneNotEmpty"), "{}", r.stdout);
    assert_eq!(
        zone_listing(&moto.url, "d.example.com"),
        vec!["manual.d.example.com. A - 60 192.0.2.50"]
    );
}

#[test]
fn groups_are_adopted_resized_and_imported() {
    let Some((moto, _guard)) = moto() else { return };
    let w = Work::new();
    create_group(&moto.url, "us-west-2", "web-prod");
    let body = "[[service]]\nname = \"web\"\n  [[service.deployment]]\n  cloud = \"aws\"\n  region = \"us-west-2\"\n  group = \"web-prod\"\n  min = 1\n  max = 4\n  desired = 2\n";
    w.write("s/stack.toml", &aws_stack(&moto.url, body));
    w.ok(&["apply", "s", "--auto-approve"], 0);
    assert_eq!(
        group_capacity(&moto.url, "us-west-2", "web-prod"),
        (1, 4, 2)
    );
    w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    // Instances are observed, never declared: they show in state but are no drift.
    let shown = w.json(&["state", "show", "group.web@aws/us-west-2", "s"]);
    assert!(shown["attrs"]["instances"].is_u64(), "{shown}");
    w.write(
        "s/stack.toml",
        &aws_stack(&moto.url, &body.replace("desired = 2", "desired = 3")),
    );
    let r = w.ok(&["apply", "s", "--auto-approve"], 0);
    assert!(r.stdout.contains("~ desired = 2 -> 3"), "{}", r.stdout);
    assert_eq!(
        group_capacity(&moto.url, "us-west-2", "web-prod"),
        (1, 4, 3)
    );

    // A group that does not exist is not created: cairn says what to do.
    w.write(
        "s/stack.toml",
        &aws_stack(&moto.url, &body.replace("web-prod", "nope")),
    );
    let r = w.ok(&["apply", "s", "--auto-approve"], 1);
    assert!(
        r.stdout
            .contains("no Auto Scaling group `nope` in us-west-2"),
        "{}",
        r.stdout
    );
}

fn many_records(zone: &str, n: usize, ttl: u32) -> (String, Vec<String>) {
    let mut body = format!("[[zone]]\nname = \"{zone}\"\ncloud = \"aws\"\n\n");
    let mut listing = Vec::new();
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
        body += &format!(
            "[[record]]\nzone = \"{zone}\"\nname = \"r{i}\"\ntype = \"A\"\nttl = {ttl}\nvalues = [\"{ip}\"]\n\n"
        );
        listing.push(format!("r{i}.{zone}. A - {ttl} {ip}"));
    }
    listing.sort();
    (body, listing)
}

#[test]
fn two_thousand_records_converge_through_throttling_server_errors_and_resets() {
    use cairn::testing::faultproxy::{FaultProxy, Faults};
    let Some((moto, _guard)) = moto() else { return };
    let faults = Faults {
        throttle: 0.20,
        server_error: 0.05,
        reset: 0.02,
        ..Faults::default()
    };
    let proxy = FaultProxy::start(&moto.url, faults, 7);
    let w = Work::new();
    let apply = |w: &Work| {
        let r = crate::Run::from(
            w.cmd(&["apply", "s", "--auto-approve", "--json"])
                .env("CAIRN_AWS_BATCH_ELEMENTS", "100")
                .output()
                .unwrap(),
        );
        assert_eq!(
            r.code, 0,
            "apply failed under faults:\n{}\n{}",
            r.stdout, r.stderr
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["api_calls"]["aws"].as_u64().unwrap()
    };

    let (body, listing) = many_records("f.example.com", 2000, 300);
    w.write("s/stack.toml", &aws_stack(&proxy.url, &body));
    let before = proxy.requests();
    let calls = apply(&w);
    assert_eq!(
        zone_listing(&moto.url, "f.example.com"),
        listing,
        "the zone equals the declared one exactly"
    );
    // Cross-check cairn's counter: each call reached the proxy, except an attempt sent on a
    // pooled connection the proxy had just dropped (at most one per injected reset).
    let seen = proxy.requests() - before;
    let resets = proxy
        .counts()
        .resets
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        seen.abs_diff(calls) <= resets,
        "proxy saw {seen} requests, cairn counted {calls} ({resets} resets)"
    );

    // Update every record and delete a quarter of them, under the same faults.
    let (body, listing) = many_records("f.example.com", 1500, 60);
    w.write("s/stack.toml", &aws_stack(&proxy.url, &body));
    apply(&w);
    assert_eq!(zone_listing(&moto.url, "f.example.com"), listing);
    let r = w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);

    let c = proxy.counts();
    use std::sync::atomic::Ordering::Relaxed;
    assert!(
        c.throttled.load(Relaxed) > 10
            && c.server_errors.load(Relaxed) > 0
            && c.resets.load(Relaxed) > 0,
        "faults were injected"
    );
    eprintln!(
        "fault proxy: {} requests, {} throttled, {} 5xx, {} resets",
        c.requests.load(Relaxed),
        c.throttled.load(Relaxed),
        c.server_errors.load(Relaxed),
        c.resets.load(Relaxed)
    );
}

/// Record sets carry no ownership marker: an apply killed between a Route53 batch and the
/// state write is recovered from the write-ahead intents in the state journal.
#[test]
fn kill_9_during_an_aws_apply_then_the_next_apply_converges() {
    use cairn::testing::faultproxy::{FaultProxy, Faults};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let Some((moto, _guard)) = moto() else { return };
    // Answers are held back after moto applied a request: kills land where Route53 has a
    // batch the state has not recorded yet.
    let proxy = FaultProxy::start(
        &moto.url,
        Faults {
            latency_after: Duration::from_millis(20),
            ..Faults::default()
        },
        1,
    );
    let slow_apply = |w: &Work| {
        w.cmd(&["apply", "s", "--auto-approve"])
            .env("CAIRN_AWS_BATCH_ELEMENTS", "10")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let calibrate = Work::new();
    let (body, _) = many_records("calibrate.example.com", 200, 300);
    calibrate.write("s/stack.toml", &aws_stack(&proxy.url, &body));
    let start = Instant::now();
    assert!(slow_apply(&calibrate).wait().unwrap().success());
    let duration = start.elapsed();

    let (mut mid_apply, mut unrecorded) = (0, 0);
    for trial in 0..6 {
        let zone = format!("k{trial}.example.com");
        let (body, listing) = many_records(&zone, 200, 300);
        let w = Work::new();
        w.write("s/stack.toml", &aws_stack(&proxy.url, &body));
        let mut child = slow_apply(&w);
        std::thread::sleep(duration.mul_f64((trial as f64 + 0.5) / 6.0));
        child.kill().unwrap();
        child.wait().unwrap();
        let partial = zone_count(&moto.url, &zone);
        if partial.is_some_and(|n| n > 0 && n < 200) {
            mid_apply += 1;
        }
        let recorded = w.json(&["state", "list", "s"]).as_array().map_or(0, |a| {
            a.iter()
                .filter(|x| x.as_str().unwrap().starts_with("record."))
                .count()
        });
        if partial.unwrap_or(0) > recorded {
            unrecorded += 1;
        }
        let r = w.ok(&["apply", "s", "--auto-approve"], 0);
        assert!(!r.stdout.contains("not managed"), "{}", r.stdout);
        w.ok(&["plan", "s", "--detailed-exitcode"], 0);
        assert_eq!(
            zone_listing(&moto.url, &zone),
            listing,
            "trial {trial}: the zone equals the declared one"
        );
        let state: Vec<serde_json::Value> =
            w.json(&["state", "list", "s"]).as_array().unwrap().clone();
        assert_eq!(
            state.len(),
            201,
            "trial {trial}: every record and the zone are recorded"
        );
    }
    assert!(
        mid_apply >= 3,
        "only {mid_apply} of 6 kills landed mid-apply"
    );
    assert!(
        unrecorded >= 1,
        "no kill left records in Route53 that the state had not recorded"
    );
}

/// How many record sets (SOA/NS aside) a zone has, or None if it does not exist yet.
fn zone_count(endpoint: &str, zone: &str) -> Option<usize> {
    rt().block_on(async {
        let r53 = aws_sdk_route53::Client::new(&sdk(endpoint).await);
        find_zone(&r53, zone).await.is_some()
    })
    .then(|| zone_listing(endpoint, zone).len())
}

#[test]
fn import_adopts_a_hand_made_record_and_group() {
    let Some((moto, _guard)) = moto() else { return };
    let w = Work::new();
    let zone = "[[zone]]\nname = \"i.example.com\"\ncloud = \"aws\"\n";
    w.write("s/stack.toml", &aws_stack(&moto.url, zone));
    w.ok(&["apply", "s", "--auto-approve"], 0);
    // Made by hand, then declared: the plan refuses to take it over silently.
    upsert(&moto.url, "i.example.com", "legacy", 120, "192.0.2.77");
    create_group(&moto.url, "us-east-1", "batch");
    let body = format!(
        "{zone}\n[[record]]\nzone = \"i.example.com\"\nname = \"legacy\"\ntype = \"A\"\nttl = 120\nvalues = [\"192.0.2.77\"]\n\n[[service]]\nname = \"batch\"\n  [[service.deployment]]\n  cloud = \"aws\"\n  region = \"us-east-1\"\n  min = 0\n  max = 1\n"
    );
    w.write("s/stack.toml", &aws_stack(&moto.url, &body));
    let r = w.ok(&["plan", "s"], 1);
    assert!(
        r.stderr.contains(
            "record.i.example.com/legacy/A already exists in aws and is not managed by this stack"
        ),
        "{}",
        r.stderr
    );
    let json = crate::Run::from(w.cmd(&["plan", "s", "--json"]).output().unwrap());
    let diags: serde_json::Value = serde_json::from_str(&json.stderr).unwrap();
    let help = diags["diagnostics"][0]["help"]
        .as_str()
        .expect("import hint");
    let id = help.split_whitespace().last().unwrap().to_string();

    let r = w.ok(
        &["import", "record.i.example.com/legacy/A", &id, "-C", "s"],
        0,
    );
    assert!(
        r.stdout
            .starts_with("Imported record.i.example.com/legacy/A"),
        "{}",
        r.stdout
    );
    w.ok(
        &[
            "import",
            "group.batch@aws/us-east-1",
            "us-east-1/batch",
            "-C",
            "s",
        ],
        0,
    );
    let r = w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert_eq!(
        w.ok(&["state", "list", "s"], 0).stdout,
        "zone.i.example.com\nrecord.i.example.com/legacy/A\ngroup.batch@aws/us-east-1\n"
    );
}

#[test]
fn aws_endpoint_url_in_the_environment_is_honoured() {
    let Some((moto, _guard)) = moto() else { return };
    let w = Work::new();
    w.write(
        "s/stack.toml",
        "[stack]\nname = \"env\"\n\n[provider.aws]\nregion = \"us-east-1\"\n\n[[zone]]\nname = \"e.example.com\"\ncloud = \"aws\"\n",
    );
    let r = crate::Run::from(
        w.cmd(&["apply", "s", "--auto-approve"])
            .env("AWS_ENDPOINT_URL", &moto.url)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        zone_listing(&moto.url, "e.example.com"),
        Vec::<String>::new(),
        "the zone exists in moto"
    );
}

#[test]
fn importing_a_record_adopts_its_health_checks() {
    use aws_sdk_route53::types::{HealthCheckConfig, HealthCheckType, TagResourceType};
    let Some((moto, _guard)) = moto() else { return };
    let w = Work::new();
    let zone = "[[zone]]\nname = \"h.example.com\"\ncloud = \"aws\"\n";
    w.write("s/stack.toml", &aws_stack(&moto.url, zone));
    w.ok(&["apply", "s", "--auto-approve"], 0);
    // By hand: a health check and a weighted record set that uses it.
    let check = rt().block_on(async {
        let r53 = aws_sdk_route53::Client::new(&sdk(&moto.url).await);
        let config = HealthCheckConfig::builder()
            .r#type(HealthCheckType::Https)
            .ip_address("192.0.2.77")
            .port(443)
            .resource_path("/")
            .request_interval(30)
            .failure_threshold(3)
            .build()
            .unwrap();
        let hc = r53
            .create_health_check()
            .caller_reference("by-hand")
            .health_check_config(config)
            .send()
            .await
            .unwrap();
        let id = hc.health_check().unwrap().id().to_string();
        let zone_id = find_zone(&r53, "h.example.com").await.expect("zone exists");
        let set = ResourceRecordSet::builder()
            .name("lb.h.example.com.")
            .r#type(RrType::A)
            .ttl(60)
            .set_identifier("a")
            .weight(1)
            .health_check_id(&id)
            .resource_records(
                ResourceRecord::builder()
                    .value("192.0.2.77")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let change = Change::builder()
            .action(ChangeAction::Create)
            .resource_record_set(set)
            .build()
            .unwrap();
        r53.change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
            .send()
            .await
            .unwrap();
        id
    });
    let body = format!(
        "{zone}\n[[record]]\nzone = \"h.example.com\"\nname = \"lb\"\ntype = \"A\"\nttl = 60\nrouting = {{ policy = \"weighted\", members = [{{ id = \"a\", values = [\"192.0.2.77\"], weight = 1 }}] }}\nhealth_check = {{ protocol = \"https\", path = \"/\", interval = \"30s\", failures = 3 }}\n"
    );
    w.write("s/stack.toml", &aws_stack(&moto.url, &body));
    let json = crate::Run::from(w.cmd(&["plan", "s", "--json"]).output().unwrap());
    let diags: serde_json::Value = serde_json::from_str(&json.stderr).unwrap();
    let id = diags["diagnostics"][0]["help"]
        .as_str()
        .expect("import hint")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    w.ok(&["import", "record.h.example.com/lb/A", &id, "-C", "s"], 0);
    let r = w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    let owner = rt().block_on(async {
        let r53 = aws_sdk_route53::Client::new(&sdk(&moto.url).await);
        let tags = r53
            .list_tags_for_resource()
            .resource_type(TagResourceType::Healthcheck)
            .resource_id(&check)
            .send()
            .await
            .unwrap();
        tags.resource_tag_set()
            .unwrap()
            .tags()
            .iter()
            .find(|t| t.key() == Some("cairn:owner"))
            .and_then(|t| t.value())
            .map(str::to_string)
    });
    assert!(
        owner.is_some(),
        "the health check now carries cairn's owner tag"
    );
}
