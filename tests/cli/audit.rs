//! The audit log: every apply is recorded; editing, deleting, reordering, inserting or
//! truncating entries is detected at the right entry; a wrong key is a clear error.

use crate::{Run, Work};

const KEY: &str = "k1:correct-horse-battery-staple";

fn run(w: &Work, args: &[&str], key: &str) -> Run {
    Run::from(w.cmd(args).env("CAIRN_AUDIT_KEY", key).output().unwrap())
}

/// Three entries: an apply, an apply of drift, a destroy.
fn three_entries() -> Work {
    let w = Work::quickstart();
    assert_eq!(run(&w, &["apply", "shop", "--auto-approve"], KEY).code, 0);
    w.ok(
        &[
            "sandbox",
            "resize",
            "web@gcp/us-central1",
            "--desired",
            "3",
            "-C",
            "shop",
        ],
        0,
    );
    assert_eq!(run(&w, &["apply", "shop", "--auto-approve"], KEY).code, 0);
    assert_eq!(run(&w, &["destroy", "shop", "--auto-approve"], KEY).code, 0);
    w
}

/// stderr with the diagnostic's line wrapping undone, for `contains` checks.
fn flat(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn log_path(w: &Work) -> std::path::PathBuf {
    w.path("shop/.cairn/state/production/audit.log")
}

fn lines(w: &Work) -> Vec<String> {
    std::fs::read_to_string(log_path(w))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(w: &Work, lines: &[String]) {
    std::fs::write(log_path(w), lines.join("\n") + "\n").unwrap();
}

#[test]
fn applies_are_recorded_and_verify() {
    let w = three_entries();
    let r = run(&w, &["audit", "verify", "shop"], KEY);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("Audit log intact: 3 entries (head "),
        "{}",
        r.stdout
    );
    let r = run(
        &w,
        &["audit", "log", "shop", "--json", "--action", "apply"],
        KEY,
    );
    let entries: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["details"]["created"], 10);
    assert_eq!(entries[1]["details"]["updated"], 1);
    assert_eq!(entries[1]["seq"], 2);
    assert_eq!(entries[0]["plan_digest"].as_str().unwrap().len(), 64);
    // Imports and state edits are recorded too.
    assert_eq!(run(&w, &["apply", "shop", "--auto-approve"], KEY).code, 0);
    w.ok(
        &[
            "sandbox",
            "set-record",
            "shop.example.com",
            "manual",
            "TXT",
            "--value",
            "hi",
            "-C",
            "shop",
        ],
        0,
    );
    let r = run(
        &w,
        &[
            "import",
            "record.shop.example.com/manual/TXT",
            "aws/record.shop.example.com/manual/TXT",
            "-C",
            "shop",
        ],
        KEY,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        run(
            &w,
            &[
                "state",
                "rm",
                "record.shop.example.com/manual/TXT",
                "-C",
                "shop"
            ],
            KEY
        )
        .code,
        0
    );
    let actions: Vec<String> = run(&w, &["audit", "log", "shop", "--json"], KEY)
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        vec!["apply", "apply", "destroy", "apply", "import", "state rm"]
    );
    assert_eq!(run(&w, &["audit", "verify", "shop"], KEY).code, 0);
    // Without a key nothing is recorded, and applying still works.
    let before = lines(&w).len();
    w.ok(&["apply", "shop", "--auto-approve"], 0);
    assert_eq!(lines(&w).len(), before);
}

/// Edits the log's lines in place.
type Tamper = Box<dyn Fn(&mut Vec<String>)>;

/// Each kind of tampering, and the entry `verify` must name.
#[test]
fn tampering_is_detected_at_the_right_entry() {
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "edit",
            Box::new(|l: &mut Vec<String>| {
                l[1] = l[1].replace("\"result\":\"ok\"", "\"result\":\"OK\"")
            }),
            "at entry 2: its MAC does not match its content",
        ),
        (
            "delete",
            Box::new(|l: &mut Vec<String>| {
                l.remove(1);
            }),
            "at entry 2: it does not follow the entry before it",
        ),
        (
            "reorder",
            Box::new(|l: &mut Vec<String>| l.swap(0, 1)),
            "at entry 1: it does not follow the entry before it",
        ),
        (
            "insert a copy",
            Box::new(|l: &mut Vec<String>| {
                let first = l[0].clone();
                l.insert(2, first);
            }),
            "at entry 3: it does not follow the entry before it",
        ),
        (
            "insert a forgery",
            Box::new(|l: &mut Vec<String>| l.insert(1, "{\"seq\":2,\"forged\":true}".into())),
            "at entry 2: not a valid entry",
        ),
        (
            "truncate",
            Box::new(|l: &mut Vec<String>| {
                l.pop();
            }),
            "at entry 3: the checkpoint records 3 entries but the log ends after 2",
        ),
    ];
    for (name, tamper, expected) in cases {
        let w = three_entries();
        let mut l = lines(&w);
        tamper(&mut l);
        write_lines(&w, &l);
        let r = run(&w, &["audit", "verify", "shop"], KEY);
        assert_eq!(r.code, 1, "{name}: {}", r.stdout);
        assert!(
            flat(&r.stderr).contains(expected),
            "{name}: expected `{expected}` in:\n{}",
            r.stderr
        );
    }
}

#[test]
fn wrong_or_unknown_keys_are_clear_errors_and_keys_rotate() {
    let w = three_entries();
    let r = run(
        &w,
        &["audit", "verify", "shop"],
        "k1:some-other-secret-value",
    );
    assert_eq!(r.code, 1);
    assert!(
        flat(&r.stderr).contains("the checkpoint's signature does not match key `k1`: wrong key"),
        "{}",
        r.stderr
    );
    let r = run(
        &w,
        &["audit", "verify", "shop"],
        "k2:some-other-secret-value",
    );
    assert!(
        flat(&r.stderr).contains("signed with key `k1`, which is not among the keys given"),
        "{}",
        r.stderr
    );
    let r = run(&w, &["audit", "verify", "shop"], "k1:short");
    assert!(r.stderr.contains("too short"), "{}", r.stderr);

    // Rotation: new entries use the last key of the file; verifying needs the old ones too.
    std::fs::write(
        w.path("keys"),
        format!("{}\nk2 another-long-secret-value\n", KEY.replace(':', " ")),
    )
    .unwrap();
    let with_file = |args: &[&str], file: &str| {
        Run::from(
            w.cmd(args)
                .env("CAIRN_AUDIT_KEY_FILE", w.path(file))
                .output()
                .unwrap(),
        )
    };
    assert_eq!(
        with_file(&["apply", "shop", "--auto-approve"], "keys").code,
        0
    );
    let r = with_file(&["audit", "verify", "shop"], "keys");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("Audit log intact: 4 entries"),
        "{}",
        r.stdout
    );
    std::fs::write(w.path("new-only"), "k2 another-long-secret-value\n").unwrap();
    let r = with_file(&["audit", "verify", "shop"], "new-only");
    assert!(
        flat(&r.stderr)
            .contains("at entry 1: signed with key `k1`, which is not among the keys given"),
        "{}",
        r.stderr
    );
}
