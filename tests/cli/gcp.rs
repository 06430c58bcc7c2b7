//! The gcp provider end to end: the real `cairn` binary against the Google fake
//! (`cairn::testing::google`), which checks every request against the official discovery
//! documents (tests/fixtures/contracts/gcp-dns-v1-discovery.json and the Compute Engine subset).
//! Credentials are Application Default Credentials with a real service-account key file: the
//! OAuth JWT flow runs against the fake's token endpoint.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;

use cairn::testing::google::{Faults, GoogleFake, Options};

use crate::Work;

pub fn fake(faults: Faults) -> GoogleFake {
    GoogleFake::start(Options {
        faults,
        ..Options::default()
    })
}

/// The environment that logs `cairn` in as the fake's service account.
pub fn env(w: &Work, fake: &GoogleFake) -> Vec<(String, String)> {
    let key = w.path("gcp-key.json");
    std::fs::write(&key, fake.service_account_json()).unwrap();
    vec![(
        "GOOGLE_APPLICATION_CREDENTIALS".into(),
        key.display().to_string(),
    )]
}

fn cmd(w: &Work, fake: &GoogleFake, args: &[&str]) -> Command {
    let mut c = w.cmd(args);
    c.envs(env(w, fake));
    c
}

/// A stack on the fake: `[provider.gcp]` and `body`.
pub fn stack_with(fake: &GoogleFake, body: &str) -> String {
    format!(
        "[stack]\nname = \"g\"\nenvironment = \"test\"\n\n[provider.gcp]\nproject = \"{}\"\nendpoint = \"{}\"\n\n{body}",
        Options::default().project,
        fake.url
    )
}

fn run(w: &Work, fake: &GoogleFake, args: &[&str], code: i32) -> crate::Run {
    let r = crate::Run::from(cmd(w, fake, args).output().expect("run cairn"));
    assert_eq!(
        r.code, code,
        "cairn {args:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Every record set but the zone's SOA and NS, one line each: `TYPE NAME TTL DATA`.
fn listing(fake: &GoogleFake, zone: &str) -> Vec<String> {
    fake.rrsets(zone)
        .into_iter()
        .filter(|s| s["name"] != zone || (s["type"] != "SOA" && s["type"] != "NS"))
        .map(|mut s| {
            let head = format!(
                "{} {} {}",
                s["type"].as_str().unwrap(),
                s["name"].as_str().unwrap(),
                s["ttl"]
            );
            let data = match s["routingPolicy"].take() {
                serde_json::Value::Null => s["rrdatas"].to_string(),
                mut p => {
                    // The health check's name is a digest: show that there is one.
                    if p["healthCheck"].is_string() {
                        p["healthCheck"] = "…/healthChecks/cairn-…".into();
                    }
                    p.to_string()
                }
            };
            format!("{head} {data}")
        })
        .collect()
}

const RECORDS: &str = r#"[[zone]]
name = "g.example.com"
cloud = "gcp"

[[service]]
name = "api"
  [[service.deployment]]
  cloud = "gcp"
  region = "europe-west1"
  min = 1
  max = 4
  desired = 2
  endpoint = "198.51.100.7"
  [[service.deployment]]
  cloud = "gcp"
  region = "us-east1"
  min = 1
  max = 4
  endpoint = "192.0.2.10"

[[record]]
zone = "g.example.com"
name = "www"
type = "A"
ttl = 60
values = ["192.0.2.10", "192.0.2.11"]

[[record]]
zone = "g.example.com"
name = "docs"
type = "CNAME"
values = ["www.g.example.com"]

[[record]]
zone = "g.example.com"
name = "@"
type = "TXT"
values = ["v=spf1 -all"]

[[record]]
zone = "g.example.com"
name = "api"
type = "A"
ttl = 30
routing = { policy = "failover", primary = "api@gcp/europe-west1", secondary = "api@gcp/us-east1" }
health_check = { protocol = "https", path = "/healthz", interval = "10s", failures = 2 }

[[record]]
zone = "g.example.com"
name = "split"
type = "A"
routing = { policy = "weighted", members = [{ target = "api@gcp/europe-west1", weight = 70 }, { target = "api@gcp/us-east1", weight = 30 }] }
health_check = { protocol = "tcp", port = 443 }

[[record]]
zone = "g.example.com"
name = "near"
type = "A"
routing = { policy = "geolocation", members = [{ id = "eu", values = ["198.51.100.7"], location = "europe-west1" }, { id = "us", values = ["192.0.2.10"], location = "us-east1" }] }
"#;

fn groups(fake: &GoogleFake) {
    fake.add_group("europe-west1", "api", 1);
    fake.add_group("us-east1", "api", 1);
}

#[test]
fn records_groups_and_routing_policies_round_trip_through_cloud_dns() {
    let fake = fake(Faults::default());
    groups(&fake);
    let w = Work::new();
    w.write("s/stack.toml", &stack_with(&fake, RECORDS));
    let r = run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    assert!(r.stdout.contains("Apply complete! 9 added"), "{}", r.stdout);
    // Refreshed, every record, routing policy and health check reads back as declared.
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    insta::assert_snapshot!(listing(&fake, "g.example.com.").join("\n"));
    assert_eq!(
        fake.zone_labels("g.example.com."),
        [("cairn_owner".to_string(), lineage(&w))]
    );
    // The groups were resized to their declared (or minimum) size.
    assert_eq!(fake.group_size("europe-west1", "api"), Some(2));
    assert_eq!(fake.group_size("us-east1", "api"), Some(1));
    assert_eq!(fake.health_checks().len(), 2);

    // A change to the stack: the plan shows it, the apply makes one atomic change of it.
    let edited = RECORDS
        .replace("ttl = 60", "ttl = 120")
        .replace("weight = 70", "weight = 50");
    w.write("s/stack.toml", &stack_with(&fake, &edited));
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 2);
    insta::assert_snapshot!("cloud_dns_plan", r.stdout);
    let before = fake.changes("g.example.com.").len();
    run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    let changes = fake.changes("g.example.com.");
    assert_eq!(changes.len(), before + 1, "one change for both records");
    let last = &changes[before];
    assert_eq!(last["deletions"].as_array().unwrap().len(), 2);
    assert_eq!(last["additions"].as_array().unwrap().len(), 2);
    run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);

    // Destroyed: records, health checks and the zone go; the groups stay (adopted, not made).
    run(&w, &fake, &["destroy", "s", "--auto-approve"], 0);
    assert!(fake.rrsets("g.example.com.").is_empty(), "the zone is gone");
    assert!(fake.health_checks().is_empty());
    assert_eq!(fake.group_size("europe-west1", "api"), Some(2));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// The stack's state lineage: the owner label cairn writes.
fn lineage(w: &Work) -> String {
    let text = std::fs::read_to_string(w.path("s/.cairn/state/test/state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["value"]["lineage"].as_str().unwrap().to_string()
}

#[test]
fn an_apply_converges_through_throttling_server_errors_and_resets_without_duplicates() {
    let fake = fake(Faults {
        throttle: 0.1,
        retry_after_secs: 1,
        server_error: 0.1,
        reset: 0.1,
    });
    groups(&fake);
    let w = Work::new();
    w.write("s/stack.toml", &stack_with(&fake, RECORDS));
    // A change that failed leaves the next run to finish the job.
    let mut runs = 0;
    while crate::Run::from(
        cmd(&w, &fake, &["apply", "s", "--auto-approve"])
            .output()
            .unwrap(),
    )
    .code
        != 0
    {
        runs += 1;
        assert!(runs < 4, "no convergence after {runs} runs");
    }
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    // Each record set was added by exactly one change: nothing was applied twice.
    let mut added: BTreeMap<String, usize> = BTreeMap::new();
    for c in fake.changes("g.example.com.") {
        for a in c["additions"].as_array().unwrap() {
            *added
                .entry(format!(
                    "{} {}",
                    a["type"].as_str().unwrap(),
                    a["name"].as_str().unwrap()
                ))
                .or_default() += 1;
        }
    }
    assert_eq!(added.len(), 6, "{added:?}");
    assert!(added.values().all(|n| *n == 1), "{added:?}");
    let c = fake.counts();
    let hits = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
    assert!(hits(&c.throttled) + hits(&c.server_errors) + hits(&c.resets) > 0);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn an_existing_zone_is_adopted_and_a_record_cairn_does_not_own_must_be_imported() {
    let fake = fake(Faults::default());
    fake.add_zone("legacy.example.com.", &[("team", "web")]);
    fake.put_rrset(
        "legacy.example.com.",
        serde_json::json!({ "name": "old.legacy.example.com.", "type": "A", "ttl": 300,
                            "rrdatas": ["192.0.2.77"] }),
    );
    let w = Work::new();
    let zone = "[[zone]]\nname = \"legacy.example.com\"\ncloud = \"gcp\"\n";
    w.write("s/stack.toml", &stack_with(&fake, zone));
    let r = run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    assert!(r.stdout.contains("1 added"), "{}", r.stdout);
    // Adopted: cairn's label beside the zone's own.
    let labels = fake.zone_labels("legacy.example.com.");
    assert_eq!(labels[0], ("cairn_owner".to_string(), lineage(&w)));
    assert_eq!(labels[1], ("team".to_string(), "web".to_string()));

    let body = format!(
        "{zone}\n[[record]]\nzone = \"legacy.example.com\"\nname = \"old\"\ntype = \"A\"\nvalues = [\"192.0.2.77\"]\n"
    );
    w.write("s/stack.toml", &stack_with(&fake, &body));
    let r = run(&w, &fake, &["plan", "s"], 1);
    insta::assert_snapshot!("cloud_dns_not_owned", r.stderr);
    run(
        &w,
        &fake,
        &[
            "import",
            "record.legacy.example.com/old/A",
            "legacy-example-com/old/A",
            "-C",
            "s",
        ],
        0,
    );
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn a_credential_google_refuses_is_a_clear_error() {
    let fake = fake(Faults::default());
    let w = Work::new();
    w.write(
        "s/stack.toml",
        &stack_with(
            &fake,
            "[[zone]]\nname = \"g.example.com\"\ncloud = \"gcp\"\n",
        ),
    );
    let key = w.path("stranger.json");
    std::fs::write(&key, fake.unknown_service_account_json()).unwrap();
    let r = crate::Run::from(
        w.cmd(&["plan", "s"])
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let stderr = r.stderr.replace(&key.display().to_string(), "KEY");
    insta::assert_snapshot!("cloud_dns_bad_credential", stderr);
    // Nothing but token requests reached the fake.
    assert_eq!(fake.counts().requests.load(Ordering::Relaxed), 0);
    assert!(fake.counts().tokens.load(Ordering::Relaxed) > 0);
}

#[test]
fn routing_cloud_dns_cannot_serve_is_refused_before_anything_is_written() {
    let fake = fake(Faults::default());
    let w = Work::new();
    let body = r#"[[zone]]
name = "g.example.com"
cloud = "gcp"

[[record]]
zone = "g.example.com"
name = "near"
type = "A"
routing = { policy = "latency", members = [{ id = "a", values = ["192.0.2.1"], location = "europe-west1" }] }
"#;
    w.write("s/stack.toml", &stack_with(&fake, body));
    let r = run(&w, &fake, &["plan", "s"], 1);
    insta::assert_snapshot!("cloud_dns_refused", r.stderr);
    assert!(!w.path("s/.cairn").exists(), "nothing written");
    assert_eq!(fake.counts().requests.load(Ordering::Relaxed), 0);
}
