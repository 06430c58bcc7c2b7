//! `cairn review` on a git repository the test makes: only new findings, policy weakening
//! called out, and every output format (SARIF validated against the official schema).

use std::path::Path;
use std::process::Command;

use crate::Work;

const STACK: &str = r#"[stack]
name = "shop"
environment = "production"

[compliance]
frameworks = ["soc2"]
allowed_regions.personal = ["eu-west-1"]
change_approvers = ["lead@example.com"]

[[zone]]
name = "shop.example.com"
cloud = "aws"
"#;

const SERVICES: &str = r#"[[service]]
name = "api"
protocol = "https"
tls_min_version = "1.2"

  [[service.deployment]]
  cloud = "aws"
  region = "eu-west-1"
  min = 2
  max = 4
  endpoint = "192.0.2.10"

# Already failing at the base: a review of another change does not report it.
[[service]]
name = "legacy"
protocol = "http"
"#;

const RULES: &str = r#"[[rule]]
id = "ACME-ZONE-AWS"
title = "Zones are hosted on AWS"
severity = "high"
enforcement = "hard"
controls = ["ACME 7"]
applies_to = "zone"
require = "zone.cloud == 'aws'"
fix = "move the zone to AWS"
"#;

fn git(w: &Work, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(w.dir.path())
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Commits everything in the work directory.
fn commit(w: &Work, message: &str) {
    git(w, &["add", "-A"]);
    git(w, &["commit", "-q", "-m", message]);
}

/// A repository with the stack at `base` (first commit) and a pull request's change on top.
fn repo() -> Work {
    let w = Work::new();
    git(&w, &["init", "-q", "-b", "main"]);
    w.write("infra/shop/stack.toml", STACK);
    w.write("infra/shop/services.toml", SERVICES);
    w.write("infra/shop/policies/acme.toml", RULES);
    commit(&w, "base");
    git(&w, &["tag", "base"]);

    // The change: TLS 1.0 on api, a weighted record without a health check, the stack's own
    // rule lowered to advisory, a waiver and a region for personal data.
    w.write(
        "infra/shop/services.toml",
        &SERVICES.replace("tls_min_version = \"1.2\"", "tls_min_version = \"1.0\""),
    );
    w.write(
        "infra/shop/records.toml",
        "[[record]]\nzone = \"shop.example.com\"\nname = \"www\"\ntype = \"A\"\nrouting = { policy = \"weighted\", members = [{ id = \"a\", values = [\"192.0.2.1\"], weight = 1 }, { id = \"b\", values = [\"192.0.2.2\"], weight = 1 }] }\n",
    );
    w.write(
        "infra/shop/policies/acme.toml",
        &RULES.replace("enforcement = \"hard\"", "enforcement = \"advisory\""),
    );
    w.write(
        "infra/shop/policies/waivers.toml",
        "[[waiver]]\nrule = \"SOC2-ENDPOINT-HTTPS\"\nresource = \"service.legacy\"\nreason = \"retired in January\"\napprover = \"ciso@example.com\"\nexpires = 2999-01-31\n",
    );
    w.write(
        "infra/shop/stack.toml",
        &STACK.replace("[\"eu-west-1\"]", "[\"eu-west-1\", \"us-east-1\"]"),
    );
    commit(&w, "change");
    w
}

/// Output with commit IDs (which differ per run) replaced.
fn stable(w: &Work, text: &str) -> String {
    let mut out = text.to_string();
    for rev in ["base", "HEAD"] {
        let id = Command::new("git")
            .args(["rev-parse", rev])
            .current_dir(w.dir.path())
            .output()
            .unwrap();
        let id = String::from_utf8(id.stdout).unwrap().trim().to_string();
        out = out
            .replace(&id, &format!("<{rev}>"))
            .replace(&id[..8], &format!("<{rev}>"));
    }
    out
}

fn review(w: &Work, extra: &[&str], code: i32) -> String {
    let mut args = vec!["review", "infra/shop", "--base", "base", "--no-plan"];
    args.extend_from_slice(extra);
    stable(w, &w.ok(&args, code).stdout)
}

#[test]
fn only_new_findings_are_reported_and_weakened_policies_are_called_out() {
    let w = repo();
    insta::assert_snapshot!("review_human", review(&w, &[], 2));

    let all = review(&w, &["--all"], 2);
    assert!(
        all.contains("service.legacy: Service endpoints serve HTTPS (already at the base)"),
        "{all}"
    );

    let j: serde_json::Value = serde_json::from_str(&review(&w, &["--format", "json"], 2)).unwrap();
    let rules: Vec<(&str, bool, bool)> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap(),
                f["new"].as_bool().unwrap(),
                f["blocking"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("SOC2-ROUTED-HEALTH-CHECK", true, true),
            ("SOC2-TLS-MIN-VERSION", true, true),
            ("CAIRN-POLICY-WEAKENED", true, false),
            ("CAIRN-WAIVER-ADDED", true, false),
            ("CAIRN-POLICY-WEAKENED", true, false),
            ("CAIRN-POLICY-WEAKENED", true, false),
        ]
    );
    assert_eq!(j["blocking"], 2);
    // At the base already: legacy's plain HTTP and api's missing scaling policy.
    assert_eq!(j["unchanged_findings"], 2);
    let weakened: Vec<(&str, &str)> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["weakens"] == true)
        .map(|c| {
            (
                c["section"].as_str().unwrap(),
                c["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weakened,
        [
            ("service", "service.api"),
            ("compliance", "stack.shop"),
            ("rule", "ACME-ZONE-AWS"),
            ("waiver", "SOC2-ENDPOINT-HTTPS for service.legacy"),
        ]
    );
}

#[test]
fn sarif_is_valid_against_the_official_schema() {
    let w = repo();
    let text = review(&w, &["--format", "sarif", "--all"], 2);
    let sarif: serde_json::Value = serde_json::from_str(&text).unwrap();
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sarif/sarif-schema-2.1.0.json");
    // The official schema's `language` patterns (run, artifact) have a stray `]`, which the validator's
    // meta-schema check rejects as an invalid ECMA-262 regex. cairn never writes `language`;
    // the pattern is replaced with its evident intent so the rest of the schema can be used.
    let text_schema = std::fs::read_to_string(schema_path).unwrap();
    let bad = r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#;
    assert_eq!(
        text_schema.matches(bad).count(),
        2,
        "the official schema changed"
    );
    let text_schema = text_schema.replace(bad, r#""^[a-zA-Z]{2}(-[a-zA-Z]{2})?$""#);
    let schema: serde_json::Value = serde_json::from_str(&text_schema).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "invalid SARIF: {errors:#?}\n{text}");

    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str, &str, u64)> = results
        .iter()
        .map(|r| {
            let loc = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap(),
                r["level"].as_str().unwrap(),
                r["baselineState"].as_str().unwrap(),
                loc["artifactLocation"]["uri"].as_str().unwrap(),
                loc["region"]["startLine"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "SOC2-ROUTED-HEALTH-CHECK",
                "error",
                "new",
                "infra/shop/records.toml",
                1
            ),
            (
                "SOC2-TLS-MIN-VERSION",
                "error",
                "new",
                "infra/shop/services.toml",
                2
            ),
            (
                "CAIRN-POLICY-WEAKENED",
                "warning",
                "new",
                "infra/shop/policies/acme.toml",
                1
            ),
            (
                "CAIRN-WAIVER-ADDED",
                "warning",
                "new",
                "infra/shop/policies/waivers.toml",
                1
            ),
            (
                "CAIRN-POLICY-WEAKENED",
                "warning",
                "new",
                "infra/shop/services.toml",
                2
            ),
            (
                "CAIRN-POLICY-WEAKENED",
                "warning",
                "new",
                "infra/shop/stack.toml",
                5
            ),
            (
                "SOC2-SCALING-POLICY",
                "note",
                "unchanged",
                "infra/shop/services.toml",
                2
            ),
            (
                "SOC2-ENDPOINT-HTTPS",
                "note",
                "unchanged",
                "infra/shop/services.toml",
                15
            ),
        ]
    );
    // Every result's rule is described, at the index it names.
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
    }
}

#[test]
fn github_annotations_and_markdown_comment() {
    let w = repo();
    insta::assert_snapshot!("review_github", review(&w, &["--format", "github"], 2));
    insta::assert_snapshot!("review_markdown", review(&w, &["--format", "markdown"], 2));
}

#[test]
fn github_annotations_stay_within_the_per_step_cap() {
    let w = repo();
    let zones: String = (0..12)
        .map(|i| format!("[[zone]]\nname = \"z{i}.example.com\"\ncloud = \"gcp\"\n\n"))
        .collect();
    w.write("infra/shop/zones.toml", &zones);
    w.write("infra/shop/policies/acme.toml", RULES);
    commit(&w, "twelve zones");
    let out = review(&w, &["--format", "github"], 2);
    let errors = out.lines().filter(|l| l.starts_with("::error ")).count();
    assert_eq!(errors, 10, "{out}");
    assert!(
        out.contains("4 more annotations left out (GitHub shows 10 per level)"),
        "{out}"
    );
    // Most severe first: the hard-mandatory findings lead.
    assert!(out.lines().next().unwrap().starts_with("::error "), "{out}");
}

#[test]
fn a_clean_change_exits_0_and_errors_exit_1() {
    let w = repo();
    w.write("infra/shop/notes.md", "not a stack file\n");
    commit(&w, "docs");
    let out = stable(
        &w,
        &w.ok(
            &["review", "infra/shop", "--base", "HEAD~1", "--no-plan"],
            0,
        )
        .stdout,
    );
    assert!(out.contains("No declarations differ."), "{out}");
    assert!(out.contains("Review: 0 new findings, 0 blocking;"), "{out}");

    let r = w.ok(&["review", "infra/shop", "--base", "no-such-branch"], 1);
    assert!(
        r.stderr.contains("unknown git revision `no-such-branch`"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_plan_is_included_when_the_providers_answer() {
    let w = repo();
    let out = stable(
        &w,
        &w.ok(
            &[
                "review",
                "infra/shop",
                "--base",
                "base",
                "--format",
                "markdown",
            ],
            2,
        )
        .stdout,
    );
    assert!(
        out.contains(
            "<details><summary>Plan: 2 to add, 0 to change, 0 to replace, 2 to destroy</summary>"
        ) || out.contains("<details><summary>Plan: "),
        "{out}"
    );
    assert!(out.contains("+ record.shop.example.com/www/A"), "{out}");
}

#[test]
fn a_stack_at_the_root_a_removed_waiver_and_a_raised_level() {
    let w = Work::new();
    git(&w, &["init", "-q", "-b", "main"]);
    w.write("stack.toml", STACK);
    w.write("services.toml", SERVICES);
    w.write(
        "policies/waivers.toml",
        "[[waiver]]\nrule = \"SOC2-ENDPOINT-HTTPS\"\nresource = \"service.legacy\"\nreason = \"retired in January\"\napprover = \"ciso@example.com\"\nexpires = 2999-01-31\n",
    );
    commit(&w, "base");
    // Removing the waiver makes legacy's finding block again: that is the change's doing.
    // Raising a rule's level is not a loosening.
    std::fs::remove_file(w.path("policies/waivers.toml")).unwrap();
    w.write(
        "stack.toml",
        &STACK.replace(
            "change_approvers = [\"lead@example.com\"]",
            "change_approvers = [\"lead@example.com\"]\nenforcement.\"SOC2-SCALING-POLICY\" = \"soft\"",
        ),
    );
    commit(&w, "head");
    let j: serde_json::Value = serde_json::from_str(
        &w.ok(
            &["review", ".", "--base", "HEAD~1", "--no-plan", "--json"],
            2,
        )
        .stdout,
    )
    .unwrap();
    let new: Vec<(&str, &str)> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap(), f["resource"].as_str().unwrap()))
        .collect();
    assert_eq!(
        new,
        [
            ("SOC2-ENDPOINT-HTTPS", "service.legacy"),
            ("SOC2-SCALING-POLICY", "service.api"),
        ]
    );
    let weakening: Vec<&serde_json::Value> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["weakens"] == true)
        .collect();
    assert!(weakening.is_empty(), "{weakening:?}");
}

#[test]
fn lowering_a_classification_or_swapping_an_approver_loosens_a_control() {
    let w = Work::new();
    git(&w, &["init", "-q", "-b", "main"]);
    let services = SERVICES.replace(
        "name = \"legacy\"\n",
        "name = \"legacy\"\ndata_classification = \"personal\"\n",
    );
    w.write("s/stack.toml", STACK);
    w.write("s/services.toml", &services);
    commit(&w, "base");
    w.write(
        "s/services.toml",
        &services.replace("\"personal\"", "\"public\""),
    );
    w.write(
        "s/stack.toml",
        &STACK.replace("lead@example.com", "intern@example.com"),
    );
    commit(&w, "head");
    let j: serde_json::Value = serde_json::from_str(
        &w.ok(
            &["review", "s", "--base", "HEAD~1", "--no-plan", "--json"],
            0,
        )
        .stdout,
    )
    .unwrap();
    let weakened: Vec<(&str, bool)> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["subject"].as_str().unwrap(),
                c["weakens"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(weakened, [("service.legacy", true), ("stack.shop", true)]);
}
