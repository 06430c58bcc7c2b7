//! Integration tests: run the real `cairn` binary in temporary directories and assert exact
//! output (insta snapshots) and exit codes.

mod apply;
mod audit;
pub mod aws;
pub mod azure;
mod crash;
mod enforce;
pub mod gcp;
mod ha;
mod lock;
mod moto;
mod nab;
mod policy;
pub mod postgres;
mod prometheus;
mod recommend;
mod review;
mod schema;
mod simulate;
mod validate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary working directory holding one or more stacks.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Default for Work {
    fn default() -> Self {
        Work::new()
    }
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A copy of examples/quickstart at `./shop` (its files and its `load/` traces).
    pub fn quickstart() -> Work {
        let w = Work::new();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
        let dst = w.path("shop");
        for sub in ["", "load"] {
            std::fs::create_dir_all(dst.join(sub)).unwrap();
            for e in std::fs::read_dir(src.join(sub)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "toml" || x == "csv") {
                    std::fs::copy(&p, dst.join(sub).join(p.file_name().unwrap())).unwrap();
                }
            }
        }
        w
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A `cairn` command run from the work directory, colors off.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("CAIRN_ENV")
            // AWS tests talk to moto; never to a real account or instance metadata.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("CAIRN_AUDIT_KEY")
            .env_remove("CAIRN_AUDIT_KEY_FILE")
            .env_remove("CAIRN_AUDIT_CHECKPOINT")
            .env_remove("AWS_ENDPOINT_URL")
            // Google Cloud tests log in as the fake's service account, never as the developer.
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
        for k in [
            "CAIRN_SANDBOX_LATENCY_MS",
            "CAIRN_SANDBOX_FAIL",
            "CAIRN_SANDBOX_BATCH",
        ] {
            c.env_remove(k);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run cairn"))
    }

    /// Runs and asserts the exit code, printing the output when it differs.
    pub fn ok(&self, args: &[&str], code: i32) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, code,
            "cairn {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
            r.code, r.stdout, r.stderr
        );
        r
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let r = self.run(&a);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("cairn {a:?}: not JSON ({e}):\n{}\n{}", r.stdout, r.stderr))
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Starts a server process that dies with the test process (tests may end any way).
pub fn spawn_tied(mut cmd: Command) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl in the child before exec; the server dies with the test process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    // PDEATHSIG fires when the spawning *thread* ends: spawn from one that never does.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tx.send(cmd.spawn().map(|_| ())).expect("report the spawn");
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("spawner thread")
}
