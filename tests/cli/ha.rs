//! Several `cairn enforce` replicas sharing stacks through a real PostgreSQL: one leader per
//! stack, takeover after kill -9, after a lost database connection and after a pause past
//! the lease (fenced: the paused leader writes nothing after the takeover), and stacks
//! spread across replicas and rebalanced as replicas join and leave. Leases of 1 s.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cairn::testing::postgres::PgCluster;
use cairn::testing::tcpproxy::TcpProxy;

use crate::Work;
use crate::postgres::{cluster, set_backend};

struct Replica {
    id: String,
    child: Child,
    api: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        // A stopped replica must be continued to be killed cleanly.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test shows what each replica last did (its work dir goes with it).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("--- replica {} log (last 60 lines) ---\n{tail}", self.id);
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(1500)))
        .build()
        .into()
}

impl Replica {
    fn start(w: &Work, id: &str, dirs: &[&str], url: &str) -> Replica {
        let api = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let listen = api.to_string();
        let log = w.path(&format!("{id}.log"));
        let mut args = vec!["enforce"];
        args.extend_from_slice(dirs);
        args.extend_from_slice(&[
            "--listen",
            &listen,
            "--lease",
            "1s",
            "--replica-id",
            id,
            "--record-interval",
            "1s",
        ]);
        let child = w
            .cmd(&args)
            .env("CAIRN_PG_URL", url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica {
            id: id.into(),
            child,
            api,
            log,
        }
    }

    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let r = agent()
            .get(&format!("http://{}{path}", self.api))
            .call()
            .ok()?;
        serde_json::from_str(&r.into_body().read_to_string().ok()?).ok()
    }

    /// This replica's view of the first stack: (role, leader id, token).
    fn leadership(&self) -> Option<(String, Option<String>, Option<i64>)> {
        let s = self.get("/status")?;
        let l = &s["leadership"];
        Some((
            l["role"].as_str()?.to_string(),
            l["leader"]["id"].as_str().map(String::from),
            l["token"].as_i64(),
        ))
    }

    fn leads(&self) -> bool {
        self.leadership()
            .is_some_and(|(role, _, _)| role == "leader")
    }

    /// Whether every thread of the process is stopped (a signal is delivered asynchronously).
    fn stopped(&self) -> bool {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks).unwrap().all(|t| {
            let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        })
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one replica among `rs` that leads, once every one of them answers and agrees on it.
fn sole_leader(rs: &[&Replica]) -> Option<(String, i64)> {
    let views: Vec<_> = rs.iter().filter_map(|r| r.leadership()).collect();
    if views.len() != rs.len() {
        return None;
    }
    let leaders: Vec<_> = views.iter().filter(|v| v.0 == "leader").collect();
    if leaders.len() != 1 {
        return None;
    }
    let (_, id, token) = leaders[0].clone();
    views
        .iter()
        .all(|v| v.1 == id && v.2 == token)
        .then(|| (id.unwrap(), token.unwrap()))
}

#[test]
fn one_leader_takes_over_after_a_lost_connection_kill_and_pause() {
    let Some(c) = cluster() else { return };
    let url = c.create_db("ha");
    let db = PgCluster::db_of(&url).to_string();
    let w = Work::quickstart();
    set_backend(&w, "shop", "kind = \"postgres\"");
    // p reaches the database through a proxy that can cut the network.
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", c.port).parse().unwrap());
    let proxied = url.replace(&format!(":{}/", c.port), &format!(":{}/", proxy.port));
    let p = Replica::start(&w, "p", &["shop"], &proxied);
    wait_for("p to lead and converge", Duration::from_secs(30), || {
        (p.leads() && p.get("/status")?["ready"] == true).then_some(())
    });
    let a = Replica::start(&w, "a", &["shop"], &url);
    let b = Replica::start(&w, "b", &["shop"], &url);
    let (first, _) = wait_for("followers to see p lead", Duration::from_secs(15), || {
        sole_leader(&[&p, &a, &b])
    });
    assert_eq!(first.0, "p");
    // Followers serve the read-only API and name the leader.
    let follower = a.get("/status").unwrap();
    assert_eq!(follower["leadership"]["role"], "follower");
    assert_eq!(
        follower["leadership"]["leader"]["api"],
        format!("http://{}", p.api)
    );
    let stacks = a.get("/stacks").expect("/stacks answers JSON");
    assert_eq!(stacks[0]["leadership"]["leader"]["id"], "p");

    // 1. p loses its database connection: it stops leading, another takes over.
    proxy.cut(true);
    let ((second, token2), took) =
        wait_for("a takeover after the cut", Duration::from_secs(10), || {
            sole_leader(&[&a, &b]).filter(|(id, _)| id != "p")
        });
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    assert!(token2 > first.1);
    wait_for("p to step down", Duration::from_secs(5), || {
        (p.leadership()?.0 == "follower").then_some(())
    });
    proxy.cut(false);

    // 2. kill -9 the leader: the other takes over.
    let (leader, other) = if second == "a" { (&a, &b) } else { (&b, &a) };
    leader.signal(libc::SIGKILL);
    let ((third, token3), took) =
        wait_for("a takeover after kill -9", Duration::from_secs(10), || {
            sole_leader(&[other, &p]).filter(|(id, _)| *id != second)
        });
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    assert!(token3 > token2);

    // 3. Pause the leader past its lease: the other takes over; the paused one, continued,
    // writes nothing under its old token and steps down.
    let (paused, survivor) = if third == other.id {
        (other, &p)
    } else {
        (&p, other)
    };
    // The sandbox stands in for a cloud, which a paused client does not block; but its
    // calls take a file lock across processes, and a replica frozen inside one would block
    // every other. So the leader is paused while the test holds that lock: anywhere in its
    // work with the database, never inside a sandbox call.
    let sandbox = std::fs::File::open(w.path("shop/.cairn/sandbox/production/lock")).unwrap();
    sandbox.lock().unwrap();
    paused.signal(libc::SIGSTOP);
    wait_for("the leader to stop", Duration::from_secs(5), || {
        paused.stopped().then_some(())
    });
    sandbox.unlock().unwrap();
    // Drift for the new leader to correct: a record deleted behind cairn's back.
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
    let ((fourth, token4), _) = wait_for(
        "a takeover of the paused leader",
        Duration::from_secs(20),
        || {
            survivor
                .leadership()
                .filter(|v| v.0 == "leader")
                .map(|v| (v.1.unwrap(), v.2.unwrap()))
        },
    );
    assert_eq!(fourth, survivor.id);
    assert!(token4 > token3);
    wait_for("the drift corrected", Duration::from_secs(15), || {
        let n: u32 = c
            .psql(
                &db,
                &format!("SELECT count(*) FROM cairn_state_history WHERE fence = {token4}"),
            )
            .parse()
            .ok()?;
        (n > 0).then_some(())
    });
    paused.signal(libc::SIGCONT);
    wait_for(
        "the paused leader to step down",
        Duration::from_secs(5),
        || (paused.leadership()?.0 == "follower").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(1));
    let late = c.psql(
        &db,
        &format!(
            "SELECT count(*) FROM cairn_state_history WHERE fence = {token3} AND serial > \
             (SELECT min(serial) FROM cairn_state_history WHERE fence = {token4})"
        ),
    );
    assert_eq!(late, "0", "the paused leader wrote after losing its lease");
    // Never two applies at once: the serial has no gaps or repeats across leaders.
    let serials = c.psql(
        &db,
        "SELECT count(*) = max(serial) FROM cairn_state_history",
    );
    assert_eq!(serials, "t");
}

/// Copies of the quickstart named shop1..shopN, each with its own sandbox.
fn stacks(w: &Work, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            let name = format!("shop{i}");
            let dst = w.path(&name);
            std::fs::create_dir_all(dst.join("load")).unwrap();
            for sub in ["", "load"] {
                for e in std::fs::read_dir(w.path("shop").join(sub)).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_file() {
                        std::fs::copy(&p, dst.join(sub).join(p.file_name().unwrap())).unwrap();
                    }
                }
            }
            let toml = dst.join("stack.toml");
            let text = std::fs::read_to_string(&toml)
                .unwrap()
                .replace("name = \"shop\"", &format!("name = \"{name}\""));
            std::fs::write(toml, text).unwrap();
            name
        })
        .collect()
}

/// Stacks led per replica id, as `r` sees them, once every stack has a leader.
fn spread(r: &Replica) -> Option<std::collections::BTreeMap<String, usize>> {
    let list = r.get("/stacks")?;
    let mut by = std::collections::BTreeMap::new();
    for s in list.as_array()? {
        *by.entry(s["leadership"]["leader"]["id"].as_str()?.to_string())
            .or_insert(0) += 1;
    }
    Some(by)
}

#[test]
fn stacks_spread_across_replicas_and_rebalance_as_they_join_and_leave() {
    let Some(c) = cluster() else { return };
    let url = c.create_db("spread");
    let w = Work::quickstart();
    set_backend(&w, "shop", "kind = \"postgres\"");
    let names = stacks(&w, 4);
    let dirs: Vec<&str> = names.iter().map(String::as_str).collect();
    let a = Replica::start(&w, "a", &dirs, &url);
    let b = Replica::start(&w, "b", &dirs, &url);
    let even = |r: &Replica, want: &[(&str, usize)]| {
        let by = spread(r)?;
        let want: std::collections::BTreeMap<String, usize> =
            want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        (by == want).then_some(())
    };
    wait_for("2 + 2", Duration::from_secs(20), || {
        even(&a, &[("a", 2), ("b", 2)])
    });
    // A third joins: it gets its share; nobody leads more than 2 (4 stacks / 3 replicas).
    let x = Replica::start(&w, "x", &dirs, &url);
    let (by, _) = wait_for("the newcomer to lead", Duration::from_secs(20), || {
        let by = spread(&x)?;
        (by.values().sum::<usize>() == 4 && by.get("x").is_some_and(|n| *n >= 1)).then_some(by)
    });
    assert!(by.values().all(|n| *n <= 2), "{by:?}");
    // One leaves (kill -9): the two left lead two each.
    drop(a);
    wait_for("2 + 2 again", Duration::from_secs(20), || {
        even(&b, &[("b", 2), ("x", 2)])
    });
    // Each stack was applied by exactly one replica at a time: serials have no gaps.
    let db = PgCluster::db_of(&url);
    for name in &names {
        let ok = c.psql(
            db,
            &format!(
                "SELECT count(*) = max(serial) FROM cairn_state_history WHERE stack = '{name}'"
            ),
        );
        let all = c.psql(
            db,
            "SELECT stack, count(*), max(serial) FROM cairn_state_history GROUP BY 1",
        );
        assert_eq!(ok, "t", "{name}: {all}");
    }
}
