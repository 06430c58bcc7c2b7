//! Plan and apply on the sandbox: convergence, drift, saved plans, filters, partial failure,
//! import, state rm, destroy.

use crate::Work;

#[test]
fn apply_then_plan_has_no_changes_and_drift_is_shown_exactly_then_corrected() {
    let w = Work::quickstart();
    let r = w.ok(&["apply", "shop", "--auto-approve"], 0);
    assert!(
        r.stdout
            .ends_with("Apply complete! 10 added, 0 changed, 0 replaced, 0 destroyed.\n"),
        "{}",
        r.stdout
    );
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
    assert_eq!(
        r.stdout,
        "No changes. Live resources match the configuration (10 unchanged).\n"
    );

    w.ok(
        &[
            "sandbox",
            "set-record",
            "shop.example.com",
            "api",
            "A",
            "--ttl",
            "120",
            "-C",
            "shop",
        ],
        0,
    );
    w.ok(
        &[
            "sandbox",
            "resize",
            "api@gcp/europe-west1",
            "--desired",
            "7",
            "-C",
            "shop",
        ],
        0,
    );
    w.ok(
        &[
            "sandbox",
            "delete",
            "record.shop.example.com/www/A",
            "-C",
            "shop",
        ],
        0,
    );
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 2);
    insta::assert_snapshot!("drift_plan", r.stdout);

    let r = w.ok(&["apply", "shop", "--auto-approve"], 0);
    insta::assert_snapshot!("drift_apply", progress_sorted(&r.stdout));
    w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
}

#[test]
fn plan_json_is_versioned() {
    let w = Work::quickstart();
    let v = w.json(&["plan", "shop"]);
    assert_eq!(v["format_version"], "1");
    assert_eq!(v["summary"]["create"], 10);
    assert_eq!(v["changes"][0]["action"], "create");
    assert!(v["lineage"].as_str().unwrap().len() >= 32);
}

#[test]
fn saved_plan_applies_only_if_nothing_moved() {
    let w = Work::quickstart();
    w.ok(&["plan", "shop", "--out", "p1.json"], 0);
    w.ok(&["plan", "shop", "--out", "p2.json"], 0);
    w.ok(&["apply", "p1.json"], 0);
    // p2 was made before p1 was applied: the state moved.
    let r = w.ok(&["apply", "p2.json"], 1);
    // The serial counts journal writes, which depends on how batches interleave.
    let at = r.stderr.find("(serial ").expect("names the serials");
    let end = at + r.stderr[at..].find(')').unwrap() + 1;
    let stderr = format!(
        "{}(serial N then, M now){}",
        &r.stderr[..at],
        &r.stderr[end..]
    );
    insta::assert_snapshot!("stale_state", stderr);

    w.ok(&["plan", "shop", "--out", "p3.json"], 0);
    w.ok(
        &[
            "sandbox",
            "resize",
            "web@gcp/us-central1",
            "--desired",
            "3",
            "-C",
            "shop",
        ],
        0,
    );
    let r = w.ok(&["apply", "p3.json"], 1);
    insta::assert_snapshot!("stale_live", r.stderr);

    // A fresh plan of the drift applies.
    w.ok(&["plan", "shop", "--out", "p4.json"], 0);
    let r = w.ok(&["apply", "p4.json"], 0);
    assert!(
        r.stdout.contains("group.web@gcp/us-central1: updated"),
        "{}",
        r.stdout
    );
    w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
}

/// Apply output with its per-change progress lines sorted: independent batches complete in
/// any order.
fn progress_sorted(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Plan: "))
        .expect("plan summary")
        + 1;
    let end = lines
        .iter()
        .position(|l| l.starts_with("Apply complete!"))
        .expect("apply summary");
    let mut progress = lines[start..end].to_vec();
    progress.sort();
    [&lines[..start], &progress, &lines[end..]]
        .concat()
        .join("\n")
}

fn addresses(v: &serde_json::Value) -> Vec<String> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn target_takes_dependencies_and_exclude_takes_dependents() {
    let w = Work::quickstart();
    let v = w.json(&["plan", "shop", "--target", "record.shop.example.com/www/A"]);
    assert_eq!(
        addresses(&v),
        vec![
            "zone.shop.example.com",
            "record.shop.example.com/www/A",
            "group.web@gcp/us-central1"
        ]
    );

    let v = w.json(&["plan", "shop", "--exclude", "group.api@aws/eu-west-1"]);
    let a = addresses(&v);
    assert!(!a.contains(&"group.api@aws/eu-west-1".to_string()));
    assert!(
        !a.contains(&"record.shop.example.com/api/A".to_string()),
        "the failover record depends on it"
    );
    assert_eq!(a.len(), 8);

    let v = w.json(&["plan", "shop", "--target", "group.*"]);
    assert_eq!(addresses(&v).len(), 5);

    // Applying a target applies only that; the rest follows later.
    w.ok(
        &[
            "apply",
            "shop",
            "--auto-approve",
            "--target",
            "group.checkout@aws/eu-west-1",
        ],
        0,
    );
    let v = w.json(&["plan", "shop"]);
    assert_eq!(v["summary"]["create"], 9);
    assert_eq!(v["summary"]["unchanged"], 1);
}

#[test]
fn a_failure_skips_dependents_keeps_independent_branches_and_reports_all() {
    let w = Work::quickstart();
    let r = crate::Run::from(
        w.cmd(&["apply", "shop", "--auto-approve"])
            .env("CAIRN_SANDBOX_FAIL", "group.api@gcp")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    let tail = &r.stdout[r
        .stdout
        .find("Apply finished with errors")
        .expect("failure summary")..];
    insta::assert_snapshot!("partial_failure", tail);
    // What completed is in state; the next apply does only the rest.
    let v = w.json(&["plan", "shop"]);
    assert_eq!(
        addresses(&v),
        vec![
            "record.shop.example.com/api/A",
            "group.api@gcp/europe-west1"
        ]
    );
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
}

#[test]
fn replace_update_and_delete_from_config_changes() {
    let w = Work::quickstart();
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    let topo = std::fs::read_to_string(w.path("shop/topology.toml")).unwrap();
    w.write(
        "shop/topology.toml",
        &topo
            .replace("\"c5.large\"", "\"c5.xlarge\"")
            .replace("max = 20", "max = 30"),
    );
    let routing = std::fs::read_to_string(w.path("shop/routing.toml")).unwrap();
    let cut = routing
        .find("[[record]]\nzone = \"${var.domain}\"\nname = \"@\"")
        .unwrap();
    w.write("shop/routing.toml", &routing[..cut]);
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 2);
    insta::assert_snapshot!("config_changes_plan", r.stdout);
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
}

#[test]
fn unmanaged_resources_are_refused_until_imported_and_state_rm_releases_them() {
    let w = Work::quickstart();
    w.ok(
        &[
            "apply",
            "shop",
            "--auto-approve",
            "--target",
            "zone.shop.example.com",
        ],
        0,
    );
    // Someone created a record by hand that the stack also declares.
    w.ok(
        &[
            "sandbox",
            "set-record",
            "shop.example.com",
            "www",
            "A",
            "--value",
            "198.51.100.40",
            "--ttl",
            "300",
            "-C",
            "shop",
        ],
        0,
    );
    let r = w.ok(&["plan", "shop"], 1);
    insta::assert_snapshot!("not_owned", r.stderr);

    let r = w.ok(
        &[
            "import",
            "record.shop.example.com/www/A",
            "aws/record.shop.example.com/www/A",
            "-C",
            "shop",
        ],
        0,
    );
    assert_eq!(
        r.stdout,
        "Imported record.shop.example.com/www/A (id aws/record.shop.example.com/www/A).\n"
    );
    let v = w.json(&["plan", "shop"]);
    assert!(
        !addresses(&v).contains(&"record.shop.example.com/www/A".to_string()),
        "imported and equal: no change"
    );
    w.ok(&["apply", "shop", "--auto-approve"], 0);

    let r = w.ok(
        &["state", "rm", "record.shop.example.com/www/A", "-C", "shop"],
        0,
    );
    assert_eq!(
        r.stdout,
        "Removed record.shop.example.com/www/A from state; the live resource was left in place.\n"
    );
    let list = w.ok(&["state", "list", "shop"], 0).stdout;
    assert!(!list.contains("www"), "{list}");
    // Released: it is unmanaged again, so the plan refuses rather than deleting or duplicating it.
    let r = w.ok(&["plan", "shop"], 1);
    assert!(r.stderr.contains("record.shop.example.com/www/A already exists in sandbox.aws and is not managed by this stack"), "{}", r.stderr);
}

#[test]
fn destroy_removes_everything_the_stack_owns_and_nothing_else() {
    let w = Work::quickstart();
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    w.ok(
        &[
            "sandbox",
            "set-record",
            "shop.example.com",
            "manual",
            "TXT",
            "--value",
            "hello",
            "-C",
            "shop",
        ],
        0,
    );
    let r = w.ok(&["destroy", "shop", "--auto-approve"], 1);
    // The zone cannot go while a record cairn does not own is still in it; everything else does.
    assert!(r.stdout.contains("HostedZoneNotEmpty"), "{}", r.stdout);
    let list = w.json(&["sandbox", "list", "-C", "shop"]);
    let ids: Vec<&String> = list["objects"].as_object().unwrap().keys().collect();
    assert_eq!(
        ids,
        vec![
            "aws/record.shop.example.com/manual/TXT",
            "aws/zone.shop.example.com"
        ]
    );
    w.ok(
        &[
            "sandbox",
            "delete",
            "record.shop.example.com/manual/TXT",
            "-C",
            "shop",
        ],
        0,
    );
    w.ok(&["destroy", "shop", "--auto-approve"], 0);
    assert_eq!(
        w.json(&["sandbox", "list", "-C", "shop"])["objects"],
        serde_json::json!({})
    );
    assert_eq!(w.ok(&["state", "list", "shop"], 0).stdout, "");
}

#[test]
fn apply_without_approval_on_a_pipe_changes_nothing() {
    let w = Work::quickstart();
    let r = w.run(&["apply", "shop"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("pass --auto-approve"), "{}", r.stderr);
    assert_eq!(
        w.json(&["sandbox", "list", "-C", "shop"])["objects"],
        serde_json::json!({})
    );
}

#[test]
fn graph_prints_dot() {
    let w = Work::quickstart();
    let r = w.ok(&["graph", "shop"], 0);
    insta::assert_snapshot!("graph", r.stdout);
}

#[test]
fn exit_codes_usage_help_and_completions() {
    let w = Work::new();
    let r = w.ok(&["plan", "--bogus"], 1);
    assert!(
        r.stderr.contains("unexpected argument '--bogus'"),
        "{}",
        r.stderr
    );
    w.ok(&[], 1);
    let help = w.ok(&["--help"], 0);
    assert!(
        help.stdout
            .contains("Exit codes: 0 success · 1 error · 2 changes pending"),
        "{}",
        help.stdout
    );
    let bash = w.ok(&["completions", "bash"], 0);
    assert!(bash.stdout.contains("_cairn()"), "bash completion function");
}

#[test]
fn environments_have_their_own_state_and_sandbox() {
    let w = Work::quickstart();
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    w.ok(&["apply", "shop", "--auto-approve", "--env", "staging"], 0);
    w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
    w.ok(
        &["plan", "shop", "--detailed-exitcode", "--env", "staging"],
        0,
    );
    let staging = w.json(&["sandbox", "list", "-C", "shop", "--env", "staging"]);
    assert!(
        staging["objects"]
            .as_object()
            .unwrap()
            .contains_key("aws/zone.staging.shop.example.com")
    );
    let prod = w.json(&["sandbox", "list", "-C", "shop"]);
    assert!(
        !prod["objects"]
            .as_object()
            .unwrap()
            .contains_key("aws/zone.staging.shop.example.com")
    );
}

#[test]
fn import_refuses_a_resource_another_stack_manages() {
    let w = Work::quickstart();
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    // A second stack (another lineage) on the same sandbox, declaring the same record.
    std::fs::create_dir_all(w.path("other")).unwrap();
    w.write(
        "other/stack.toml",
        "[stack]\nname = \"other\"\nenvironment = \"production\"\n\n[provider.sandbox]\npath = \"../shop/.cairn/sandbox/production\"\n\n[[zone]]\nname = \"shop.example.com\"\ncloud = \"aws\"\n",
    );
    let r = w.ok(
        &[
            "import",
            "zone.shop.example.com",
            "aws/zone.shop.example.com",
            "-C",
            "other",
        ],
        1,
    );
    assert!(
        r.stderr
            .contains("zone.shop.example.com is managed by another stack or environment"),
        "{}",
        r.stderr
    );
    w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
}

#[test]
fn provider_blocks_are_checked_against_what_uses_them() {
    let w = Work::new();
    let body = "[[zone]]\nname = \"example.com\"\ncloud = \"gcp\"\n";
    // An AWS provider block that no resource uses: fine, everything runs on the sandbox.
    w.write(
        "s/stack.toml",
        &format!("[stack]\nname = \"p\"\n\n[provider.aws]\nregion = \"eu-west-1\"\n\n{body}"),
    );
    let r = w.ok(&["plan", "s"], 0);
    assert!(r.stdout.contains("Plan: 1 to add"), "{}", r.stdout);
    // A GCP provider block while a record on GCP needs routing Cloud DNS lacks: refused before
    // anything is locked or written (or any request is made).
    std::fs::remove_dir_all(w.path("s/.cairn")).unwrap();
    let record = "[[record]]\nzone = \"example.com\"\nname = \"many\"\ntype = \"A\"\nrouting = { policy = \"multivalue\", members = [{ id = \"a\", values = [\"192.0.2.1\"] }] }\n";
    w.write(
        "s/stack.toml",
        &format!("[stack]\nname = \"p\"\n\n[provider.gcp]\nproject = \"demo-project\"\nendpoint = \"http://127.0.0.1:9\"\n\n{body}\n{record}"),
    );
    let r = w.ok(&["plan", "s"], 1);
    assert!(
        r.stderr
            .contains("Cloud DNS has no latency or multivalue routing"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("record.example.com/many/A needs it"),
        "{}",
        r.stderr
    );
    assert!(!w.path("s/.cairn").exists(), "nothing written");
}

#[test]
fn json_apply_needs_auto_approve() {
    let w = Work::quickstart();
    let r = w.ok(&["apply", "shop", "--json"], 1);
    assert!(
        r.stderr.contains("--json needs --auto-approve"),
        "{}",
        r.stderr
    );
    let v = w.json(&["apply", "shop", "--auto-approve"]);
    assert_eq!(v["outcome"]["applied"].as_array().unwrap().len(), 10);
    let v = w.json(&["apply", "shop", "--auto-approve"]);
    assert_eq!(v["plan"]["unchanged"], 10);
}
