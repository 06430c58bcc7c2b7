//! The Azure provider end to end: the real `cairn` binary against the Azure DNS fake
//! (`cairn::testing::azure_dns`), which checks every request against the official contract
//! (tests/fixtures/contracts/azure-dns-2018-05-01.json) and serves HTTPS with a throwaway CA.
//! Credentials are the real service-principal flow: azure_identity asks the fake's Entra ID
//! token endpoint (AZURE_AUTHORITY_HOST) for a token.

use std::process::Command;

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

#[test]
fn a_deployment_on_azure_is_refused_until_scale_sets_are_supported() {
    let fake = fake(Faults::default());
    let w = Work::new();
    let body = "[[service]]\nname = \"api\"\n  [[service.deployment]]\n  cloud = \"azure\"\n  region = \"westeurope\"\n  min = 1\n  max = 2\n";
    w.write("s/stack.toml", &stack_with(&fake, body));
    let r = run(&w, &fake, &["plan", "s"], 1);
    insta::assert_snapshot!(r.stderr);
    assert!(!w.path("s/.cairn").exists(), "nothing written");
    assert_eq!(
        fake.counts()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
