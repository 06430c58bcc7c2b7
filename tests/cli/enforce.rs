//! `cairn enforce` as a real process: real HTTP backends on loopback addresses, the sandbox
//! as the DNS provider, the HTTP API over TCP.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cairn::testing::backend::{Backend, shared_port};

use crate::Work;

/// Two healthy backends, primary on 127.0.0.1 and secondary on 127.0.0.2, on one port.
fn healthy_backends() -> (u16, Backend, Backend) {
    let port = shared_port();
    (
        port,
        Backend::start("127.0.0.1", port, 0.0, 1),
        Backend::start("127.0.0.2", port, 0.0, 2),
    )
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A stack whose `api` record fails over from 127.0.0.1 to 127.0.0.2, probed over HTTP on
/// `port` every second.
fn failover_stack(port: u16, failures: u32) -> String {
    format!(
        r#"[stack]
name = "t"
environment = "test"

[[zone]]
name = "t.example.com"
cloud = "aws"

[[service]]
name = "api"

  [[service.deployment]]
  cloud = "aws"
  region = "eu-west-1"
  min = 1
  max = 2
  endpoint = "127.0.0.1"

  [[service.deployment]]
  cloud = "gcp"
  region = "europe-west1"
  min = 1
  max = 2
  endpoint = "127.0.0.2"

[[record]]
zone = "t.example.com"
name = "api"
type = "A"
ttl = 30
routing = {{ policy = "failover", primary = "api@aws/eu-west-1", secondary = "api@gcp/europe-west1" }}
health_check = {{ protocol = "http", port = {port}, path = "/healthz", interval = "1s", failures = {failures}, recoveries = 2 }}
"#
    )
}

/// The zone, service and record of [`failover_stack`] (2 failures), without its `[stack]`.
fn failover_records(port: u16) -> String {
    let stack = failover_stack(port, 2);
    let (_, rest) = stack.split_once("[[zone]]").unwrap();
    format!("[[zone]]{rest}")
}

/// A running daemon, killed when dropped.
struct Daemon {
    child: Child,
    api: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

const AUDIT_KEY: &str = "k1:0123456789abcdef-audit";

impl Daemon {
    fn start(w: &Work, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(w, extra, &[])
    }

    fn start_with_env(w: &Work, extra: &[&str], env: &[(String, String)]) -> Daemon {
        let api = free_addr();
        let listen = api.to_string();
        let mut args = vec!["enforce", "s", "--listen", &listen, "--probes", "network"];
        args.extend_from_slice(extra);
        let child = w
            .cmd(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CAIRN_AUDIT_KEY", AUDIT_KEY)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(w.path("enforce.log")).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child, api };
        d.wait_for("the first reconcile", Duration::from_secs(20), || {
            d.get("/readyz", None).0 == 200
        });
        d
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = agent().get(&self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.into_body().read_to_string().unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    fn post(&self, path: &str, token: Option<&str>) -> u16 {
        let mut req = agent().post(&self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req.send_empty().map_or(0, |r| r.status().as_u16())
    }

    fn status(&self, token: Option<&str>) -> serde_json::Value {
        serde_json::from_str(&self.get("/status", token).1).unwrap()
    }

    fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The sandbox's `api` record: (primary id, secondary id).
fn api_record(w: &Work) -> (String, String) {
    let list = w.json(&["sandbox", "list", "-C", "s"]);
    let r = &list["objects"]["aws/record.t.example.com/api/A"]["attrs"]["routing"];
    (
        r["primary"]["id"].as_str().unwrap_or("").to_string(),
        r["secondary"]["id"].as_str().unwrap_or("").to_string(),
    )
}

fn log(w: &Work) -> String {
    std::fs::read_to_string(w.path("enforce.log")).unwrap_or_default()
}

#[test]
fn dns_fails_over_when_the_primary_dies_and_back_when_it_returns() {
    let w = Work::new();
    let (port, primary, _secondary) = healthy_backends();
    w.write("s/stack.toml", &failover_stack(port, 2));
    let d = Daemon::start(&w, &[]);
    assert_eq!(api_record(&w).0, "api@aws/eu-west-1");
    d.wait_for("both members healthy", Duration::from_secs(10), || {
        d.status(None)["health"]
            .as_array()
            .is_some_and(|h| h.len() == 2 && h.iter().all(|m| m["health"] == "healthy"))
    });

    primary.kill();
    let died = Instant::now();
    d.wait_for("the failover", Duration::from_secs(10), || {
        api_record(&w).0 == "api@gcp/europe-west1"
    });
    let took = died.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "failed over before two probes: {took:?}"
    );
    // Without API tokens, reading is open and operator actions are refused.
    assert_eq!(d.post("/reconcile", None), 403);
    let status = d.status(None);
    assert!(
        status["failovers"]["record.t.example.com/api/A"].is_object(),
        "{status}"
    );

    let _primary = Backend::start("127.0.0.1", port, 0.0, 3);
    d.wait_for("the fail-back", Duration::from_secs(10), || {
        api_record(&w).0 == "api@aws/eu-west-1"
    });
    assert!(d.status(None)["failovers"].as_object().unwrap().is_empty());
    let log = log(&w);
    assert!(
        log.contains("is unhealthy: failing over to api@gcp/europe-west1"),
        "{log}"
    );
    assert!(log.contains("back to its declared routing"), "{log}");
}

#[test]
fn a_backend_failing_a_fifth_of_probes_at_random_moves_nothing() {
    let w = Work::new();
    let port = shared_port();
    // 20% of answers are 500s; with a failure threshold of 5 in a row, random failures do
    // not add up to an outage (0.2^5: about 1 probe in 3,000).
    let _primary = Backend::start("127.0.0.1", port, 0.2, 42);
    let _secondary = Backend::start("127.0.0.2", port, 0.0, 7);
    w.write("s/stack.toml", &failover_stack(port, 5));
    let d = Daemon::start(&w, &[]);
    std::thread::sleep(Duration::from_secs(12));
    let status = d.status(None);
    let fails = status["health"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == "api@aws/eu-west-1")
        .cloned()
        .unwrap();
    assert_eq!(fails["health"], "healthy", "{status}");
    assert_eq!(api_record(&w).0, "api@aws/eu-west-1");
    assert!(
        status["failovers"].as_object().unwrap().is_empty(),
        "{status}"
    );
    // The probes did see failures: the metric counts them.
    let (_, metrics) = d.get("/metrics", None);
    assert!(
        metrics.contains("cairn_probes_total{result=\"fail\"}"),
        "{metrics}"
    );
}

#[test]
fn with_every_member_down_the_last_answer_is_kept_and_an_alert_raised() {
    let w = Work::new();
    let (port, primary, secondary) = healthy_backends();
    w.write("s/stack.toml", &failover_stack(port, 2));
    let d = Daemon::start(&w, &[]);
    // Events arrive on the SSE stream while it happens (no overall timeout on this one).
    let sse: ureq::Agent = ureq::Agent::config_builder().build().into();
    let resp = sse.get(&d.url("/events")).call().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    primary.kill();
    secondary.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut alert = None;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line.starts_with("data:")
            && line.contains("\"kind\":\"alert\"")
        {
            alert = Some(line);
            break;
        }
    }
    let alert = alert.expect("an alert event on /events");
    assert!(
        alert.contains("are unhealthy; keeping the current answer"),
        "{alert}"
    );
    // The record still answers with both members: nothing was unpublished. (Which one is
    // first depends on which death was noticed first.)
    let (first, second) = api_record(&w);
    let mut members = [first, second];
    members.sort();
    assert_eq!(members, ["api@aws/eu-west-1", "api@gcp/europe-west1"]);
}

#[test]
fn edits_are_applied_and_invalid_edits_rejected_while_the_old_config_stays_enforced() {
    let w = Work::new();
    let (port, _primary, _secondary) = healthy_backends();
    let stack = failover_stack(port, 2);
    w.write("s/stack.toml", &stack);
    // A hard-mandatory rule of the stack's own: TTLs of at most 100 seconds.
    w.write(
        "s/policies/ttl.toml",
        "[[rule]]\nid = \"ACME-TTL\"\ntitle = \"TTLs are short\"\nseverity = \"high\"\nenforcement = \"hard\"\ncontrols = []\napplies_to = \"record\"\nrequire = \"record.ttl <= 100\"\nfix = \"lower the ttl\"\n",
    );
    w.write("tokens", "operator 0123456789abcdef-operator\n");
    let token = Some("0123456789abcdef-operator");
    let d = Daemon::start(&w, &["--token-file", "tokens"]);
    let ttl = |w: &Work| {
        w.json(&["sandbox", "list", "-C", "s"])["objects"]["aws/record.t.example.com/api/A"]["attrs"]["ttl"]
            .as_u64()
            .unwrap()
    };
    w.write("s/stack.toml", &stack.replace("ttl = 30", "ttl = 45"));
    d.wait_for("the edit applied", Duration::from_secs(10), || {
        ttl(&w) == 45
    });

    // Drift out of band, then an edit failing the hard rule: the edit is rejected, and a
    // reconcile still enforces the last good configuration.
    w.ok(
        &[
            "sandbox",
            "set-record",
            "t.example.com",
            "api",
            "A",
            "--ttl",
            "300",
            "-C",
            "s",
        ],
        0,
    );
    w.write("s/stack.toml", &stack.replace("ttl = 30", "ttl = 200"));
    d.wait_for("the rejection", Duration::from_secs(10), || {
        d.status(token)["last_rejection"].is_object()
    });
    let rejection = d.status(token)["last_rejection"]["diagnostics"].to_string();
    assert!(rejection.contains("TTLs are short"), "{rejection}");
    assert_eq!(ttl(&w), 300, "a rejected edit changes nothing");
    assert_eq!(d.post("/reconcile", token), 202);
    d.wait_for(
        "drift corrected to the last good ttl",
        Duration::from_secs(10),
        || ttl(&w) == 45,
    );

    // A syntax error is rejected the same way; the next good edit is applied.
    w.write("s/stack.toml", &format!("{stack}\n[[zone]\n"));
    d.wait_for("the syntax rejection", Duration::from_secs(10), || {
        d.status(token)["last_rejection"]["diagnostics"]
            .to_string()
            .contains("invalid TOML")
    });
    w.write("s/stack.toml", &stack.replace("ttl = 30", "ttl = 60"));
    d.wait_for(
        "the next good edit applied",
        Duration::from_secs(10),
        || ttl(&w) == 60,
    );
    let log = log(&w);
    assert!(
        log.contains("the edited configuration was rejected; the last good one is still enforced"),
        "{log}"
    );
}

#[test]
fn the_api_checks_tokens_and_roles_and_serves_prometheus_metrics() {
    let w = Work::new();
    let (port, _primary, _secondary) = healthy_backends();
    w.write("s/stack.toml", &failover_stack(port, 2));
    w.write(
        "tokens",
        "# role token\nviewer   viewer-token-0123456789\noperator operator-token-0123456789\n",
    );
    let d = Daemon::start(&w, &["--token-file", "tokens"]);
    assert_eq!(d.get("/healthz", None).0, 200);
    assert_eq!(d.get("/status", None).0, 401);
    assert_eq!(d.get("/status", Some("wrong-token-0123456789")).0, 401);
    assert_eq!(d.get("/status", Some("viewer-token-0123456789")).0, 200);
    assert_eq!(d.post("/reconcile", Some("viewer-token-0123456789")), 403);
    assert_eq!(d.post("/reconcile", Some("operator-token-0123456789")), 202);
    let operate = |action: &str| {
        d.post(
            &format!("/{action}?record=record.t.example.com/api/A"),
            Some("operator-token-0123456789"),
        )
    };
    assert_eq!(operate("failover"), 202);
    d.wait_for("the manual failover", Duration::from_secs(10), || {
        api_record(&w).0 == "api@gcp/europe-west1"
    });
    assert_eq!(operate("failover"), 400, "already failed over");
    assert_eq!(operate("failback"), 202);
    d.wait_for("the manual fail-back", Duration::from_secs(10), || {
        api_record(&w).0 == "api@aws/eu-west-1"
    });
    assert_eq!(operate("failback"), 400, "not failed over");

    let (code, text) = d.get("/metrics", Some("viewer-token-0123456789"));
    assert_eq!(code, 200);
    let families = parse_exposition(&text);
    for name in [
        "cairn_reconciles_total",
        "cairn_reconcile_duration_seconds",
        "cairn_probes_total",
        "cairn_probe_duration_seconds",
        "cairn_failovers_total",
        "cairn_provider_api_calls_total",
    ] {
        assert!(families.contains_key(name), "{name} missing from:\n{text}");
    }
    assert_eq!(families["cairn_reconcile_duration_seconds"], "histogram");
    assert_eq!(families["cairn_reconciles_total"], "counter");
    // promtool is installed by tests/run.sh; without it (outside CI) this check is reported.
    match promtool_check(&text) {
        Some((ok, out)) => assert!(ok, "promtool check metrics:\n{out}\n{text}"),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "promtool is not installed: tests/run.sh installs it (Debian package prometheus)"
            )
        }
        None => eprintln!("note: promtool not found; /metrics was parsed but not linted"),
    }
}

/// `promtool check metrics` on `text`: (passed, output), or `None` without promtool.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// `# TYPE name kind` lines of a Prometheus text exposition, checking every sample line
/// belongs to a declared family and has a numeric value.
fn parse_exposition(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut families = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            families.insert(name.to_string(), kind.to_string());
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("not a number in {line}"));
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains_key(*f)))
                .unwrap_or(name);
            assert!(
                families.contains_key(family),
                "sample without # TYPE: {line}"
            );
        }
    }
    families
}

#[test]
fn sigterm_mid_apply_finishes_safely_and_the_next_run_converges() {
    let w = Work::new();
    let records: String = (0..30)
        .map(|i| format!("[[record]]\nzone = \"z{i}.example.com\"\nname = \"www\"\ntype = \"A\"\nvalues = [\"192.0.2.1\"]\n\n[[zone]]\nname = \"z{i}.example.com\"\ncloud = \"aws\"\n\n"))
        .collect();
    w.write(
        "s/stack.toml",
        &format!("[stack]\nname = \"t\"\n\n{records}"),
    );
    let api = free_addr().to_string();
    let mut child = w
        .cmd(&["enforce", "s", "--listen", &api])
        .env("CAIRN_SANDBOX_LATENCY_MS", "100")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(w.path("enforce.log")).unwrap())
        .spawn()
        .unwrap();
    // Wait until the apply is under way (some zones exist), then stop the daemon.
    let start = Instant::now();
    loop {
        let list = w.json(&["sandbox", "list", "-C", "s"]);
        if list["objects"].as_object().is_some_and(|o| !o.is_empty()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the apply never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}\n{}", log(&w));
    // Nothing lost, nothing duplicated: the next plan finds at most the rest to do, and
    // after an apply nothing.
    w.ok(&["apply", "s", "--auto-approve"], 0);
    let r = w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    let list = w.json(&["sandbox", "list", "-C", "s"]);
    assert_eq!(list["objects"].as_object().unwrap().len(), 60);
}

#[test]
fn route53_fails_over_through_the_aws_provider() {
    let Some((moto, _guard)) = crate::moto::moto() else {
        return;
    };
    let w = Work::new();
    let (port, primary, _secondary) = healthy_backends();
    // The zone and its records on Route53 (moto); the deployments on the sandbox.
    let body = failover_records(port)
        .replace(
            "cloud = \"aws\"\n  region = \"eu-west-1\"",
            "cloud = \"azure\"\n  region = \"westeurope\"",
        )
        .replace("api@aws/eu-west-1", "api@azure/westeurope");
    w.write("s/stack.toml", &crate::aws::aws_stack(&moto.url, &body));
    let d = Daemon::start(&w, &[]);
    let roles = || crate::aws::failover_roles(&moto.url, "t.example.com");
    assert_eq!(
        roles(),
        [
            "api@azure/westeurope PRIMARY 127.0.0.1",
            "api@gcp/europe-west1 SECONDARY 127.0.0.2",
        ]
    );
    primary.kill();
    d.wait_for("Route53 to fail over", Duration::from_secs(15), || {
        roles()
            == [
                "api@azure/westeurope SECONDARY 127.0.0.1",
                "api@gcp/europe-west1 PRIMARY 127.0.0.2",
            ]
    });
    let status = d.status(None);
    assert!(
        status["failovers"]["record.t.example.com/api/A"].is_object(),
        "{status}"
    );
    // Back once the primary answers again (automatic fail-back).
    let _primary = Backend::start("127.0.0.1", port, 0.0, 3);
    d.wait_for("Route53 to fail back", Duration::from_secs(15), || {
        roles()
            == [
                "api@azure/westeurope PRIMARY 127.0.0.1",
                "api@gcp/europe-west1 SECONDARY 127.0.0.2",
            ]
    });
}

#[test]
fn azure_dns_fails_over_between_aws_and_gcp_deployments() {
    let fake = crate::azure::fake(cairn::testing::azure_dns::Faults::default());
    let w = Work::new();
    let (port, primary, _secondary) = healthy_backends();
    // The zone and its records on Azure DNS (the fake); the deployments on the sandbox.
    let body = failover_records(port).replacen("cloud = \"aws\"", "cloud = \"azure\"", 1);
    w.write("s/stack.toml", &crate::azure::stack_with(&fake, &body));
    let d = Daemon::start_with_env(&w, &[], &crate::azure::env(&w, &fake));
    let answer = || {
        fake.records("t.example.com")
            .into_iter()
            .find(|(t, n, _)| t == "A" && n == "api")
            .map(|(_, _, p)| p["ARecords"].to_string())
            .unwrap_or_default()
    };
    assert_eq!(answer(), r#"[{"ipv4Address":"127.0.0.1"}]"#);
    primary.kill();
    d.wait_for("Azure DNS to fail over", Duration::from_secs(15), || {
        answer() == r#"[{"ipv4Address":"127.0.0.2"}]"#
    });
    let _primary = Backend::start("127.0.0.1", port, 0.0, 3);
    d.wait_for("Azure DNS to fail back", Duration::from_secs(15), || {
        answer() == r#"[{"ipv4Address":"127.0.0.1"}]"#
    });
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn cloud_dns_fails_over_from_an_aws_group_to_a_gcp_group() {
    let Some((moto, _guard)) = crate::moto::moto() else {
        return;
    };
    let fake = crate::gcp::fake(cairn::testing::google::Faults::default());
    let w = Work::new();
    let (port, primary, _secondary) = healthy_backends();
    // The zone on Cloud DNS (the fake); the primary's group an Auto Scaling group (moto), the
    // secondary's a managed instance group (the fake).
    crate::aws::create_group(&moto.url, "eu-west-1", "api");
    fake.add_group("europe-west1", "api", 0);
    let body = failover_records(port).replacen("cloud = \"aws\"", "cloud = \"gcp\"", 1);
    let stack = crate::gcp::stack_with(&fake, &body).replace(
        "[provider.gcp]",
        &format!(
            "[provider.aws]\nregion = \"eu-west-1\"\nendpoint = \"{}\"\n\n[provider.gcp]",
            moto.url
        ),
    );
    w.write("s/stack.toml", &stack);
    let d = Daemon::start_with_env(&w, &[], &crate::gcp::env(&w, &fake));
    assert_eq!(
        crate::aws::group_capacity(&moto.url, "eu-west-1", "api"),
        (1, 2, 1)
    );
    assert_eq!(fake.group_size("europe-west1", "api"), Some(1));
    let primary_targets = || {
        fake.rrsets("t.example.com.")
            .into_iter()
            .find(|s| s["name"] == "api.t.example.com.")
            .map(|s| {
                s["routingPolicy"]["primaryBackup"]["primaryTargets"]["externalEndpoints"]
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert_eq!(primary_targets(), r#"["127.0.0.1"]"#);
    primary.kill();
    d.wait_for("Cloud DNS to fail over", Duration::from_secs(15), || {
        primary_targets() == r#"["127.0.0.2"]"#
    });
    let _primary = Backend::start("127.0.0.1", port, 0.0, 3);
    d.wait_for("Cloud DNS to fail back", Duration::from_secs(15), || {
        primary_targets() == r#"["127.0.0.1"]"#
    });
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn report_only_reports_drift_and_changes_nothing() {
    let w = Work::new();
    let (port, _primary, _secondary) = healthy_backends();
    w.write("s/stack.toml", &failover_stack(port, 2));
    // Created first by a plain apply: report-only never changes anything, not even at start.
    w.ok(&["apply", "s", "--auto-approve"], 0);
    w.ok(
        &[
            "sandbox",
            "set-record",
            "t.example.com",
            "api",
            "A",
            "--ttl",
            "300",
            "-C",
            "s",
        ],
        0,
    );
    let d = Daemon::start(&w, &["--report-only", "--record-interval", "1s"]);
    d.wait_for("the drift report", Duration::from_secs(10), || {
        d.status(None)["drift"]["record"]["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|a| a == "record.t.example.com/api/A"))
    });
    let ttl = w.json(&["sandbox", "list", "-C", "s"])["objects"]["aws/record.t.example.com/api/A"]
        ["attrs"]["ttl"]
        .clone();
    assert_eq!(ttl, 300, "report-only corrected the drift");
    let (_, metrics) = d.get("/metrics", None);
    assert!(
        metrics.contains("cairn_drift_resources{kind=\"record\"} 1"),
        "{metrics}"
    );
}

#[test]
fn probes_check_the_expected_status_and_body() {
    let w = Work::new();
    let (port, _primary, _secondary) = healthy_backends();
    // The backends answer 200 "ok": a probe wanting "ready" in the body fails.
    let stack = failover_stack(port, 2).replace(
        "recoveries = 2 }",
        "recoveries = 2, expect_status = 200, expect_body = \"ready\" }",
    );
    w.write("s/stack.toml", &stack);
    let d = Daemon::start(&w, &[]);
    d.wait_for("both members unhealthy", Duration::from_secs(10), || {
        d.status(None)["health"]
            .as_array()
            .is_some_and(|h| h.len() == 2 && h.iter().all(|m| m["health"] == "unhealthy"))
    });
    let status = d.status(None);
    let detail = status["health"][0]["last_detail"].as_str().unwrap_or("");
    assert_eq!(detail, "body does not contain \"ready\"", "{status}");
}

/// Three days of 5-minute load ending now, a daily wave between 200 and 800 requests/s.
fn daily_wave() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut csv = String::from("timestamp,value\n");
    for k in (0..3 * 288).rev() {
        let ts = now - now % 300 - k * 300;
        let phase = (ts % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
        csv.push_str(&format!("{ts},{:.1}\n", 500.0 - 300.0 * phase.cos()));
    }
    csv
}

/// The scaling policy of the predictive tests: at least 200/s needs 40 replicas at 50% of
/// 10/s each; the budget pays for 15.
const CAPPED_SCALING: &str = r#"
[scaling.api]
target_utilization = 0.5
startup = "5m"
predictive = { horizon = "30m", history = "3d" }
cost = { per_replica_hour = 0.1, max_per_hour = 1.5 }
load = { trace = "load.csv" }
per_replica = 10
"#;

#[test]
fn predictive_scaling_resizes_an_azure_scale_set() {
    use cairn::testing::azure_compute::ScaleSet;
    let fake = crate::azure::fake(cairn::testing::azure_dns::Faults::default());
    fake.add_scale_set(ScaleSet::new("api", "westeurope", 1));
    let w = Work::new();
    w.write("s/load.csv", &daily_wave());
    let body = format!(
        "[[service]]\nname = \"api\"\n  [[service.deployment]]\n  cloud = \"azure\"\n  region = \"westeurope\"\n  min = 1\n  max = 20\n{CAPPED_SCALING}"
    );
    w.write("s/stack.toml", &crate::azure::stack_with(&fake, &body));
    let d = Daemon::start_with_env(
        &w,
        &["--scale-interval", "1s"],
        &crate::azure::env(&w, &fake),
    );
    d.wait_for("the scale set's resize", Duration::from_secs(20), || {
        fake.scale_set("api").is_some_and(|s| s.capacity == 15)
    });
    assert_eq!(d.status(None)["scaling"]["api"]["binding"], "cost_cap");
    let set = fake.scale_set("api").unwrap();
    assert_eq!(set.tags["cairn_max"], "20");
    assert_eq!(fake.capacity_history("api"), [15]);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn predictive_scaling_resizes_groups_within_the_cost_cap() {
    let w = Work::new();
    // Replayed by the sandbox.
    w.write("s/load.csv", &daily_wave());
    let deployments = r#"[stack]
name = "s"
environment = "test"

[[service]]
name = "api"

  [[service.deployment]]
  cloud = "aws"
  region = "eu-west-1"
  min = 1
  max = 20

  [[service.deployment]]
  cloud = "gcp"
  region = "europe-west1"
  min = 1
  max = 20
"#;
    w.write("s/stack.toml", &format!("{deployments}{CAPPED_SCALING}"));
    let d = Daemon::start(&w, &["--scale-interval", "1s"]);
    d.wait_for("the scaling decision", Duration::from_secs(20), || {
        d.status(None)["scaling"]["api"]["desired"] == 15
    });
    let decision = d.status(None)["scaling"]["api"].clone();
    assert_eq!(decision["binding"], "cost_cap", "{decision:#}");
    assert!(
        decision["predicted"].as_u64().unwrap() >= 40,
        "{decision:#}"
    );
    assert!(decision["confidence"].as_f64().is_some(), "{decision:#}");
    let desired = |group: &str| {
        w.json(&["sandbox", "list", "-C", "s"])["objects"][group]["attrs"]["desired"].clone()
    };
    d.wait_for("the groups' resize", Duration::from_secs(20), || {
        desired("aws/group.api@aws/eu-west-1") == 8
            && desired("gcp/group.api@gcp/europe-west1") == 7
    });
    assert!(
        log(&w).contains("api: the budget of 1.50/h allows 15 replicas"),
        "{}",
        log(&w)
    );
    let (_, metrics) = d.get("/metrics", None);
    assert!(
        metrics.contains("cairn_scaling_decisions_total{service=\"api\"} 1"),
        "{metrics}"
    );
}

#[test]
fn an_anomalous_deployment_is_routed_away_from() {
    let w = Work::new();
    let (port, _a, _b) = healthy_backends();
    // Three days of latency ending now for the AWS deployment: about 50 ms with a little
    // deterministic noise, then 5 s in the last two steps.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut csv = String::from("timestamp,value\n");
    let mut rng = fastrand::Rng::with_seed(7);
    for k in (0..3 * 288).rev() {
        let ts = now - now % 300 - k * 300;
        let value = if k < 2 {
            5000.0
        } else {
            50.0 + rng.f64() * 5.0
        };
        csv.push_str(&format!("{ts},{value:.2}\n"));
    }
    w.write("s/latency.csv", &csv);
    let stack = failover_stack(port, 2).replace(
        r#"routing = { policy = "failover", primary = "api@aws/eu-west-1", secondary = "api@gcp/europe-west1" }"#,
        r#"routing = { policy = "weighted", members = [{ target = "api@aws/eu-west-1", weight = 50 }, { target = "api@gcp/europe-west1", weight = 50 }] }"#,
    );
    w.write(
        "s/stack.toml",
        &format!(
            "{stack}\n[monitoring.\"api@aws/eu-west-1\"]\nlatency = {{ trace = \"latency.csv\" }}\non_anomaly = \"route_away\"\nroute_away_for = \"1h\"\n"
        ),
    );
    let d = Daemon::start(&w, &["--scale-interval", "1s"]);
    let weights = || {
        let list = w.json(&["sandbox", "list", "-C", "s"]);
        let members =
            list["objects"]["aws/record.t.example.com/api/A"]["attrs"]["routing"]["members"]
                .clone();
        members
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|x| {
                        (
                            x["id"].as_str().unwrap_or("").to_string(),
                            x["weight"].clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    d.wait_for("the route-away", Duration::from_secs(30), || {
        weights()
            .iter()
            .all(|(id, weight)| id != "api@aws/eu-west-1" || *weight == 0)
            && !weights().is_empty()
    });
    let log = log(&w);
    assert!(log.contains("api@aws/eu-west-1: anomaly score"), "{log}");
    assert!(log.contains("latency 5000.000"), "{log}");
    // /status shows what the detectors last saw and the alert acted on (one incident).
    let monitoring = d.status(None)["monitoring"]["api@aws/eu-west-1"].clone();
    assert_eq!(monitoring["alerts"], 1, "{monitoring}");
    assert_eq!(
        monitoring["last_alert"]["metrics"][0]["metric"], "latency",
        "{monitoring}"
    );
    let last = &monitoring["last"];
    assert_eq!(last["metrics"][0]["metric"], "latency", "{monitoring}");
    assert_eq!(last["metrics"][0]["value"], 5000.0, "{monitoring}");
    assert!(last["score"].as_f64().unwrap() >= 0.65, "{monitoring}");
    assert!(
        log.contains("api@aws/eu-west-1: routed away from after an anomaly"),
        "{log}"
    );
    let audit = w
        .cmd(&["audit", "log", "s", "--json", "--action", "route_away"])
        .env("CAIRN_AUDIT_KEY", AUDIT_KEY)
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.lines().count(), 1, "{audit}");
}
