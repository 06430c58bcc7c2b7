//! Benchmarks of `cairn enforce` replicas sharing stacks through PostgreSQL
//! (docs/benchmarks.md):
//!
//!   cairn-ha-bench takeover [--trials 20] [--lease-ms 3000] [--cut]
//!       Two replicas on one stack. Each trial kills the leader with SIGKILL (or, with --cut,
//!       cuts its database connection through a TCP proxy) and times how long until the other
//!       holds the stack's lease (a new fencing token in the database), then brings the old
//!       leader back as a follower.
//!   cairn-ha-bench capacity [--stacks 50,100,200]
//!       One replica, N sandbox stacks (copies of examples/quickstart) already applied, every
//!       drift interval 30 s: the time one replica takes to reconcile all N once (its start),
//!       and so how many stacks it reconciles within 30 s.
//!
//! Both run the real `cairn` binary next to this one against a throwaway PostgreSQL cluster
//! (src/testing/postgres.rs; Debian's postgresql package).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn::testing::postgres::PgCluster;
use cairn::testing::tcpproxy::TcpProxy;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num =
        |name: &str, default: u64| flag(name).map_or(default, |v| v.parse().expect("a number"));
    match args.first().map(String::as_str) {
        Some("takeover") => takeover(
            num("--trials", 20) as usize,
            Duration::from_millis(num("--lease-ms", 3000)),
            args.iter().any(|a| a == "--cut"),
        ),
        Some("capacity") => capacity(
            &flag("--stacks")
                .unwrap_or_else(|| "50,100,200".into())
                .split(',')
                .map(|n| n.parse().expect("a number"))
                .collect::<Vec<usize>>(),
        ),
        _ => {
            eprintln!(
                "usage: cairn-ha-bench takeover [--trials N] [--lease-ms MS] [--cut] | capacity [--stacks N,N,...]"
            );
            std::process::exit(1);
        }
    }
}

fn cairn() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name("cairn")
}

/// Copies examples/quickstart to `dir/NAME` with the postgres backend and stack NAME.
fn stack(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let dst = dir.join(name);
    for sub in ["", "load"] {
        std::fs::create_dir_all(dst.join(sub)).expect("stack dir");
        for e in std::fs::read_dir(src.join(sub)).expect("quickstart") {
            let p = e.expect("entry").path();
            if p.is_file() {
                std::fs::copy(&p, dst.join(sub).join(p.file_name().expect("name"))).expect("copy");
            }
        }
    }
    let toml = dst.join("stack.toml");
    let text = std::fs::read_to_string(&toml)
        .expect("stack.toml")
        .replace("name = \"shop\"", &format!("name = \"{name}\""))
        .replace("kind = \"local\"", "kind = \"postgres\" #");
    std::fs::write(toml, text).expect("stack.toml");
    dst
}

struct Replica {
    child: Child,
    api: std::net::SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(dir: &Path, id: &str, stacks: &[String], url: &str, lease: Duration) -> Replica {
    let api = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let child = Command::new(cairn())
        .current_dir(dir)
        .args(["enforce"])
        .args(stacks)
        .args(["--listen", &api.to_string(), "--replica-id", id])
        .args(["--lease", &format!("{}ms", lease.as_millis())])
        .args(["--zone-interval", "30s", "--record-interval", "30s"])
        .args(["--group-interval", "30s"])
        .env("CAIRN_PG_URL", url)
        .env("CAIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{id}.log"))).expect("log"))
        .spawn()
        .expect("start cairn enforce");
    Replica { child, api }
}

/// (holder, token) of a stack's lease, when current.
fn lease_of(c: &PgCluster, db: &str, stack: &str) -> Option<(String, i64)> {
    // Before the first replica created cairn's tables, there is no lease.
    let out = c
        .try_psql(
            db,
            &format!(
                "SELECT holder || '|' || token FROM cairn_leases WHERE stack = '{stack}' AND expires_at > now()"
            ),
        )
        .ok()?;
    let (h, t) = out.split_once('|')?;
    Some((h.to_string(), t.parse().ok()?))
}

fn wait<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn takeover(trials: usize, lease: Duration, cut: bool) {
    let c = PgCluster::start().expect("a PostgreSQL cluster");
    let url = c.create_db("bench");
    let db = PgCluster::db_of(&url).to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    stack(dir.path(), "shop");
    let stacks = vec!["shop".to_string()];
    let upstream = format!("127.0.0.1:{}", c.port).parse().expect("addr");
    // Each replica reaches the database through its own proxy, so one can be cut alone.
    let proxies = [TcpProxy::start(upstream), TcpProxy::start(upstream)];
    let urls: Vec<String> = proxies
        .iter()
        .map(|p| url.replace(&format!(":{}/", c.port), &format!(":{}/", p.port)))
        .collect();
    let ids = ["a", "b"];
    let mut replicas: Vec<Option<Replica>> = ids
        .iter()
        .zip(&urls)
        .map(|(id, u)| Some(replica(dir.path(), id, &stacks, u, lease)))
        .collect();
    let mut times = Vec::new();
    for trial in 0..trials {
        let (leader, token) = wait(Duration::from_secs(60), || lease_of(&c, &db, "shop"));
        let i = ids
            .iter()
            .position(|id| *id == leader)
            .expect("a known replica");
        // Let the leader renew a random part of a period, as a real failure would.
        std::thread::sleep(Duration::from_millis(
            500 + fastrand::u64(0..lease.as_millis() as u64 / 4),
        ));
        let start = Instant::now();
        if cut {
            proxies[i].cut(true);
        } else {
            replicas[i] = None; // SIGKILL
        }
        let (next, _) = wait(Duration::from_secs(60), || {
            lease_of(&c, &db, "shop").filter(|(h, t)| *h != leader && *t > token)
        });
        let took = start.elapsed();
        eprintln!(
            "trial {trial}: {leader} → {next} in {:.3} s",
            took.as_secs_f64()
        );
        times.push(took.as_secs_f64());
        if cut {
            proxies[i].cut(false);
        } else {
            replicas[i] = Some(replica(dir.path(), ids[i], &stacks, &urls[i], lease));
        }
        std::thread::sleep(lease);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "takeover after {} ({} trials, lease {} ms): p50 {:.2} s, p99 {:.2} s, min {:.2} s, max {:.2} s",
        if cut {
            "a cut database connection"
        } else {
            "kill -9"
        },
        times.len(),
        lease.as_millis(),
        pct(0.5),
        pct(0.99),
        times[0],
        times[times.len() - 1]
    );
}

fn capacity(sizes: &[usize]) {
    let c = PgCluster::start().expect("a PostgreSQL cluster");
    for &n in sizes {
        let url = c.create_db("capacity");
        let db = PgCluster::db_of(&url).to_string();
        let dir = tempfile::tempdir().expect("temp dir");
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        for name in &names {
            stack(dir.path(), name);
        }
        let lease = Duration::from_secs(3);
        // First run: apply every stack, then stop cleanly (the leases are handed back).
        let first = replica(dir.path(), "warmup", &names, &url, lease);
        wait(Duration::from_secs(1800), || {
            let ready = c.try_psql(
                &db,
                "SELECT count(DISTINCT stack) FROM cairn_state_history WHERE ops::text LIKE '%\"init\"%'",
            );
            (ready.ok()?.parse::<usize>().ok()? == n).then_some(())
        });
        std::thread::sleep(Duration::from_secs(5));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(first.child.id() as i32, libc::SIGTERM) };
        drop(first);
        std::thread::sleep(lease + Duration::from_secs(1));
        // Measured: a fresh replica takes every stack and reconciles each once.
        let start = Instant::now();
        let r = replica(dir.path(), "measured", &names, &url, lease);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let stacks_url = format!("http://{}/stacks", r.api);
        let took = wait(Duration::from_secs(1800), || {
            let body = rt
                .block_on(async { reqwest::get(&stacks_url).await?.text().await })
                .ok()?;
            let list: serde_json::Value = serde_json::from_str(&body).ok()?;
            let ready = list
                .as_array()?
                .iter()
                .filter(|s| s["ready"] == true)
                .count();
            (ready == n).then(|| start.elapsed())
        });
        println!(
            "{n} stacks: one replica took them all and reconciled each once in {:.2} s: {:.0} stacks per 30 s",
            took.as_secs_f64(),
            n as f64 * 30.0 / took.as_secs_f64(),
        );
        drop(r);
    }
}
