//! Benchmarks of `cairn enforce` (docs/benchmarks.md):
//!
//!   cairn-enforce-bench failover [--trials 50]   primary's death → DNS changed in the sandbox
//!   cairn-enforce-bench status [--rate 1000] [--seconds 10]   /status latency under load
//!
//! Both run the real `cairn` binary next to this one, on a temporary stack whose `api`
//! record fails over between HTTP backends on 127.0.0.1 and 127.0.0.2, probed every second
//! with a failure threshold of 2.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::provider::sandbox::Sandbox;
use cairn::testing::backend::{Backend, shared_port};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number"))
    };
    match args.first().map(String::as_str) {
        Some("failover") => failover(flag("--trials", 50) as usize),
        Some("status") => status(flag("--rate", 1000), flag("--seconds", 10)),
        _ => {
            eprintln!(
                "usage: cairn-enforce-bench failover [--trials N] | status [--rate R] [--seconds S]"
            );
            std::process::exit(1);
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    stack: PathBuf,
    daemon: Child,
    api: String,
    port: u16,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn cairn() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name("cairn")
}

fn setup(recoveries: u32) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = dir.path().join("s");
    std::fs::create_dir_all(&stack).expect("mkdir");
    let port = shared_port();
    std::fs::write(
        stack.join("stack.toml"),
        format!(
            r#"[stack]
name = "bench"
environment = "bench"

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
health_check = {{ protocol = "http", port = {port}, path = "/healthz", interval = "1s", failures = 2, recoveries = {recoveries} }}
"#
        ),
    )
    .expect("write stack");
    let api = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let daemon = Command::new(cairn())
        .args(["enforce", "s", "--listen", &api, "--probes", "network"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cairn enforce (build it: cargo build --release)");
    Setup {
        _dir: dir,
        stack,
        daemon,
        api,
        port,
    }
}

/// The sandbox's `api` record: which deployment answers first.
fn primary(sandbox: &Sandbox) -> String {
    sandbox
        .call(|c| {
            let p = c
                .objects
                .get("aws/record.t.example.com/api/A")
                .and_then(|o| serde_json::to_value(&o.attrs).ok())
                .and_then(|a| a["routing"]["primary"]["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            (Vec::new(), p)
        })
        .expect("read the sandbox")
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn failover(trials: usize) {
    let s = setup(1);
    let mut primary_backend = Some(Backend::start("127.0.0.1", s.port, 0.0, 1));
    let _secondary = Backend::start("127.0.0.2", s.port, 0.0, 2);
    let sandbox = Sandbox::open(&sandbox_dir(&s.stack), []).expect("open the sandbox");
    wait_until(Duration::from_secs(30), || {
        primary(&sandbox) == "api@aws/eu-west-1"
    })
    .expect("the daemon's first apply");
    let mut times = Vec::new();
    for trial in 0..trials {
        // Healthy and declared before each trial; then a random point in the probe cycle.
        wait_until(Duration::from_secs(30), || {
            primary(&sandbox) == "api@aws/eu-west-1"
        })
        .expect("fail-back before the next trial");
        std::thread::sleep(Duration::from_millis(1500 + fastrand::u64(0..1000)));
        primary_backend.take().expect("a primary").kill();
        let took = wait_until(Duration::from_secs(30), || {
            primary(&sandbox) == "api@gcp/europe-west1"
        })
        .unwrap_or_else(|| panic!("trial {trial}: no failover in 30 s"));
        times.push(took.as_secs_f64());
        eprintln!("trial {:>3}: {:.3} s", trial + 1, took.as_secs_f64());
        primary_backend = Some(Backend::start("127.0.0.1", s.port, 0.0, 1));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "failover latency over {trials} trials (1 s probes, failure threshold 2): p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(0.0)
    );
}

fn sandbox_dir(stack: &Path) -> PathBuf {
    stack.join(".cairn/sandbox/bench")
}

fn status(rate: u64, seconds: u64) {
    let s = setup(2);
    let _a = Backend::start("127.0.0.1", s.port, 0.0, 1);
    let _b = Backend::start("127.0.0.2", s.port, 0.0, 2);
    let url = format!("http://{}/status", s.api);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client = reqwest::Client::new();
        let ready = format!("http://{}/readyz", s.api);
        for _ in 0..300 {
            if client.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Open loop: one request every 1/rate seconds, whatever the answers' pace.
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = tokio::task::JoinSet::new();
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            tick.tick().await;
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move {
                let start = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                (start.elapsed().as_secs_f64() * 1000.0, ok)
            });
        }
        let mut ms = Vec::new();
        let mut errors = 0;
        while let Some(r) = tasks.join_next().await {
            let (t, ok) = r.expect("request task");
            if ok {
                ms.push(t);
            } else {
                errors += 1;
            }
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "/status at {rate} requests/s for {seconds} s: {} answered, {errors} errors; p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.95),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(0.0)
        );
    });
}
