//! The Azure provider end to end: the real `cairn` binary against the Azure fake
//! (`cairn::testing::azure_dns`, with scale sets from `azure_compute`), which checks every
//! request against the official contracts (tests/fixtures/contracts/azure-dns-2018-05-01.json,
//! azure-compute-2024-07-01/) and serves HTTPS with a throwaway CA.
//! Credentials are the real service-principal flow: azure_identity asks the fake's Entra ID
//! token endpoint (AZURE_AUTHORITY_HOST) for a token.

use std::process::Command;
use std::sync::atomic::Ordering;

use cairn::testing::azure_compute::ScaleSet;
use cairn::testing::azure_dns::{AzureDnsFake, Faults, Options};
use cairn::testing::contract::Contract;

use crate::Work;

pub fn fake(faults: Faults) -> AzureDnsFake {
    AzureDnsFake::start(
        Contract::azure_dns(),
        Options {
            faults,
            ..Options::default()
        },
    )
}

/// The environment that makes `cairn` trust the fake's CA and log in as a service principal
/// whose secret the fake accepts.
pub fn env(w: &Work, fake: &AzureDnsFake) -> Vec<(String, String)> {
    let ca = w.path("azure-ca.pem");
    std::fs::write(&ca, &fake.ca_pem).unwrap();
    [
        ("SSL_CERT_FILE", ca.display().to_string()),
        ("AZURE_AUTHORITY_HOST", fake.url.clone()),
        (
            "AZURE_TENANT_ID",
            "00000000-0000-0000-0000-0000000000aa".into(),
        ),
        ("AZURE_CLIENT_ID", "cairn-test".into()),
        ("AZURE_CLIENT_SECRET", Options::default().token),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn cmd(w: &Work, fake: &AzureDnsFake, args: &[&str]) -> Command {
    let mut c = w.cmd(args);
    c.envs(env(w, fake));
    c
}

/// A stack on the fake: `[provider.azure]` and `body`.
pub fn stack_with(fake: &AzureDnsFake, body: &str) -> String {
    let o = Options::default();
    format!(
        "[stack]\nname = \"az\"\nenvironment = \"test\"\n\n[provider.azure]\nsubscription_id = \"{}\"\nresource_group = \"{}\"\nendpoint = \"{}\"\n\n{body}",
        o.subscription, o.resource_group, fake.url
    )
}

fn run(w: &Work, fake: &AzureDnsFake, args: &[&str], code: i32) -> crate::Run {
    let r = crate::Run::from(cmd(w, fake, args).output().expect("run cairn"));
    assert_eq!(
        r.code, code,
        "cairn {args:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

fn stack(fake: &AzureDnsFake) -> String {
    stack_with(
        fake,
        r#"[[zone]]
name = "az.example.com"
cloud = "azure"

[[record]]
zone = "az.example.com"
name = "www"
type = "A"
ttl = 60
values = ["192.0.2.10", "192.0.2.11"]

[[record]]
zone = "az.example.com"
name = "docs"
type = "CNAME"
ttl = 300
values = ["www.az.example.com"]

[[record]]
zone = "az.example.com"
name = "@"
type = "TXT"
ttl = 300
values = ["v=spf1 -all"]
"#,
    )
}

#[test]
fn records_are_applied_to_azure_dns_and_a_second_plan_has_nothing_to_do() {
    let fake = fake(Faults::default());
    let w = Work::new();
    w.write("s/stack.toml", &stack(&fake));
    let r = run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    assert!(r.stdout.contains("Apply complete! 4 added"), "{}", r.stdout);
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);

    let records: Vec<String> = fake
        .records("az.example.com")
        .into_iter()
        .filter(|(t, _, _)| t != "SOA")
        .map(|(t, n, p)| format!("{t} {n} {}", serde_json::json!({ "TTL": p["TTL"], "A": p["ARecords"], "CNAME": p["CNAMERecord"], "TXT": p["TXTRecords"] })))
        .collect();
    insta::assert_snapshot!(records.join("\n"));
    assert_eq!(
        fake.zone_tags("az.example.com").keys().collect::<Vec<_>>(),
        ["cairn_owner"]
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn an_apply_converges_through_throttling_server_errors_and_resets() {
    let fake = fake(Faults {
        throttle: 0.1,
        retry_after_secs: 1,
        server_error: 0.1,
        reset: 0.05,
        stale_etag: 0.1,
    });
    let w = Work::new();
    w.write("s/stack.toml", &stack(&fake));
    // A failed change leaves the next run to finish the job; two runs at most.
    if run_code(&w, &fake, &["apply", "s", "--auto-approve"]) != 0 {
        run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    }
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    let names: Vec<String> = fake
        .records("az.example.com")
        .into_iter()
        .map(|(t, n, _)| format!("{t} {n}"))
        .collect();
    assert_eq!(names, ["A www", "CNAME docs", "NS @", "SOA @", "TXT @"]);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

fn run_code(w: &Work, fake: &AzureDnsFake, args: &[&str]) -> i32 {
    crate::Run::from(cmd(w, fake, args).output().expect("run cairn")).code
}

/// A service with one deployment on Azure, in westeurope.
fn scale_set_stack(fake: &AzureDnsFake, deployment: &str) -> String {
    stack_with(
        fake,
        &format!(
            "[[service]]\nname = \"api\"\n  [[service.deployment]]\n  cloud = \"azure\"\n  region = \"westeurope\"\n{deployment}"
        ),
    )
}

#[test]
fn a_scale_set_is_adopted_resized_and_kept_at_its_capacity() {
    let fake = fake(Faults::default());
    let mut existing = ScaleSet::new("api", "westeurope", 2);
    existing.tags.insert("team".into(), "web".into());
    fake.add_scale_set(existing);
    let w = Work::new();
    w.write(
        "s/stack.toml",
        &scale_set_stack(&fake, "  min = 2\n  max = 8\n  desired = 4\n"),
    );
    let r = run(&w, &fake, &["plan", "s", "--no-color"], 0);
    insta::assert_snapshot!("scale_set_adoption_plan", r.stdout);
    let r = run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    assert!(r.stdout.contains("Apply complete! 1 added"), "{}", r.stdout);
    let set = fake.scale_set("api").unwrap();
    assert_eq!(set.capacity, 4);
    assert_eq!(
        set.tags.keys().collect::<Vec<_>>(),
        [
            "cairn_address",
            "cairn_max",
            "cairn_min",
            "cairn_owner",
            "team"
        ]
    );
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);

    // Someone scales it in the portal: the plan sees it, the apply puts it back.
    fake.set_capacity("api", 7);
    let r = run(
        &w,
        &fake,
        &["plan", "s", "--no-color", "--detailed-exitcode"],
        2,
    );
    insta::assert_snapshot!("scale_set_drift_plan", r.stdout);
    run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    assert_eq!(fake.scale_set("api").unwrap().capacity, 4);

    // A declared resize.
    w.write(
        "s/stack.toml",
        &scale_set_stack(&fake, "  min = 2\n  max = 8\n  desired = 6\n"),
    );
    run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    assert_eq!(fake.capacity_history("api"), [4, 4, 6]);
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert!(fake.counts().operation_polls.load(Ordering::Relaxed) >= 3);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn a_scale_set_of_another_stack_or_none_at_all_is_refused_with_what_to_do() {
    let fake = fake(Faults::default());
    let mut theirs = ScaleSet::new("api", "westeurope", 3);
    theirs.tags.insert(
        "cairn_owner".into(),
        "5f0c7e4e-0000-4000-8000-000000000001".into(),
    );
    fake.add_scale_set(theirs);
    let w = Work::new();
    w.write(
        "s/stack.toml",
        &scale_set_stack(&fake, "  min = 1\n  max = 4\n"),
    );
    let r = run(&w, &fake, &["plan", "s", "--no-color"], 1);
    insta::assert_snapshot!("scale_set_of_another_stack", r.stderr);

    // No scale set of that name: the plan would create it, the apply says why it cannot.
    w.write(
        "s/stack.toml",
        &scale_set_stack(&fake, "  min = 1\n  max = 4\n  group = \"web\"\n"),
    );
    let r = run(
        &w,
        &fake,
        &["apply", "s", "--auto-approve", "--no-color"],
        1,
    );
    assert!(
        r.stdout.contains(
            "  ✗ group.api@azure/westeurope: no scale set `web` in the resource group: cairn adopts existing scale sets; create it (image, VM size, network) first, or set `group` on the deployment to the name of one\n"
        ),
        "{}",
        r.stdout
    );
    assert_eq!(fake.counts().scale_set_updates.load(Ordering::Relaxed), 0);
    assert_eq!(fake.scale_set("api").unwrap().capacity, 3);

    // Once the other stack lets it go, `cairn import` with the ID the plan printed adopts it.
    fake.add_scale_set(ScaleSet::new("api", "westeurope", 3));
    w.write(
        "s/stack.toml",
        &scale_set_stack(&fake, "  min = 1\n  max = 4\n"),
    );
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/api",
        Options::default().subscription,
        Options::default().resource_group
    );
    run(
        &w,
        &fake,
        &["import", "group.api@azure/westeurope", &id, "-C", "s"],
        0,
    );
    assert!(
        fake.scale_set("api")
            .unwrap()
            .tags
            .contains_key("cairn_owner")
    );
    run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    assert_eq!(fake.scale_set("api").unwrap().capacity, 1);
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn two_deployments_cannot_share_a_scale_set() {
    let fake = fake(Faults::default());
    let w = Work::new();
    w.write(
        "s/stack.toml",
        &scale_set_stack(
            &fake,
            "  min = 1\n  max = 4\n  [[service.deployment]]\n  cloud = \"azure\"\n  region = \"northeurope\"\n  min = 1\n  max = 4\n",
        ),
    );
    let r = run(&w, &fake, &["plan", "s", "--no-color"], 1);
    insta::assert_snapshot!(r.stderr);
    assert!(!w.path("s/.cairn").exists(), "nothing written");
    assert_eq!(fake.counts().requests.load(Ordering::Relaxed), 0);
}

#[test]
fn a_resize_converges_through_faults_without_changing_the_scale_set_twice() {
    let fake = fake(Faults {
        throttle: 0.15,
        retry_after_secs: 0,
        server_error: 0.15,
        reset: 0.1,
        stale_etag: 0.2,
    });
    for n in ["api", "web", "jobs"] {
        fake.add_scale_set(ScaleSet::new(n, "westeurope", 1));
    }
    let w = Work::new();
    let mut body = String::new();
    for n in ["api", "web", "jobs"] {
        body.push_str(&format!(
            "[[service]]\nname = \"{n}\"\n  [[service.deployment]]\n  cloud = \"azure\"\n  region = \"westeurope\"\n  min = 1\n  max = 9\n  desired = 5\n\n"
        ));
    }
    w.write("s/stack.toml", &stack_with(&fake, &body));
    // A change that meets five failed writes in a row fails and is left to the next run:
    // three runs at most.
    for _ in 0..3 {
        if run_code(&w, &fake, &["apply", "s", "--auto-approve"]) == 0 {
            break;
        }
    }
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    for n in ["api", "web", "jobs"] {
        assert_eq!(fake.capacity_history(n), [5], "{n} was resized once");
    }
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn an_update_slower_than_operation_timeout_fails_and_the_next_run_finds_it_done() {
    let fake = AzureDnsFake::start(
        Contract::azure_dns(),
        Options {
            operation_time: std::time::Duration::from_millis(1500),
            ..Options::default()
        },
    );
    fake.add_scale_set(ScaleSet::new("api", "westeurope", 1));
    let w = Work::new();
    let stack = scale_set_stack(&fake, "  min = 1\n  max = 4\n  desired = 3\n").replace(
        "[provider.azure]\n",
        "[provider.azure]\noperation_timeout = \"1s\"\n",
    );
    w.write("s/stack.toml", &stack);
    let started = std::time::Instant::now();
    let r = run(&w, &fake, &["apply", "s", "--auto-approve"], 1);
    assert!(
        r.stdout.contains(
            "  ✗ group.api@azure/westeurope: the update was still running after 1s (operation_timeout); the next run reads the scale set again\n"
        ),
        "{}",
        r.stdout
    );
    std::thread::sleep(std::time::Duration::from_millis(1600).saturating_sub(started.elapsed()));
    // The scale set is as declared and tagged as this stack's: only the state learns of it.
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 2);
    assert!(
        r.stdout.contains("# group.api@azure/westeurope exists (created by an interrupted apply): it will be recorded in state"),
        "{}",
        r.stdout
    );
    run(&w, &fake, &["apply", "s", "--auto-approve"], 0);
    let r = run(&w, &fake, &["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert_eq!(fake.capacity_history("api"), [3]);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
