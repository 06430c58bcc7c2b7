//! A minimal HTTP backend for health-check tests and benchmarks: it answers every request
//! with 200 (or 500 for a share of them, from a seeded generator) until killed; killed, its
//! port refuses connections, as a dead server's would.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Backend {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    /// Serves on `ip:port`; `fail_rate` of the answers (0 to 1) are 500s.
    pub fn start(ip: &str, port: u16, fail_rate: f64, seed: u64) -> Backend {
        let listener = TcpListener::bind((ip, port)).expect("bind a backend");
        listener
            .set_nonblocking(true)
            .expect("a nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(seed);
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let status = if rng.f64() < fail_rate {
                            "500 Internal Server Error"
                        } else {
                            "200 OK"
                        };
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops serving and closes the port.
    pub fn kill(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the backend thread");
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A port free on both 127.0.0.1 and 127.0.0.2, for a primary and a secondary backend. It
/// is picked below Linux's ephemeral range (32768 and up): a port the kernel hands out for
/// `bind(…:0)` could be taken by another test between this check and the backends' binds.
pub fn shared_port() -> u16 {
    let mut rng = fastrand::Rng::new();
    loop {
        let port = rng.u16(20_000..32_000);
        let both = (
            TcpListener::bind(("127.0.0.1", port)),
            TcpListener::bind(("127.0.0.2", port)),
        );
        if let (Ok(_), Ok(_)) = both {
            return port;
        }
    }
}
