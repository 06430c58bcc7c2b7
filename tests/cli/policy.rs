//! Compliance policies: every built-in rule against a passing and a failing fixture;
//! enforcement levels in plan and apply; overrides, waivers and their audit entries;
//! user rules and their errors.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::Work;

#[derive(Deserialize)]
struct Fixture {
    base: String,
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    rule: String,
    pass: String,
    fail: String,
    /// `file:line` the failing finding points at.
    fail_at: String,
    /// A different stack.toml for the failing stack.
    fail_base: Option<String>,
    /// Applied before the case, so rules on changes see a plan.
    applied: Option<String>,
}

/// The findings `cairn plan --json` reports for a stack of `base` + `body`.
fn plan_findings(base: &str, applied: Option<&str>, body: &str) -> Vec<serde_json::Value> {
    let w = Work::new();
    w.write("s/stack.toml", base);
    if let Some(a) = applied {
        w.write("s/case.toml", a);
        w.ok(&["apply", "s", "--auto-approve"], 0);
    }
    w.write("s/case.toml", body);
    let plan = w.json(&["plan", "s"]);
    plan["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {plan}"))
        .clone()
}

fn check_pack(pack: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join(format!("tests/fixtures/policies/{pack}.toml"))).unwrap();
    let fixture: Fixture = toml::from_str(&text).unwrap();
    let rules: toml::Table = toml::from_str(
        &std::fs::read_to_string(root.join(format!("policies/{pack}.toml"))).unwrap(),
    )
    .unwrap();
    let ids: BTreeSet<String> = rules["rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let covered: BTreeSet<String> = fixture.case.iter().map(|c| c.rule.clone()).collect();
    assert_eq!(ids, covered, "every rule of {pack} needs exactly one case");

    for c in &fixture.case {
        let of_rule = |fs: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
            fs.into_iter()
                .filter(|f| f["rule"] == c.rule.as_str())
                .collect()
        };
        let passing = of_rule(plan_findings(&fixture.base, c.applied.as_deref(), &c.pass));
        assert!(
            passing.is_empty(),
            "{}: the passing fixture fails: {passing:?}",
            c.rule
        );
        let base = c.fail_base.as_deref().unwrap_or(&fixture.base);
        let failing = of_rule(plan_findings(base, c.applied.as_deref(), &c.fail));
        let at: Vec<String> = failing
            .iter()
            .map(|f| {
                let file = f["file"].as_str().unwrap();
                format!("{}:{}", file.rsplit('/').next().unwrap(), f["line"])
            })
            .collect();
        assert_eq!(
            at,
            vec![c.fail_at.clone()],
            "{}: where the failing fixture is found",
            c.rule
        );
    }
}

#[test]
fn every_soc2_rule_passes_and_fails_its_fixtures() {
    check_pack("soc2");
}

#[test]
fn every_gdpr_rule_passes_and_fails_its_fixtures() {
    check_pack("gdpr");
}

#[test]
fn every_hipaa_rule_passes_and_fails_its_fixtures() {
    check_pack("hipaa");
}

#[test]
fn there_are_at_least_25_built_in_rules() {
    let w = Work::new();
    w.write(
        "s/stack.toml",
        "[stack]\nname = \"t\"\n[compliance]\nframeworks = [\"soc2\", \"gdpr\", \"hipaa\"]\n",
    );
    let list = w.json(&["policy", "list", "s"]);
    let n = list["rules"].as_array().unwrap().len();
    assert!(n >= 25, "{n} built-in rules");
}

const ZONES: &str = r#"[stack]
name = "t"
environment = "production"

[[zone]]
name = "hard.example.com"
cloud = "aws"

[[zone]]
name = "soft.example.com"
cloud = "aws"

[[zone]]
name = "advice.example.com"
cloud = "gcp"
"#;

/// A stack's own rules, one per enforcement level, each failing one zone.
const RULES: &str = r#"[[rule]]
id = "ACME-HARD"
title = "Zones are not named hard"
severity = "critical"
enforcement = "hard"
controls = ["ACME 1"]
applies_to = "zone"
require = "!zone.name.startsWith('hard.')"
fix = "rename the zone"

[[rule]]
id = "ACME-SOFT"
title = "Zones are not named soft"
severity = "high"
enforcement = "soft"
controls = ["ACME 2"]
applies_to = "zone"
require = "!zone.name.startsWith('soft.')"
fix = "rename the zone"

[[rule]]
id = "ACME-ADVICE"
title = "Zones are hosted on AWS"
severity = "low"
enforcement = "advisory"
controls = []
applies_to = "zone"
when = "zone.cloud != 'aws'"
require = "false"
fix = "move the zone to AWS"
"#;

fn waiver(rule: &str, expires: &str) -> String {
    format!(
        "[[waiver]]\nrule = \"{rule}\"\nresource = \"zone.hard.example.com\"\nreason = \"legacy name, renamed in Q3\"\napprover = \"ciso@example.com\"\nexpires = {expires}\n"
    )
}

fn audited(w: &Work, args: &[&str]) -> crate::Run {
    crate::Run::from(
        w.cmd(args)
            .env("CAIRN_AUDIT_KEY", "k1:0123456789abcdef-secret")
            .output()
            .unwrap(),
    )
}

#[test]
fn enforcement_levels_gate_apply_and_overrides_and_waivers_are_audited() {
    let w = Work::new();
    w.write("s/stack.toml", ZONES);
    w.write("s/policies/acme.toml", RULES);

    // plan shows every finding, most severe first, and exits 0: it changes nothing.
    let plan = w.ok(&["plan", "s"], 0);
    let findings = &plan.stdout[plan.stdout.find("Plan:").unwrap()..];
    insta::assert_snapshot!("enforcement_plan_findings", findings);

    // apply refuses both blocking findings before asking anything.
    let r = w.ok(&["apply", "s", "--auto-approve"], 1);
    insta::assert_snapshot!("enforcement_apply_refused", r.stderr);
    assert!(
        w.json(&["sandbox", "list", "-C", "s"])
            .as_array()
            .is_none_or(|a| a.is_empty())
    );

    // A hard-mandatory finding cannot be overridden.
    let r = w.ok(
        &[
            "apply",
            "s",
            "--auto-approve",
            "--override",
            "ACME-HARD",
            "--reason",
            "x",
        ],
        1,
    );
    assert!(
        r.stderr
            .contains("--override ACME-HARD: the rule is hard-mandatory and cannot be overridden"),
        "{}",
        r.stderr
    );

    // A waiver excuses it; the soft one still blocks until overridden with a reason and a key.
    w.write(
        "s/policies/waivers.toml",
        &waiver("ACME-HARD", "2999-12-31"),
    );
    let r = w.ok(&["apply", "s", "--auto-approve"], 1);
    assert!(
        r.stderr
            .contains("apply blocked by 1 soft-mandatory policy finding"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("hard-mandatory policy finding"),
        "{}",
        r.stderr
    );
    let r = w.ok(
        &["apply", "s", "--auto-approve", "--override", "ACME-SOFT"],
        1,
    );
    assert!(
        r.stderr.contains("--override needs --reason"),
        "{}",
        r.stderr
    );
    let r = w.ok(
        &[
            "apply",
            "s",
            "--auto-approve",
            "--override",
            "ACME-SOFT",
            "--reason",
            "migration window",
        ],
        1,
    );
    assert!(r.stderr.contains("no audit key is set"), "{}", r.stderr);
    let r = audited(
        &w,
        &[
            "apply",
            "s",
            "--auto-approve",
            "--override",
            "ACME-SOFT=zone.soft.example.com",
            "--reason",
            "migration window",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("waived until 2999-12-31 by ciso@example.com"),
        "{}",
        r.stdout
    );

    // The override and the waiver use are in the audit log, before the apply itself.
    let log = audited(&w, &["audit", "log", "s", "--json"]);
    let entries: Vec<serde_json::Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["override", "waiver", "apply"]);
    assert_eq!(entries[0]["details"]["rule"], "ACME-SOFT");
    assert_eq!(entries[0]["details"]["resource"], "zone.soft.example.com");
    assert_eq!(entries[0]["details"]["reason"], "migration window");
    assert_eq!(entries[1]["details"]["approver"], "ciso@example.com");
    assert_eq!(entries[0]["plan_digest"], entries[2]["plan_digest"]);
    assert_eq!(audited(&w, &["audit", "verify", "s"]).code, 0);
}

#[test]
fn expired_waivers_stop_applying_and_no_waivers_audits_without_them() {
    let w = Work::new();
    w.write("s/stack.toml", ZONES);
    w.write("s/policies/acme.toml", RULES);
    w.write(
        "s/policies/waivers.toml",
        &waiver("ACME-HARD", "2000-01-31"),
    );
    let r = w.ok(&["policy", "check", "s"], 2);
    insta::assert_snapshot!("expired_waiver", r.stderr);
    let hard = |v: &serde_json::Value| -> serde_json::Value {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == "ACME-HARD")
            .cloned()
            .unwrap()
    };
    assert!(
        hard(&w.json(&["policy", "check", "s"]))
            .get("waiver")
            .is_none()
    );

    w.write(
        "s/policies/waivers.toml",
        &waiver("ACME-HARD", "2999-01-31"),
    );
    let waived = w.json(&["policy", "check", "s"]);
    assert_eq!(hard(&waived)["waiver"]["approver"], "ciso@example.com");
    assert!(
        hard(&w.json(&["policy", "check", "s", "--no-waivers"]))
            .get("waiver")
            .is_none()
    );
}

#[test]
fn rule_errors_point_into_the_policy_file() {
    let w = Work::new();
    w.write("s/stack.toml", ZONES);
    w.write(
        "s/policies/bad.toml",
        "[[rule]]\nid = \"BAD 1\"\ntitle = \"t\"\nseverity = \"high\"\nenforcement = \"hard\"\ncontrols = []\napplies_to = \"zone\"\nrequire = \"zone.name ==\"\nfix = \"f\"\n\n[[rule]]\nid = \"BAD-2\"\ntitle = \"t\"\nseverity = \"urgent\"\nenforcement = \"hard\"\ncontrols = []\napplies_to = \"zone\"\nrequire = \"true\"\nfix = \"f\"\n\n[[waiver]]\nrule = \"X\"\nresource = \"zone.a\"\nreason = \"\"\napprover = \"me\"\nexpires = \"soon\"\n",
    );
    let r = w.ok(&["plan", "s"], 1);
    insta::assert_snapshot!("rule_errors", r.stderr);

    // A condition that reads a field the subject lacks fails closed, naming the rule.
    w.write(
        "s/policies/bad.toml",
        "[[rule]]\nid = \"ODD\"\ntitle = \"t\"\nseverity = \"high\"\nenforcement = \"hard\"\ncontrols = []\napplies_to = \"zone\"\nrequire = \"zone.colour == 'red'\"\nfix = \"f\"\n",
    );
    let r = w.ok(&["plan", "s"], 1);
    assert!(
        r.stderr
            .contains("rule ODD cannot be evaluated for zone.advice.example.com")
            || r.stderr
                .contains("rule ODD cannot be evaluated for zone.hard.example.com"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("s/policies/bad.toml:8:11"),
        "{}",
        r.stderr
    );
}

#[test]
fn deleting_a_protected_resource_is_refused_even_after_its_declaration_is_gone() {
    let w = Work::new();
    w.write(
        "s/stack.toml",
        "[stack]\nname = \"t\"\n\n[compliance]\nframeworks = [\"soc2\"]\n",
    );
    w.write(
        "s/zone.toml",
        "[[zone]]\nname = \"keep.example.com\"\ncloud = \"aws\"\nprotected = true\n",
    );
    w.ok(&["apply", "s", "--auto-approve"], 0);
    let r = w.ok(&["destroy", "s", "--auto-approve"], 1);
    assert!(
        r.stdout
            .contains("zone.keep.example.com: Protected resources are not deleted or replaced"),
        "{}",
        r.stdout
    );
    std::fs::remove_file(w.path("s/zone.toml")).unwrap();
    let r = w.ok(&["apply", "s", "--auto-approve"], 1);
    assert!(
        r.stderr
            .contains("apply blocked by 1 hard-mandatory policy finding"),
        "{}",
        r.stderr
    );
    // Unprotect it in a reviewed change, then it may go.
    w.write(
        "s/zone.toml",
        "[[zone]]\nname = \"keep.example.com\"\ncloud = \"aws\"\n",
    );
    w.ok(&["apply", "s", "--auto-approve"], 0);
    std::fs::remove_file(w.path("s/zone.toml")).unwrap();
    w.ok(&["apply", "s", "--auto-approve"], 0);
}

#[test]
fn validate_reports_policy_file_errors_too() {
    let w = Work::new();
    w.write("s/stack.toml", ZONES);
    w.write(
        "s/policies/acme.toml",
        &RULES.replace("require = \"false\"", "require = \"false &&\""),
    );
    let r = w.ok(&["validate", "s"], 1);
    assert!(r.stderr.contains("invalid condition"), "{}", r.stderr);
    assert!(r.stderr.contains("s/policies/acme.toml:"), "{}", r.stderr);
    assert!(!r.stdout.contains("Valid:"), "{}", r.stdout);
}
