//! Benchmark harness: generates stacks of N resources, applies them on the sandbox, then
//! measures wall time and peak memory of the `cairn` binary for a no-op plan and for a plan
//! with 1% drift. Figures are whole-process (fork/exec + wait4 rusage).
//!
//!   cargo run --release --bin cairn-bench -- --sizes 1000,10000,100000
//!   cargo run --release --bin cairn-bench -- generate 5000 /tmp/stack   (just write a stack)
//!   cargo run --release --bin cairn-bench -- aws [--records 10000]       (API calls against moto)
//!   cargo run --release --bin cairn-bench -- azure [--records 10000]     (API calls against the Azure DNS fake)
//!   cargo run --release --bin cairn-bench -- azure-scale-sets [--scale-sets 100]   (the same for VMSS)
//!   cargo run --release --bin cairn-bench -- gcp [--records 10000]       (API calls against the Google fake)

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn::model::{Attrs, Cloud};
use cairn::provider::sandbox::{Sandbox, SandboxOp};

/// Records per zone in generated stacks.
const RECORDS_PER_ZONE: usize = 1000;
/// One service deployment (scaling group) per this many resources.
const RESOURCES_PER_GROUP: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let records = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .map_or(10_000, |n| n.parse().expect("a number"));
    let scale_sets = args
        .iter()
        .position(|a| a == "--scale-sets")
        .and_then(|i| args.get(i + 1))
        .map_or(100, |n| n.parse().expect("a number"));
    match args.first().map(String::as_str) {
        Some("aws") => return aws(records),
        Some("azure") => return azure(records),
        Some("azure-scale-sets") => return azure_scale_sets(scale_sets),
        Some("gcp") => return gcp(records),
        _ => {}
    }
    if args.first().map(String::as_str) == Some("generate") {
        let n: usize = args
            .get(1)
            .and_then(|s| s.parse().ok())
            .expect("usage: cairn-bench generate N DIR");
        let dir = PathBuf::from(args.get(2).expect("usage: cairn-bench generate N DIR"));
        generate(n, &dir);
        return;
    }
    let mut sizes = vec![1_000, 10_000, 100_000];
    let mut runs = 3;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--sizes" => {
                sizes = args[i + 1]
                    .split(',')
                    .map(|s| s.parse().expect("sizes are numbers"))
                    .collect();
                i += 1;
            }
            "--runs" => {
                runs = args[i + 1].parse().expect("runs is a number");
                i += 1;
            }
            other => panic!("unknown argument {other}; use --sizes A,B,C --runs N"),
        }
        i += 1;
    }
    let cairn = std::env::current_exe()
        .expect("own path")
        .with_file_name("cairn");
    assert!(
        cairn.exists(),
        "build the cairn binary first: cargo build --release"
    );
    let mut table = String::from(
        "| resources | apply (create all) | no-op plan: wall | no-op plan: peak RSS | 1% drift plan: wall | 1% drift plan: peak RSS | sandbox API calls (plan) |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &n in &sizes {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("stack");
        generate(n, &dir);
        let apply = run(&cairn, &["apply", "--auto-approve", "--json"], &dir, 0);
        let noop: Vec<Measure> = (0..runs)
            .map(|_| run(&cairn, &["plan", "--detailed-exitcode", "--json"], &dir, 0))
            .collect();
        let (stack, _) = cairn::config::load_stack(&dir, None).expect("generated stacks are valid");
        drift(&stack.providers.sandbox_dir, n / 100);
        let drifted: Vec<Measure> = (0..runs)
            .map(|_| run(&cairn, &["plan", "--detailed-exitcode", "--json"], &dir, 2))
            .collect();
        let calls = api_calls_of_plan(&cairn, &dir);
        let _ = writeln!(
            table,
            "| {n} | {:.2} s | {:.3} s | {:.0} MiB | {:.3} s | {:.0} MiB | {calls} |",
            apply.wall.as_secs_f64(),
            median(&noop, |m| m.wall.as_secs_f64()),
            median(&noop, |m| m.peak_kib as f64) / 1024.0,
            median(&drifted, |m| m.wall.as_secs_f64()),
            median(&drifted, |m| m.peak_kib as f64) / 1024.0,
        );
        eprintln!("{n}: done");
    }
    println!("{table}");
    println!(
        "Medians of {runs} runs per figure; 1% drift = TTL changed out of band on 1% of the records."
    );
}

struct Measure {
    wall: Duration,
    peak_kib: i64,
}

/// Runs `cairn ARGS DIR` and returns its wall time and peak RSS (from wait4).
fn run(cairn: &Path, args: &[&str], dir: &Path, expect_code: i32) -> Measure {
    let start = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also reports its rusage
    let child = Command::new(cairn)
        .args(args)
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        .spawn()
        .expect("spawn cairn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, zero-initialised, filled by the kernel for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4 failed");
    let code = libc::WEXITSTATUS(status);
    if code != expect_code && !(expect_code == 0 && args[0] == "apply" && code == 0) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("cairn {args:?} exited {code} (expected {expect_code}): {err}");
    }
    Measure {
        wall,
        peak_kib: usage.ru_maxrss,
    }
}

fn api_calls_of_plan(cairn: &Path, dir: &Path) -> String {
    let out = Command::new(cairn)
        .args(["plan", "--json"])
        .arg(dir)
        .output()
        .expect("plan");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["api_calls"]["sandbox"]
        .as_u64()
        .map_or("?".into(), |n| n.to_string())
}

fn median(ms: &[Measure], f: impl Fn(&Measure) -> f64) -> f64 {
    let mut v: Vec<f64> = ms.iter().map(f).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Changes the TTL of `count` records in the sandbox, spread evenly.
fn drift(sandbox_dir: &Path, count: usize) {
    let sb = Sandbox::open(sandbox_dir, Cloud::ALL).expect("open sandbox");
    sb.call(|cloud| {
        let records: Vec<_> = cloud
            .objects
            .iter()
            .filter(|(_, o)| matches!(o.attrs, Attrs::Record(_)))
            .collect();
        let step = (records.len() / count.max(1)).max(1);
        let ops = records
            .iter()
            .step_by(step)
            .take(count)
            .map(|(id, o)| {
                let mut o = (*o).clone();
                if let Attrs::Record(r) = &mut o.attrs {
                    r.ttl += 1;
                }
                SandboxOp::Put {
                    id: (*id).clone(),
                    object: Box::new(o),
                }
            })
            .collect();
        (ops, ())
    })
    .expect("drift the sandbox");
}

/// Writes a stack of about `n` resources: zones of 1,000 records, one service deployment
/// per 100 resources, records pointing at deployments or at literal addresses.
pub fn generate(n: usize, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create stack dir");
    let groups = (n / RESOURCES_PER_GROUP).max(1);
    let records = n.saturating_sub(groups).max(1);
    let zones = records.div_ceil(RECORDS_PER_ZONE);
    let records = n.saturating_sub(groups + zones).max(1);
    let clouds = ["aws", "azure", "gcp"];
    let mut s = String::from("[stack]\nname = \"bench\"\nenvironment = \"bench\"\n\n");
    for g in 0..groups {
        let cloud = clouds[g % 3];
        let _ = write!(
            s,
            "[[service]]\nname = \"svc{g}\"\n  [[service.deployment]]\n  cloud = \"{cloud}\"\n  region = \"region-{r}\"\n  min = 2\n  max = 10\n  endpoint = \"10.{a}.{b}.1\"\n\n",
            r = g % 7,
            a = (g / 250) % 256,
            b = g % 250
        );
    }
    std::fs::write(dir.join("services.toml"), &s).expect("write services");
    for z in 0..zones {
        let mut s = format!(
            "[[zone]]\nname = \"z{z}.bench.example\"\ncloud = \"{}\"\n\n",
            clouds[z % 3]
        );
        let first = z * RECORDS_PER_ZONE;
        for r in first..(first + RECORDS_PER_ZONE).min(records) {
            if r % 10 == 0 {
                let _ = write!(
                    s,
                    "[[record]]\nzone = \"z{z}.bench.example\"\nname = \"r{r}\"\ntype = \"A\"\nttl = 60\ntarget = \"svc{g}@{c}/region-{rg}\"\n\n",
                    g = r % groups,
                    c = clouds[(r % groups) % 3],
                    rg = (r % groups) % 7
                );
            } else {
                let _ = write!(
                    s,
                    "[[record]]\nzone = \"z{z}.bench.example\"\nname = \"r{r}\"\ntype = \"A\"\nttl = 300\nvalues = [\"192.0.{}.{}\"]\n\n",
                    (r / 250) % 256,
                    r % 250 + 1
                );
            }
        }
        std::fs::write(dir.join(format!("zone{z}.toml")), s).expect("write zone");
    }
}

/// `n` A records in one zone (the first `ttl_changed` with TTL 60, the rest 300), after
/// `header` (the `[stack]`, the provider block and the zone).
fn records_stack(header: &str, zone: &str, n: usize, ttl_changed: usize) -> String {
    let mut s = header.to_string();
    for i in 0..n {
        let ttl = if i < ttl_changed { 60 } else { 300 };
        let _ = write!(
            s,
            "[[record]]\nzone = \"{zone}\"\nname = \"r{i}\"\ntype = \"A\"\nttl = {ttl}\nvalues = [\"10.{}.{}.{}\"]\n\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    s
}

/// One whole `cairn ARGS DIR` run for the provider benchmarks: cairn's own count of
/// `provider`'s API calls (under `key` in its JSON), the server's count of the requests it
/// got meanwhile, and the wall time.
fn timed(
    dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
    (key, provider): (&str, &str),
    server: &dyn Fn() -> u64,
) -> (u64, u64, f64) {
    let cairn = std::env::current_exe()
        .expect("own path")
        .with_file_name("cairn");
    let before = server();
    let start = Instant::now();
    let out = Command::new(&cairn)
        .args(args)
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run cairn");
    let wall = start.elapsed().as_secs_f64();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cairn {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v[key][provider].as_u64().unwrap_or(0),
        server() - before,
        wall,
    )
}

/// Create N records, refresh them, change 1% of them; returns the three measurements.
fn three_figures(
    dir: &Path,
    header: &str,
    n: usize,
    env: &[(&str, String)],
    provider: &str,
    server: &dyn Fn() -> u64,
) -> [(u64, u64, f64); 3] {
    let write = |changed: usize| {
        let s = records_stack(header, "bench.example.com", n, changed);
        std::fs::write(dir.join("stack.toml"), s).unwrap();
    };
    let apply = ["apply", "--auto-approve", "--json"];
    write(0);
    let b = timed(dir, &apply, env, ("apply_api_calls", provider), server);
    let a = timed(
        dir,
        &["plan", "--json"],
        env,
        ("api_calls", provider),
        server,
    );
    write(n / 100);
    let c = timed(dir, &apply, env, ("apply_api_calls", provider), server);
    [a, b, c]
}

/// The three figures as a table; `token`: the server counts the token request too.
fn print_figures(title: &str, token: bool, [a, b, c]: [(u64, u64, f64); 3]) {
    let (alone, with_refresh) = if token {
        (" (incl. the token)", " (incl. refresh and token)")
    } else {
        ("", " (incl. refresh)")
    };
    println!("| {title} | cairn's count | fake's count (whole command) | whole command wall |");
    println!("|---|---:|---:|---:|");
    println!("| (a) refresh | {} | {}{alone} | {:.2} s |", a.0, a.1, a.2);
    println!(
        "| (b) create all (apply's calls) | {} | {}{with_refresh} | {:.2} s |",
        b.0, b.1, b.2
    );
    println!(
        "| (c) change 1% (apply's calls) | {} | {}{with_refresh} | {:.2} s |",
        c.0, c.1, c.2
    );
}

/// The Azure fake (`cairn::testing::azure_dns`, in this process, every request checked against
/// the official contracts, which counts the requests), a stack directory, the stack's header
/// (`[stack]` and `[provider.azure]` on the fake) and the environment that signs cairn in.
struct AzureBench {
    fake: cairn::testing::azure_dns::AzureDnsFake,
    dir: PathBuf,
    header: String,
    env: Vec<(&'static str, String)>,
    _tmp: tempfile::TempDir,
}

impl AzureBench {
    fn start(o: cairn::testing::azure_dns::Options) -> AzureBench {
        use cairn::testing::azure_dns::AzureDnsFake;
        use cairn::testing::contract::Contract;
        let fake = AzureDnsFake::start(Contract::azure_dns(), o.clone());
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("stack");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = tmp.path().join("ca.pem");
        std::fs::write(&ca, &fake.ca_pem).unwrap();
        let header = format!(
            "[stack]\nname = \"bench\"\nenvironment = \"bench\"\n\n[provider.azure]\nsubscription_id = \"{}\"\nresource_group = \"{}\"\nendpoint = \"{}\"\nrequests_per_second = 1000\nburst = 1000\n\n",
            o.subscription, o.resource_group, fake.url
        );
        let env = vec![
            ("SSL_CERT_FILE", ca.display().to_string()),
            ("AZURE_AUTHORITY_HOST", fake.url.clone()),
            (
                "AZURE_TENANT_ID",
                "00000000-0000-0000-0000-0000000000aa".into(),
            ),
            ("AZURE_CLIENT_ID", "bench".into()),
            ("AZURE_CLIENT_SECRET", o.token.clone()),
        ];
        AzureBench {
            fake,
            dir,
            header,
            env,
            _tmp: tmp,
        }
    }

    fn requests(&self) -> u64 {
        self.fake
            .counts()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn assert_in_contract(&self) {
        assert!(
            self.fake.violations().is_empty(),
            "requests outside the contract: {:?}",
            self.fake.violations()
        );
    }
}

/// The same three figures as `aws`, against the Azure DNS fake. Azure DNS has no batch API:
/// one request per record set written.
fn azure(n: usize) {
    let b = AzureBench::start(cairn::testing::azure_dns::Options {
        page_size: 1000,
        ..Default::default()
    });
    let header = format!(
        "{}[[zone]]\nname = \"bench.example.com\"\ncloud = \"azure\"\n\n",
        b.header
    );
    let figures = three_figures(&b.dir, &header, n, &b.env, "azure", &|| b.requests());
    b.assert_in_contract();
    print_figures(
        &format!("{n} records against the Azure DNS fake"),
        true,
        figures,
    );
}

/// API calls to refresh, adopt and resize, and resize again N scale sets against the Azure fake.
fn azure_scale_sets(n: usize) {
    use cairn::testing::azure_compute::ScaleSet;
    let b = AzureBench::start(cairn::testing::azure_dns::Options {
        operation_time: Duration::ZERO,
        ..Default::default()
    });
    for i in 0..n {
        b.fake
            .add_scale_set(ScaleSet::new(&format!("s{i}"), "westeurope", 1));
    }
    let write = |desired: u32| {
        let mut s = b.header.clone();
        for i in 0..n {
            let _ = write!(
                s,
                "[[service]]\nname = \"s{i}\"\n  [[service.deployment]]\n  cloud = \"azure\"\n  region = \"westeurope\"\n  min = 1\n  max = 9\n  desired = {desired}\n\n"
            );
        }
        std::fs::write(b.dir.join("stack.toml"), s).unwrap();
    };
    let run =
        |args: &[&str], key: &str| timed(&b.dir, args, &b.env, (key, "azure"), &|| b.requests());
    write(2);
    let refresh = run(&["plan", "--json"], "api_calls");
    let adopt = run(&["apply", "--auto-approve", "--json"], "apply_api_calls");
    write(3);
    let resize = run(&["apply", "--auto-approve", "--json"], "apply_api_calls");
    b.assert_in_contract();
    assert!((0..n).all(|i| b.fake.scale_set(&format!("s{i}")).unwrap().capacity == 3));
    println!(
        "| {n} scale sets against the Azure fake | cairn's count | fake's count (whole command) | whole command wall |"
    );
    println!("|---|---:|---:|---:|");
    for (what, (calls, fake, wall), incl) in [
        ("(a) refresh", refresh, "the token"),
        (
            "(b) adopt and resize all (apply's calls)",
            adopt,
            "refresh and token",
        ),
        (
            "(c) resize all (apply's calls)",
            resize,
            "refresh and token",
        ),
    ] {
        println!("| {what} | {calls} | {fake} (incl. {incl}) | {wall:.2} s |");
    }
}

/// The same three figures against the Google fake (`cairn::testing::google`, in this process,
/// every request checked against the discovery documents), with the project's default Cloud
/// DNS quota of 100 additions and 100 deletions per change.
fn gcp(n: usize) {
    use cairn::testing::google::{GoogleFake, Options};
    use std::sync::atomic::Ordering;
    let o = Options {
        page_size: 1000,
        ..Options::default()
    };
    let fake = GoogleFake::start(o.clone());
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let key = tmp.path().join("key.json");
    std::fs::write(&key, fake.service_account_json()).unwrap();
    let header = format!(
        "[stack]\nname = \"bench\"\nenvironment = \"bench\"\n\n[provider.gcp]\nproject = \"{}\"\nendpoint = \"{}\"\nrequests_per_second = 1000\nburst = 1000\n\n[[zone]]\nname = \"bench.example.com\"\ncloud = \"gcp\"\n\n",
        o.project, fake.url
    );
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string())];
    let server = || fake.counts().requests.load(Ordering::Relaxed);
    let figures = three_figures(&dir, &header, n, &env, "gcp", &server);
    assert!(
        fake.violations().is_empty(),
        "requests outside the contract: {:?}",
        fake.violations()
    );
    let changes = fake.changes("bench.example.com.").len();
    print_figures(
        &format!("{n} records against the Google fake"),
        false,
        figures,
    );
    println!(
        "\n{changes} Cloud DNS changes in all (at most 100 additions and 100 deletions each)."
    );
}

/// API calls and wall time against moto (from the project's `.venv`), counted by cairn and
/// cross-checked by a counting proxy: (a) refresh N records, (b) create them, (c) change 1%.
fn aws(n: usize) {
    use cairn::testing::faultproxy::{FaultProxy, Faults};
    let moto = std::env::var_os("CAIRN_MOTO_SERVER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
        });
    assert!(
        moto.exists(),
        "moto_server not found at {}: run tests/run.sh once (it installs moto into .venv)",
        moto.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{port}"), Faults::default(), 0);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    let header = format!(
        "[stack]\nname = \"bench\"\nenvironment = \"bench\"\n\n[provider.aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\n[[zone]]\nname = \"bench.example.com\"\ncloud = \"aws\"\n\n",
        proxy.url
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "bench".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "bench".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let requests = || proxy.requests();
    let [
        (a_calls, a_proxy, a_wall),
        (b_calls, b_proxy, b_wall),
        (c_calls, c_proxy, c_wall),
    ] = three_figures(&dir, &header, n, &env, "aws", &requests);
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "| {n} records against moto | cairn's count | proxy's count (whole command) | target | whole command wall |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!("| (a) refresh | {a_calls} | {a_proxy} | ≤ 40 | {a_wall:.2} s |");
    println!(
        "| (b) create all (apply's calls) | {b_calls} | {b_proxy} (incl. refresh) | ≤ 25 | {b_wall:.2} s |"
    );
    println!(
        "| (c) change 1% (apply's calls) | {c_calls} | {c_proxy} (incl. refresh) | ≤ 3 | {c_wall:.2} s |"
    );
    println!(
        "\nA per-resource engine makes one call per record: {n} for (b), {} for (c).",
        n / 100
    );
}
