//! A real Prometheus for the metric-source tests: Debian's `prometheus` package (installed by
//! tests/run.sh), loaded with samples the test writes (`promtool tsdb create-blocks-from
//! openmetrics`) and served on a free loopback port. One server per test: each brings its data.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prometheus {
    pub url: String,
    _data: tempfile::TempDir,
}

/// A Prometheus holding `openmetrics` (an OpenMetrics text ending in `# EOF`). Without the
/// binaries: a failure in CI, a loud skip elsewhere (returns None).
pub fn prometheus(openmetrics: &str) -> Option<Prometheus> {
    let installed = ["prometheus", "promtool"].iter().all(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !installed {
        assert!(
            std::env::var("CI").is_err(),
            "prometheus/promtool not found: tests/run.sh installs them (Debian package prometheus)"
        );
        eprintln!("SKIPPED: prometheus not found (tests/run.sh installs Debian's prometheus)");
        return None;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let input = data.path().join("samples.om");
    std::fs::write(&input, openmetrics).unwrap();
    let tsdb = data.path().join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&input)
        .arg(&tsdb)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool tsdb create-blocks-from openmetrics failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=60d")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::spawn_tied(cmd).expect("start prometheus");
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while ureq::get(format!("{url}/-/ready")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "prometheus did not become ready on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Some(Prometheus { url, _data: data })
}

/// OpenMetrics text: one gauge family, one series per label set, samples every 5 minutes over
/// the last `days` days ending now, valued by `value(label_index, seconds_since_start)`.
pub fn gauge(name: &str, labels: &[&str], days: i64, value: impl Fn(usize, i64) -> f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = now - now % 300 - days * 86_400;
    let mut out = format!("# TYPE {name} gauge\n");
    for (i, l) in labels.iter().enumerate() {
        for k in 0..=days * 288 {
            let ts = start + k * 300;
            out.push_str(&format!("{name}{{{l}}} {} {ts}\n", value(i, ts - start)));
        }
    }
    out.push_str("# EOF\n");
    out
}
