//! The state lock: a second writer fails at once naming the holder, or waits with
//! --lock-timeout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Work;

#[test]
fn second_apply_fails_at_once_naming_the_holder_or_waits() {
    let w = Work::quickstart();
    let mut first = w
        .cmd(&["apply", "shop", "--auto-approve"])
        .env("CAIRN_SANDBOX_LATENCY_MS", "300")
        .env("CAIRN_SANDBOX_BATCH", "1")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while w.run(&["state", "unlock", "shop"]).code == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first apply never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

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
