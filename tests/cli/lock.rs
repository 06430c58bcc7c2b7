//! The state lock: a second writer fails at once naming the holder, or waits with
//! --lock-timeout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Work;

#[test]
fn second_apply_fails_at_once_naming_the_holder_or_waits() {
    let w = Work::quickstart();
    let mut first = apply_holding_the_lock(&w, 300);

    let t = Instant::now();
    let r = w.ok(&["apply", "shop", "--auto-approve"], 1);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "fails at once without --lock-timeout"
    );
    let pid = first.id().to_string();
    let normalized = r.stderr.replace(&pid, "PID");
    let normalized = regex_lite_replace(&normalized);
    insta::assert_snapshot!("lock_held", normalized);

    let unlock = w.ok(&["state", "unlock", "shop"], 1);
    assert!(
        unlock.stderr.contains(&format!("kill {pid}")),
        "{}",
        unlock.stderr
    );

    // Waiting works: the plan runs once the first apply finishes, and sees its result.
    let r = w.ok(
        &[
            "plan",
            "shop",
            "--detailed-exitcode",
            "--lock-timeout",
            "60s",
        ],
        0,
    );
    assert!(r.stdout.starts_with("No changes."), "{}", r.stdout);
    assert!(first.wait().unwrap().success());
}

/// Replaces the host name and timestamp in "(pid PID on HOST, since TIME)".
fn regex_lite_replace(s: &str) -> String {
    let Some(start) = s.find("(pid PID on ") else {
        return s.to_string();
    };
    let end = s[start..]
        .find(')')
        .map(|e| start + e + 1)
        .unwrap_or(s.len());
    format!("{}(pid PID on HOST, since TIME){}", &s[..start], &s[end..])
}

/// Starts an apply slowed by `latency_ms` per sandbox call; returns once it holds the lock.
fn apply_holding_the_lock(w: &Work, latency_ms: u32) -> std::process::Child {
    let child = w
        .cmd(&["apply", "shop", "--auto-approve"])
        .env("CAIRN_SANDBOX_LATENCY_MS", latency_ms.to_string())
        .env("CAIRN_SANDBOX_BATCH", "1")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while w.run(&["state", "unlock", "shop"]).code == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the apply never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Kills (-9) an apply that holds the lock; returns its pid.
fn kill_apply_holding_the_lock(w: &Work) -> u32 {
    let mut child = apply_holding_the_lock(w, 200);
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    pid
}

#[test]
fn a_killed_holder_never_blocks_and_its_record_is_reported_and_clearable() {
    let w = Work::quickstart();
    let pid = kill_apply_holding_the_lock(&w);
    // The OS released the lock: the next run proceeds at once and says what happened.
    let r = w.ok(&["plan", "shop"], 0);
    assert!(
        r.stderr
            .starts_with(&format!("note: the previous `cairn apply` (pid {pid} on "))
            && r.stderr.contains("was interrupted"),
        "{}",
        r.stderr
    );

    let pid = kill_apply_holding_the_lock(&w);
    let r = w.ok(&["state", "unlock", "shop"], 0);
    assert!(
        r.stdout.starts_with(&format!(
            "Cleared a stale lock left by `cairn apply` (pid {pid} on "
        )),
        "{}",
        r.stdout
    );
    assert_eq!(
        w.ok(&["state", "unlock", "shop"], 0).stdout,
        "The state is not locked.\n"
    );
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    w.ok(&["plan", "shop", "--detailed-exitcode"], 0);
}
