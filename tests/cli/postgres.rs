//! The postgres state backend against a real PostgreSQL: one throwaway cluster for the test
//! process (src/testing/postgres.rs), a database per test. Locking with holder info,
//! --lock-timeout, migration both ways, TLS, a connection dropped mid-apply, fencing.

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cairn::testing::postgres::PgCluster;

use crate::Work;

/// The cluster shared by this process's tests. Missing PostgreSQL: a failure in CI, a loud
/// skip elsewhere (returns None).
pub fn cluster() -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(PgCluster::start) {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(std::env::var("CI").is_err(), "{e}");
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// The quickstart with its state in a new database; returns the work dir and the URL.
pub fn pg_quickstart(prefix: &str) -> Option<(Work, String)> {
    let url = cluster()?.create_db(prefix);
    let w = Work::quickstart();
    set_backend(&w, "shop", &format!("kind = \"postgres\"\nurl = \"{url}\""));
    Some((w, url))
}

/// Replaces the `[backend]` table's body in `DIR/stack.toml`.
pub fn set_backend(w: &Work, dir: &str, body: &str) {
    let path = w.path(&format!("{dir}/stack.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[backend]").unwrap() + "[backend]\n".len();
    let end = start + text[start..].find("\n\n").unwrap();
    std::fs::write(&path, format!("{}{body}{}", &text[..start], &text[end..])).unwrap();
}

fn holder_normalized(stderr: &str, pid: u32) -> String {
    let s = stderr.replace(&pid.to_string(), "PID");
    let Some(start) = s.find("(pid PID on ") else {
        return s;
    };
    let end = s[start..].find(')').map_or(s.len(), |e| start + e + 1);
    format!("{}(pid PID on HOST, since TIME){}", &s[..start], &s[end..])
}

/// Starts a slow apply; returns once it holds the lock.
fn slow_apply(w: &Work, latency_ms: u32) -> std::process::Child {
    let child = w
        .cmd(&["apply", "shop", "--auto-approve"])
        .env("CAIRN_SANDBOX_LATENCY_MS", latency_ms.to_string())
        .env("CAIRN_SANDBOX_BATCH", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let start = Instant::now();
    while w.run(&["state", "unlock", "shop"]).code == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the apply ended ({status}) before it was seen holding the lock:\n{err}");
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never locked");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn two_applies_on_one_stack_one_waits_or_fails_naming_the_holder() {
    let Some((w, url)) = pg_quickstart("locks") else {
        return;
    };
    let mut first = slow_apply(&w, 150);
    // At once: refused, naming the holder exactly as the local backend does.
    let r = w.ok(&["apply", "shop", "--auto-approve"], 1);
    insta::assert_snapshot!("pg_lock_held", holder_normalized(&r.stderr, first.id()));
    // Waiting: the second runs after the first and finds nothing left to do.
    let r = w.ok(
        &["apply", "shop", "--auto-approve", "--lock-timeout", "60s"],
        0,
    );
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert!(first.wait().unwrap().success());
    let c = cluster().unwrap();
    let db = PgCluster::db_of(&url);
    // One writer at a time: every batch was written by one of the two applies, the second
    // writing nothing (it found nothing to do), and the serial has no gaps.
    let writers = c.psql(
        db,
        "SELECT count(DISTINCT written_by->>'pid'), count(*), max(serial) FROM cairn_state_history",
    );
    let parts: Vec<&str> = writers.split('|').collect();
    assert_eq!(parts[0], "1", "{writers}");
    assert_eq!(parts[1], parts[2], "{writers}");
    let history = w.json(&["state", "history", "shop", "--limit", "1000"]);
    assert_eq!(history.as_array().unwrap().len().to_string(), parts[1]);
    assert_eq!(history[0]["by"]["command"], "cairn apply");
    // Released cleanly: nothing reads as interrupted, nothing is left locked.
    assert_eq!(c.psql(db, "SELECT count(*) FROM cairn_locks"), "0");
    let r = w.ok(&["plan", "shop"], 0);
    assert!(!r.stderr.contains("interrupted"), "{}", r.stderr);
}

#[test]
fn migrate_local_to_postgres_and_back_loses_nothing() {
    let Some(c) = cluster() else { return };
    let url = c.create_db("migrate");
    let w = Work::quickstart();
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    let local = w.json(&["show", "shop"]);
    let r = w.json(&[
        "state", "migrate", "shop", "--to", "postgres", "--url", &url,
    ]);
    assert_eq!(r["verified"], true);
    assert_eq!(r["to"], "postgres `shop/production`");
    assert_eq!(
        r["resources"].as_u64().unwrap() as usize,
        local["resources"].as_object().unwrap().len()
    );
    // Again: the destination holds state now, and is kept unless --force.
    let again = w.ok(
        &[
            "state", "migrate", "shop", "--to", "postgres", "--url", &url,
        ],
        1,
    );
    assert!(
        again.stderr.contains("the destination already holds state"),
        "{}",
        again.stderr
    );
    // The stack switched to postgres sees the same state: nothing to do.
    set_backend(&w, "shop", &format!("kind = \"postgres\"\nurl = \"{url}\""));
    assert_eq!(w.json(&["show", "shop"]), local);
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    // And back, into a fresh directory.
    let r = w.json(&[
        "state", "migrate", "shop", "--to", "local", "--path", "back",
    ]);
    assert_eq!(r["verified"], true);
    assert_eq!(
        r["serial"],
        w.json(&["state", "history", "shop"])[0]["serial"]
    );
    set_backend(&w, "shop", "kind = \"local\"\npath = \"back\"");
    assert_eq!(w.json(&["show", "shop"]), local);
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
}

#[test]
fn a_connection_dropped_mid_apply_corrupts_nothing_and_the_next_run_converges() {
    let Some((w, url)) = pg_quickstart("dropped") else {
        return;
    };
    let c = cluster().unwrap();
    let db = PgCluster::db_of(&url);
    let first = slow_apply(&w, 100);
    let first_pid = first.id();
    // Let it complete a few changes, then end its session from the server side.
    let start = Instant::now();
    while c
        .psql(
            db,
            "SELECT count(*) FROM cairn_state_history WHERE ops::text LIKE '%\"put\"%'",
        )
        .parse::<u32>()
        .unwrap()
        < 2
    {
        assert!(start.elapsed() < Duration::from_secs(20), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ended = c.psql(
        db,
        // This database's apply only: other tests' applies share the cluster.
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'cairn apply' AND datname = current_database()",
    );
    assert_eq!(ended, "1");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("state::postgres"), "{stderr}");
    // What was recorded is consistent and is exactly the sandbox's resources it names; the
    // next run finishes the job, and the one after has nothing to do.
    let recorded = w.json(&["state", "list", "shop"]);
    assert!(!recorded.as_array().unwrap().is_empty());
    // The row naming the ended session's holder was left: the next run says it was interrupted.
    let r = w.ok(&["apply", "shop", "--auto-approve"], 0);
    assert_interrupted(&r.stderr, &format!("pid {first_pid} "));
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert!(!r.stderr.contains("interrupted"), "{}", r.stderr);
    let sandbox = w.json(&["sandbox", "list", "-C", "shop"]);
    let state = w.json(&["show", "shop"]);
    assert_eq!(
        sandbox["objects"].as_object().unwrap().len(),
        state["resources"].as_object().unwrap().len(),
        "no duplicate or orphan: {sandbox}"
    );
}

#[test]
fn tables_from_before_the_interrupted_column_are_upgraded_in_place() {
    let Some((w, url)) = pg_quickstart("upgrade") else {
        return;
    };
    let c = cluster().unwrap();
    let db = PgCluster::db_of(&url);
    // cairn_locks as the first release created it, with the row of a holder that died.
    c.psql(
        db,
        "CREATE TABLE cairn_locks (stack text NOT NULL, environment text NOT NULL, \
         holder jsonb NOT NULL, backend_pid integer NOT NULL, fence bigint, \
         PRIMARY KEY (stack, environment)); \
         INSERT INTO cairn_locks VALUES ('shop', 'production', '{\"pid\": 4242, \
         \"host\": \"old-laptop\", \"command\": \"cairn apply\", \
         \"since\": \"2026-11-01T10:00:00Z\"}', 1, NULL)",
    );
    let r = w.ok(&["apply", "shop", "--auto-approve"], 0);
    assert_interrupted(&r.stderr, "pid 4242 on old-laptop");
    assert_eq!(
        c.psql(
            db,
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'cairn_locks' AND column_name = 'interrupted'"
        ),
        "1"
    );
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert!(!r.stderr.contains("interrupted"), "{}", r.stderr);
}

#[test]
fn a_replica_paused_past_its_lease_deletes_nothing() {
    let Some((w, url)) = pg_quickstart("fencedelete") else {
        return;
    };
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    let before = sandbox_len(&w);
    let (stack, _) = cairn::config::load_stack(&w.path("shop"), None).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = rt.block_on(async {
        let (a, b) = two_replicas(&url).await;
        let lease = Duration::from_millis(500);
        let old = a
            .acquire("shop", "production", lease)
            .await
            .unwrap()
            .unwrap();
        // A plan of deletes only (they write no intent first), made under the lease...
        let mut planned = cairn::engine::plan(cairn::engine::PlanRequest {
            stack: &stack,
            filter: &Default::default(),
            lock_timeout: Duration::ZERO,
            destroy: true,
            command: "cairn enforce",
            fence: Some(old),
        })
        .await
        .unwrap_or_else(|_| panic!("plan"));
        assert_eq!(planned.plan.changes.len(), before);
        // ...and applied after pausing past it, once another replica has taken over.
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        assert!(
            b.acquire("shop", "production", lease)
                .await
                .unwrap()
                .is_some()
        );
        cairn::apply::apply(
            &planned.plan,
            &planned.providers,
            planned.state.as_mut(),
            4,
            &NoProgress,
        )
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string()
    });
    assert!(
        refused.starts_with("write refused: fencing token"),
        "{refused}"
    );
    assert_eq!(
        sandbox_len(&w),
        before,
        "a fenced replica deleted resources"
    );
}

/// Asserts that `stderr` notes the previous `cairn apply`, whose holder text starts with
/// `holder` (e.g. `pid 4242 on laptop`), as interrupted.
fn assert_interrupted(stderr: &str, holder: &str) {
    let note = format!("the previous `cairn apply` ({holder}");
    assert!(
        stderr.contains(&note) && stderr.contains("was interrupted"),
        "{stderr}"
    );
}

/// How many objects the sandbox of `shop` holds.
fn sandbox_len(w: &Work) -> usize {
    w.json(&["sandbox", "list", "-C", "shop"])["objects"]
        .as_object()
        .unwrap()
        .len()
}

/// Lease clients of two enforce replicas, `a` and `b`, on the database at `url`.
async fn two_replicas(url: &str) -> (cairn::state::lease::Leases, cairn::state::lease::Leases) {
    use cairn::state::lease::{Leases, Replica};
    let db = cairn::state::pg::Db {
        url: Some(url.into()),
        ca_file: None,
    };
    let replica = |id: &str| Replica {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        api: "http://x".into(),
    };
    (
        Leases::connect(&db, replica("a")).await.unwrap(),
        Leases::connect(&db, replica("b")).await.unwrap(),
    )
}

struct NoProgress;

impl cairn::apply::Progress for NoProgress {
    fn start(&self, _: usize) {}
    fn done(&self, _: &cairn::plan::PlannedChange, _: &Result<(), String>) {}
    fn finish(&self) {}
}

#[test]
fn tls_verifies_the_server_against_the_ca_file() {
    use cairn::testing::postgres::TLS_ROLE;
    let Some(c) = cluster() else { return };
    let tls = c.tls().expect("the test cluster serves TLS");
    // The role is admitted over TLS only (pg_hba.conf): a plain connection is rejected.
    let plain = c.create_db_owned("tls", TLS_ROLE);
    let url = plain.replace("sslmode=disable", "sslmode=require");
    let w = Work::quickstart();
    let backend = |url: &str, ca: &std::path::Path| {
        format!(
            "kind = \"postgres\"\nurl = \"{url}\"\nca_file = \"{}\"",
            ca.display()
        )
    };
    set_backend(&w, "shop", &backend(&plain, &tls.ca_file));
    let r = w.ok(&["plan", "shop"], 1);
    assert!(r.stderr.contains("pg_hba.conf rejects"), "{}", r.stderr);
    set_backend(&w, "shop", &backend(&url, &tls.ca_file));
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    let r = w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    // A CA that did not sign the server's certificate: refused, saying why.
    let other = tls.dir.join("other-ca.pem");
    std::fs::write(&other, cairn::testing::postgres::self_signed_ca_pem()).unwrap();
    set_backend(&w, "shop", &backend(&url, &other));
    let r = w.ok(&["plan", "shop"], 1);
    assert!(
        r.stderr.contains("state::postgres") && r.stderr.contains("invalid peer"),
        "{}",
        r.stderr
    );
}

/// Fencing at the library level: once a newer lease exists, a write under the old token is
/// refused by the database, whatever the old holder believes.
#[test]
fn a_write_under_a_lost_lease_is_refused() {
    use cairn::state::{self, Location, StateOp};
    let Some(c) = cluster() else { return };
    let url = c.create_db("fence");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = state::pg::Db {
            url: Some(url.clone()),
            ca_file: None,
        };
        let (a, b) = two_replicas(&url).await;
        let lease = Duration::from_millis(500);
        let old = a.acquire("s", "e", lease).await.unwrap().unwrap();
        assert_eq!(b.acquire("s", "e", lease).await.unwrap(), None, "held");
        let at = Location::Postgres {
            db: db.clone(),
            stack: "s".into(),
            environment: "e".into(),
        };
        let open = state::Open {
            command: "cairn enforce",
            lock_timeout: Duration::ZERO,
            fence: Some(old),
        };
        let mut st = state::open_locked(&at, open).await.unwrap();
        st.write(vec![StateOp::Init {
            lineage: "l".into(),
        }])
        .await
        .unwrap();
        // Paused past its lease: another replica takes over.
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let new = b.acquire("s", "e", lease).await.unwrap().unwrap();
        assert_eq!(new, old + 1);
        let refused = st.write(vec![StateOp::ClearPending]).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "write refused: fencing token {old} is no longer current for this stack (another replica took the lease)"
            )
        );
        // Its renewal fails too, so it stops leading.
        assert!(!a.renew("s", "e", old, lease).await.unwrap());
        // The new leader takes the state lock the old one still holds (its session is ended)
        // and writes.
        let mut st2 = state::open_locked(
            &at,
            state::Open {
                fence: Some(new),
                lock_timeout: Duration::from_secs(5),
                ..open
            },
        )
        .await
        .unwrap();
        assert_eq!(st2.serial(), 1);
        st2.write(vec![StateOp::ClearPending]).await.unwrap();
        st2.unlock().await;
        drop(st);
    });
}
