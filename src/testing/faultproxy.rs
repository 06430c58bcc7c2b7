//! A fault-injecting HTTP proxy between an API client and its server (the AWS SDK and moto): Throttling responses, 5xx
//! (half of them after the request reached moto, so the change happened but the answer is
//! an error), dropped connections (before or after forwarding) and latency, at set rates,
//! from a fixed seed. It counts the requests it sees, to cross-check cairn's own counter.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub throttle: f64,
    pub server_error: f64,
    pub reset: f64,
    /// Delay before forwarding a request.
    pub latency: Duration,
    /// Delay after moto answered, before the answer is passed on: the request took effect
    /// but the client does not know yet.
    pub latency_after: Duration,
}

pub struct FaultProxy {
    pub url: String,
    counts: Arc<Counts>,
}

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
    pub resets: AtomicU64,
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: Faults, seed: u64) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let state = Arc::new(Shared {
            upstream: upstream.to_string(),
            faults,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            counts: counts.clone(),
        });
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build_http();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (state, client) = (state.clone(), client.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            handle(req, state.clone(), client.clone())
                        });
                        // An error from the service drops the connection: that is the "reset".
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        FaultProxy {
            url: format!("http://{addr}"),
            counts,
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }
}

struct Shared {
    upstream: String,
    faults: Faults,
    rng: Mutex<fastrand::Rng>,
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

enum Fault {
    None,
    Throttle,
    ErrorBefore,
    ErrorAfter,
    ResetBefore,
    ResetAfter,
}

async fn handle(
    req: Request<Incoming>,
    s: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    s.counts.requests.fetch_add(1, Ordering::Relaxed);
    let fault = {
        let mut rng = s.rng.lock().unwrap();
        let (roll, half) = (rng.f64(), rng.bool());
        let f = s.faults;
        if roll < f.throttle {
            Fault::Throttle
        } else if roll < f.throttle + f.server_error {
            if half {
                Fault::ErrorBefore
            } else {
                Fault::ErrorAfter
            }
        } else if roll < f.throttle + f.server_error + f.reset {
            if half {
                Fault::ResetBefore
            } else {
                Fault::ResetAfter
            }
        } else {
            Fault::None
        }
    };
    if !s.faults.latency.is_zero() {
        tokio::time::sleep(s.faults.latency).await;
    }
    match fault {
        Fault::Throttle => {
            s.counts.throttled.fetch_add(1, Ordering::Relaxed);
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "Sender",
                "Throttling",
                "Rate exceeded",
            ));
        }
        Fault::ErrorBefore => {
            s.counts.server_errors.fetch_add(1, Ordering::Relaxed);
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Receiver",
                "InternalFailure",
                "injected before forwarding",
            ));
        }
        Fault::ResetBefore => {
            s.counts.resets.fetch_add(1, Ordering::Relaxed);
            return Err(Dropped);
        }
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let uri = format!(
        "{}{}",
        s.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut forward = Request::builder().method(parts.method).uri(uri);
    for (k, v) in parts.headers.iter() {
        if k != hyper::header::HOST {
            forward = forward.header(k, v);
        }
    }
    let response = client
        .request(forward.body(Full::new(body)).unwrap())
        .await
        .map_err(|_| Dropped)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    if !s.faults.latency_after.is_zero() {
        tokio::time::sleep(s.faults.latency_after).await;
    }
    match fault {
        Fault::ErrorAfter => {
            s.counts.server_errors.fetch_add(1, Ordering::Relaxed);
            Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Receiver",
                "InternalFailure",
                "injected after forwarding",
            ))
        }
        Fault::ResetAfter => {
            s.counts.resets.fetch_add(1, Ordering::Relaxed);
            Err(Dropped)
        }
        _ => Ok(Response::from_parts(parts, Full::new(body))),
    }
}

/// An AWS XML error, as Route53 and Auto Scaling send them.
fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
