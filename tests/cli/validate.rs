//! Each kind of configuration error renders as a diagnostic with file:line:col and a label.

use crate::Work;

const HEAD: &str = "[stack]\nname = \"t\"\n\n";

/// Validates a one-file stack and returns what the user sees (stderr), asserting exit 1.
fn invalid(body: &str) -> String {
    let w = Work::new();
    w.write("s/stack.toml", &format!("{HEAD}{body}"));
    let r = w.ok(&["validate", "s"], 1);
    assert!(
        r.stdout.is_empty(),
        "no success line on failure: {}",
        r.stdout
    );
    r.stderr
}

const ZONE_AND_SERVICE: &str = r#"
[[zone]]
name = "example.com"
cloud = "aws"

[[service]]
name = "api"
  [[service.deployment]]
  cloud = "aws"
  region = "us-east-1"
  min = 1
  max = 3
  endpoint = "192.0.2.10"
"#;

#[test]
fn syntax_error() {
    insta::assert_snapshot!(invalid("[[zone]]\nname = \"example.com\ncloud = \"aws\"\n"));
}

#[test]
fn unknown_keys_with_suggestion() {
    insta::assert_snapshot!(invalid(
        "[[zone]]\nname = \"example.com\"\ncloud = \"aws\"\ncolour = \"blue\"\n\n[scalling.api]\ntarget_utilization = 0.5\n"
    ));
}

#[test]
fn wrong_types() {
    insta::assert_snapshot!(invalid(&format!(
        "{ZONE_AND_SERVICE}\n[[record]]\nzone = \"example.com\"\nname = \"www\"\ntype = \"A\"\nttl = \"thirty\"\nvalues = [\"192.0.2.1\"]\n"
    )));
}

#[test]
fn bad_values() {
    insta::assert_snapshot!(invalid(&format!(
        "{ZONE_AND_SERVICE}
[[record]]
zone = \"example.com\"
name = \"www\"
type = \"A\"
ttl = 0
values = [\"not-an-ip\"]

[[record]]
zone = \"example.com\"
name = \"lb\"
type = \"A\"
routing = {{ policy = \"weighted\", members = [{{ target = \"api@aws/us-east-1\", weight = 300 }}] }}
health_check = {{ protocol = \"https\", interval = \"soon\" }}
"
    )));
}

#[test]
fn dangling_references() {
    insta::assert_snapshot!(invalid(&format!(
        "{ZONE_AND_SERVICE}
[[record]]
zone = \"exmaple.com\"
name = \"www\"
type = \"A\"
values = [\"192.0.2.1\"]

[[record]]
zone = \"example.com\"
name = \"api\"
type = \"A\"
target = \"api@aws/us-east-2\"
depends_on = [\"zone.nowhere.example\"]

[scaling.ap]
target_utilization = 0.5
"
    )));
}

#[test]
fn duplicates() {
    insta::assert_snapshot!(invalid(&format!(
        "{ZONE_AND_SERVICE}
[[zone]]
name = \"example.com\"
cloud = \"gcp\"

[[record]]
zone = \"example.com\"
name = \"www\"
type = \"A\"
values = [\"192.0.2.1\"]

[[record]]
zone = \"example.com\"
name = \"www\"
type = \"A\"
values = [\"192.0.2.2\"]
"
    )));
}

#[test]
fn dependency_cycle_names_the_whole_path() {
    let w = Work::new();
    w.write(
        "s/a.toml",
        r#"[stack]
name = "cyc"

[[zone]]
name = "example.com"
cloud = "aws"
depends_on = ["group.api@aws/us-east-1"]

[[service]]
name = "api"
depends_on = ["record.example.com/www/A"]
  [[service.deployment]]
  cloud = "aws"
  region = "us-east-1"
  min = 1
  max = 2
  endpoint = "192.0.2.1"
"#,
    );
    w.write("s/b.toml", "[[record]]\nzone = \"example.com\"\nname = \"www\"\ntype = \"A\"\nvalues = [\"192.0.2.9\"]\n");
    let r = w.ok(&["validate", "s"], 1);
    insta::assert_snapshot!(r.stderr);
}

#[test]
fn missing_required_keys_and_stack() {
    let w = Work::new();
    w.write("s/zones.toml", "[[zone]]\ncloud = \"aws\"\n");
    insta::assert_snapshot!(w.ok(&["validate", "s"], 1).stderr);
}

#[test]
fn undefined_variable_and_unknown_environment() {
    let w = Work::new();
    w.write(
        "s/stack.toml",
        "[stack]\nname = \"t\"\n\n[variables]\ndomain = \"example.com\"\n\n[env.staging.variables]\ndomain = \"staging.example.com\"\n\n[[zone]]\nname = \"${var.domian}\"\ncloud = \"aws\"\n",
    );
    insta::assert_snapshot!(w.ok(&["validate", "s"], 1).stderr);
    let r = w.ok(&["validate", "s", "--env", "prod"], 1);
    assert!(
        r.stderr.contains("unknown environment `prod`")
            && r.stderr.contains("declared environments: staging"),
        "{}",
        r.stderr
    );
}

#[test]
fn environment_overrides_variables() {
    let w = Work::quickstart();
    let prod = w.json(&["plan", "shop"]);
    let staging = w.json(&["plan", "shop", "--env", "staging"]);
    let zone = |v: &serde_json::Value| {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"].as_str().unwrap().starts_with("zone."))
            .unwrap()["address"]
            .clone()
    };
    assert_eq!(zone(&prod), "zone.shop.example.com");
    assert_eq!(zone(&staging), "zone.staging.shop.example.com");
    assert_eq!(staging["environment"], "staging");
    let api_min = staging["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "group.api@aws/eu-west-1")
        .unwrap()["after"]["min"]
        .clone();
    assert_eq!(api_min, 1, "the staging override of api_min applies");
}

#[test]
fn all_errors_across_files_at_once_in_json() {
    let w = Work::new();
    w.write(
        "s/a.toml",
        &format!("{HEAD}[[zone]]\nname = \"example.com\"\ncloud = \"mars\"\n"),
    );
    w.write("s/b.toml", "[[record]]\nzone = \"example.com\"\nname = \"www\"\ntype = \"A\"\nttl = 9999999\nvalues = [\"192.0.2.1\"]\n");
    let v = w.json(&["validate", "s"]);
    assert_eq!(v["valid"], false);
    let positions: Vec<String> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{} {}",
                d["file"].as_str().unwrap(),
                d["line"],
                d["column"],
                d["code"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        positions,
        vec![
            "s/a.toml:6:9 config::type",
            "s/b.toml:5:7 config::invalid_value"
        ]
    );
}

#[test]
fn quickstart_is_valid() {
    let w = Work::quickstart();
    let r = w.ok(&["validate", "shop"], 0);
    assert_eq!(
        r.stdout,
        "Valid: stack `shop` (production): 1 zone, 4 records, 5 groups.\n"
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn zone_names_differing_by_a_trailing_dot_are_duplicates_and_durations_are_whole_seconds() {
    let stderr = invalid(
        "[[zone]]\nname = \"example.com\"\ncloud = \"aws\"\n\n[[zone]]\nname = \"example.com.\"\ncloud = \"aws\"\n\n[[record]]\nzone = \"example.com\"\nname = \"www\"\ntype = \"A\"\nvalues = [\"192.0.2.1\"]\nhealth_check = { protocol = \"tcp\", port = 443, interval = \"1500ms\" }\n",
    );
    assert!(
        stderr.contains("zone `example.com` is declared more than once"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`1500ms` is not a whole number of seconds"),
        "{stderr}"
    );
}

#[test]
fn bad_scaling_and_monitoring_values() {
    insta::assert_snapshot!(invalid(&format!(
        "{ZONE_AND_SERVICE}
[scaling.api]
target_utilization = 0.6
load_factor = 0
scale_in_limit = {{ percent = 150, period = \"5m\" }}
scale_to_zero_after = \"10s\"

[monitoring.\"api@aws/us-east-1\"]
cpu = {{ file = \"cpu.csv\", query = \"up\" }}
threshold = 1.5
on_anomaly = \"route_away\"
"
    )));
}

#[test]
fn geolocation_in_a_gcp_zone_is_by_region_and_the_gcp_project_id_is_checked() {
    let stderr = invalid(
        r#"[provider.gcp]
project = "My_Project"

[[zone]]
name = "g.example.com"
cloud = "gcp"

[[zone]]
name = "a.example.com"
cloud = "aws"

[[record]]
zone = "g.example.com"
name = "near"
type = "A"
routing = { policy = "geolocation", members = [{ id = "eu", values = ["192.0.2.1"], location = "EU" }, { id = "us", values = ["192.0.2.2"], location = "us-east1" }] }

[[record]]
zone = "a.example.com"
name = "near"
type = "A"
routing = { policy = "geolocation", members = [{ id = "eu", values = ["192.0.2.1"], location = "europe-west1" }] }
"#,
    );
    insta::assert_snapshot!(stderr);
}
