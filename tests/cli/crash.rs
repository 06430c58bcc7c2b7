//! Crash safety: kill -9 an apply at many moments; the next apply converges with no
//! duplicate, orphaned or unrecorded resource.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use crate::Work;

const ZONES: usize = 3;
const RECORDS: usize = 300;
const GROUPS: usize = 6;

/// A stack of 3 zones × 300 records and 6 groups (909 resources); `changed` edits TTLs, drops a zone and
/// its records, and resizes groups, so an apply of it updates and deletes.
fn write_stack(w: &Work, changed: bool) {
    let mut s = String::from("[stack]\nname = \"crash\"\n\n");
    for g in 0..GROUPS {
        let min = if changed { 2 } else { 1 };
        s += &format!(
            "[[service]]\nname = \"svc{g}\"\n  [[service.deployment]]\n  cloud = \"{}\"\n  region = \"r{g}\"\n  min = {min}\n  max = 9\n  endpoint = \"192.0.2.{}\"\n\n",
            ["aws", "azure", "gcp"][g % 3],
            g + 1
        );
    }
    w.write("s/services.toml", &s);
    for z in 0..ZONES {
        let path = format!("s/zone{z}.toml");
        if changed && z == 2 {
            let _ = std::fs::remove_file(w.path(&path));
            continue;
        }
        let ttl = if changed && z == 0 { 60 } else { 300 };
        let mut s = format!(
            "[[zone]]\nname = \"z{z}.example\"\ncloud = \"{}\"\n\n",
            ["aws", "gcp", "azure"][z]
        );
        for r in 0..RECORDS {
            if r % 5 == 0 {
                s += &format!(
                    "[[record]]\nzone = \"z{z}.example\"\nname = \"r{r}\"\ntype = \"A\"\nttl = {ttl}\ntarget = \"svc{g}@{c}/r{g}\"\n\n",
                    g = r % GROUPS,
                    c = ["aws", "azure", "gcp"][(r % GROUPS) % 3]
                );
            } else {
                s += &format!(
                    "[[record]]\nzone = \"z{z}.example\"\nname = \"r{r}\"\ntype = \"A\"\nttl = {ttl}\nvalues = [\"198.51.{}.{}\"]\n\n",
                    r / 250,
                    r % 250 + 1
                );
            }
        }
        w.write(&path, &s);
    }
}

fn desired_count(changed: bool) -> usize {
    let zones = if changed { ZONES - 1 } else { ZONES };
    zones * (RECORDS + 1) + GROUPS
}

/// Sandbox objects by ID with their attributes (owner left out: it differs per stack copy).
fn objects(w: &Work) -> std::collections::BTreeMap<String, serde_json::Value> {
    let v = w.json(&["sandbox", "list", "-C", "s"]);
    v["objects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, o)| (id.clone(), o["attrs"].clone()))
        .collect()
}

/// How many objects differ between two sandbox listings.
fn differences(
    a: &std::collections::BTreeMap<String, serde_json::Value>,
    b: &std::collections::BTreeMap<String, serde_json::Value>,
) -> usize {
    let ids: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    ids.into_iter()
        .filter(|id| a.get(*id) != b.get(*id))
        .count()
}

/// Sandbox objects, as (address, owner).
fn sandbox(w: &Work) -> Vec<(String, Option<String>)> {
    let v = w.json(&["sandbox", "list", "-C", "s"]);
    v["objects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, o)| {
            (
                id.split_once('/').unwrap().1.to_string(),
                o["owner"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn slow_apply(w: &Work) -> std::process::Child {
    w.cmd(&["apply", "s", "--auto-approve"])
        .env("CAIRN_SANDBOX_LATENCY_MS", "10")
        .env("CAIRN_SANDBOX_BATCH", "16")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills an apply after `delay`; if it finished by itself before, how long it took.
fn killed_apply(w: &Work, delay: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    let mut child = slow_apply(w);
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    None
}

/// How long an uninterrupted slow apply takes here (first create, or the change).
fn calibrate(changed: bool) -> Duration {
    let w = Work::new();
    write_stack(&w, false);
    if changed {
        w.ok(&["apply", "s", "--auto-approve"], 0);
        write_stack(&w, true);
    }
    let start = std::time::Instant::now();
    assert!(
        slow_apply(&w).wait().unwrap().success(),
        "calibration apply failed: {}",
        w.run(&["validate", "s"]).stderr
    );
    start.elapsed()
}

fn assert_converged(w: &Work, changed: bool, trial: usize) {
    w.ok(&["apply", "s", "--auto-approve"], 0);
    let r = w.ok(&["plan", "s", "--detailed-exitcode"], 0);
    assert!(
        r.stdout.starts_with("No changes."),
        "trial {trial}: {}",
        r.stdout
    );
    let live = sandbox(w);
    let state: BTreeSet<String> = w
        .json(&["state", "list", "s"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let live_addrs: BTreeSet<String> = live.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(
        live.len(),
        live_addrs.len(),
        "trial {trial}: duplicate resources"
    );
    assert_eq!(
        live.len(),
        desired_count(changed),
        "trial {trial}: live count"
    );
    assert_eq!(
        state, live_addrs,
        "trial {trial}: state and live differ (orphaned or unrecorded resources)"
    );
    let owners: BTreeSet<&Option<String>> = live.iter().map(|(_, o)| o).collect();
    assert_eq!(
        owners.len(),
        1,
        "trial {trial}: every live resource carries this stack's marker"
    );
    assert!(
        owners.iter().all(|o| o.is_some()),
        "trial {trial}: unowned resources"
    );
}

/// 12 kills spread over a first create and 12 over a change (updates and deletes).
#[test]
fn kill_9_at_24_moments_then_the_next_apply_converges() {
    // Calibrated once; an apply that finishes before its kill shows the machine got faster
    // (a calibration slowed by other tests), and the later kills are spread over its time.
    let mut durations = [calibrate(false), calibrate(true)];
    let mut mid_apply = 0;
    for trial in 0..24 {
        let w = Work::new();
        let changed = trial % 2 == 1;
        write_stack(&w, false);
        if changed {
            w.ok(&["apply", "s", "--auto-approve"], 0);
            write_stack(&w, true);
        }
        let before = objects(&w);
        let step = trial / 2;
        let kind = usize::from(changed);
        if let Some(took) = killed_apply(&w, durations[kind].mul_f64((step as f64 + 0.5) / 12.0)) {
            durations[kind] = durations[kind].min(took);
        }
        let at_kill = objects(&w);
        assert_converged(&w, changed, trial);
        // A kill landed mid-apply when some, but not all, of the changes had been made.
        let done = differences(&before, &at_kill);
        if done > 0 && done < differences(&before, &objects(&w)) {
            mid_apply += 1;
        }
    }
    eprintln!("kills that landed mid-apply: {mid_apply} of 24");
    assert!(
        mid_apply >= 12,
        "only {mid_apply} of 24 kills landed mid-apply; the apply is too fast to test"
    );
}
