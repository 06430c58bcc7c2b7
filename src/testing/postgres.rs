//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` + the server from
//! Debian's `postgresql` package (binaries under /usr/lib/postgresql/*/bin), on a free
//! loopback port in a temporary directory, trust authentication, fsync off.
//!
//! PostgreSQL refuses to run as root: as root (CI), the cluster is created and run as the
//! `postgres` user the package creates, owning its directory. The server is this process's
//! child, started from a thread that lives as long as the process and with a parent-death
//! signal, so it stops when the tests or the benchmark end, however they end.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct PgCluster {
    pub port: u16,
    tls: Option<Tls>,
    bin: PathBuf,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    databases: Mutex<u32>,
}

/// The cluster's TLS material: it serves TLS with a certificate for 127.0.0.1 signed by a
/// CA of its own, and the role `cairn_tls` may only connect over TLS.
pub struct Tls {
    pub dir: PathBuf,
    pub ca_file: PathBuf,
}

/// The role that pg_hba.conf admits over TLS only.
pub const TLS_ROLE: &str = "cairn_tls";

/// A CA certificate (PEM) that signed nothing this cluster serves.
pub fn self_signed_ca_pem() -> String {
    ca_and_server().0
}

/// (CA certificate, server certificate, server key), PEM.
fn ca_and_server() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().expect("a leaf key");
    let cert = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("a leaf certificate");
    (ca_cert.pem(), cert.pem(), leaf_key.serialize_pem())
}

/// The server binaries' directory, newest version first.
pub fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, b)| b)
}

/// The uid and gid to run the server as: ours, unless we are root.
fn run_as() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: a NUL-terminated name; the result is read before any other getpw call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "running as root, and there is no `postgres` user to run PostgreSQL as (Debian's postgresql package creates it)"
                .into(),
        );
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn command(bin: &Path, name: &str, user: Option<(u32, u32)>, pdeathsig: bool) -> Command {
    let mut c = Command::new(bin.join(name));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After the credentials change, which would clear it.
            if pdeathsig && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Removes the directories of clusters whose process is gone (statics are not dropped).
fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cairn-pg-"))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl PgCluster {
    /// Starts a cluster. Errors say what is missing.
    pub fn start() -> Result<PgCluster, String> {
        let bin = bin_dir().ok_or(
            "PostgreSQL not found under /usr/lib/postgresql/*/bin: tests/run.sh installs Debian's postgresql package",
        )?;
        let user = run_as()?;
        let root = std::env::temp_dir();
        sweep(&root);
        let dir = root.join(format!("cairn-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let data = dir.join("data");
        let out = command(&bin, "initdb", user, false)
            .args(["-D", data.to_str().expect("utf-8 path")])
            .args(["-U", "cairn", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .env("LC_ALL", "C")
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // TLS: a certificate of our own CA; pg_hba admits the TLS role over TLS only.
        let (ca_pem, cert_pem, key_pem) = ca_and_server();
        let write = |name: &str, body: &str, mode: u32| -> Result<PathBuf, String> {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
            Ok(p)
        };
        let ca_file = write("ca.pem", &ca_pem, 0o644)?;
        let cert_file = write("server.pem", &cert_pem, 0o644)?;
        let key_file = write("server.key", &key_pem, 0o600)?;
        write(
            "data/pg_hba.conf",
            &format!(
                "local all all trust\nhostnossl all {TLS_ROLE} 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n"
            ),
            0o600,
        )?;
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid))
                .map_err(|e| e.to_string())?;
        }
        let mut server = command(&bin, "postgres", user, true);
        server
            .args(["-D", data.to_str().expect("utf-8 path")])
            .args(["-p", &port.to_string(), "-k", dir.to_str().expect("utf-8")])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300", "-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", cert_file.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key_file.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // Spawned from a thread that never ends: the parent-death signal follows the thread
        // that forked, and a test's thread ends with the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.spawn());
            loop {
                std::thread::park();
            }
        });
        let child = rx
            .recv()
            .expect("the spawning thread answers")
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let tls_dir = dir.clone();
        let cluster = PgCluster {
            port,
            tls: Some(Tls {
                dir: tls_dir,
                ca_file,
            }),
            bin,
            dir,
            child: Mutex::new(Some(child)),
            databases: Mutex::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(cluster.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "cairn"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres did not start:\n{}",
                    std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster.psql("postgres", &format!("CREATE ROLE {TLS_ROLE} LOGIN"));
        Ok(cluster)
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The connection string of a database.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://cairn@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A new, empty database (one per test keeps tests apart); returns its URL.
    pub fn create_db(&self, prefix: &str) -> String {
        self.create_db_owned(prefix, "cairn")
    }

    /// A new database owned by `role`; returns its URL for that role (no TLS).
    pub fn create_db_owned(&self, prefix: &str, role: &str) -> String {
        let name = {
            let mut n = self.databases.lock().expect("databases");
            *n += 1;
            format!("{prefix}_{}", *n)
        };
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER {role}"));
        format!(
            "postgres://{role}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL through psql; returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql failed on `{sql}`:\n{e}"))
    }

    /// Runs SQL through psql; its output, or its error.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "cairn",
            ])
            .args([
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The database name in a URL made by `create_db`.
    pub fn db_of(url: &str) -> &str {
        url.rsplit('/')
            .next()
            .and_then(|s| s.split('?').next())
            .unwrap_or("postgres")
    }

    /// Stops the server now (it also stops when this process ends).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().expect("child").take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGQUIT) };
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
