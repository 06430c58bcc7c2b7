//! A real AWS API for the tests: moto_server from the project's virtualenv (`.venv`, made by
//! tests/run.sh), started once per test run on a free loopback port and reset before each
//! test. AWS tests run one at a time (they share the server).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub struct Moto {
    pub url: String,
}

static SERVER: OnceLock<Option<Moto>> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CAIRN_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    p.exists().then_some(p)
}

/// The running server, reset, and a guard that keeps other AWS tests out until dropped.
/// Without moto: a failure in CI, a loud skip elsewhere (returns None).
pub fn moto() -> Option<(&'static Moto, MutexGuard<'static, ()>)> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = SERVER.get_or_init(start).as_ref();
    let Some(m) = server else {
        assert!(
            std::env::var("CI").is_err(),
            "moto_server not found: run tests/run.sh (it installs moto[server] into .venv) or set CAIRN_MOTO_SERVER"
        );
        eprintln!("SKIPPED: moto_server not found (run tests/run.sh to install it into .venv)");
        return None;
    };
    assert!(
        post(&m.url, "/moto-api/reset").starts_with("HTTP/1.1 200"),
        "could not reset moto at {}",
        m.url
    );
    Some((m, guard))
}

/// A bodiless POST; returns the response's status line and head.
fn post(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to moto");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

fn start() -> Option<Moto> {
    let bin = moto_server()?;
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::spawn_tied(cmd).expect("start moto_server");
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto { url })
}
