//! What the contract-checked fakes share: a hyper server on its own thread (plain or TLS), the
//! request as a fake reads it, answers, and dropped connections.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// What a handler decided: an answer (status, JSON body, extra headers), or a dropped
/// connection.
pub enum Outcome {
    Answer(u16, Option<Value>, Vec<(&'static str, String)>),
    Reset,
}

/// A request as the fakes read it: path percent-decoded, query decoded into pairs, header
/// names in lower case.
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Received {
    pub async fn read(req: Request<Incoming>) -> Result<Received, std::io::Error> {
        let method = req.method().as_str().to_string();
        let path = percent_encoding::percent_decode_str(req.uri().path())
            .decode_utf8_lossy()
            .into_owned();
        let query = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = v.to_str().unwrap_or_default().to_string();
                (k.as_str().to_lowercase(), v)
            })
            .collect();
        let body = req
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok(Received {
            method,
            path,
            query,
            headers,
            body,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serves `handle` on `listener` (already bound, so the caller knows its port) from a thread
/// with its own runtime, over TLS when given an acceptor. An `Err` from `handle` drops the
/// connection: that is how the fakes inject resets.
pub fn serve<H, F>(
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, std::io::Error>> + Send + 'static,
{
    listener.set_nonblocking(true).expect("nonblocking");
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fake");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (tls, handle) = (tls.clone(), handle.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req));
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                        None => http.serve_connection(TokioIo::new(tcp), service).await,
                    };
                });
            }
        });
    });
}

/// An answer with a JSON body (if any) and extra headers.
pub fn respond(
    status: u16,
    body: Option<&Value>,
    extra: &[(&str, String)],
) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(StatusCode::from_u16(status).expect("a status"));
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json; charset=utf-8");
            Bytes::from(serde_json::to_vec(v).expect("JSON"))
        }
        None => Bytes::new(),
    };
    b.body(Full::new(bytes)).expect("a response")
}

/// The transport faults a fake injects, each a share (0 to 1) of the requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultRates {
    pub throttle: f64,
    /// Seconds in the `Retry-After` of a 429.
    pub retry_after_secs: u64,
    pub server_error: f64,
    pub reset: f64,
}

/// Where a fake counts the faults it injected.
pub struct FaultCounters<'a> {
    pub throttled: &'a std::sync::atomic::AtomicU64,
    pub server_errors: &'a std::sync::atomic::AtomicU64,
    pub resets: &'a std::sync::atomic::AtomicU64,
}

/// Runs `operation` under injected faults: a 429 with `Retry-After` (`throttled`, nothing
/// done), or a 500 (`server_error`) or dropped connection before the operation or, half the
/// time, after it, when it took effect but the client never hears so: the case that tests
/// that retries do not apply a change twice.
pub fn with_faults(
    rates: FaultRates,
    mut draw: impl FnMut(f64) -> bool,
    counters: FaultCounters<'_>,
    throttled: impl FnOnce() -> Outcome,
    server_error: impl Fn() -> Outcome,
    operation: impl FnOnce() -> Outcome,
) -> Outcome {
    use std::sync::atomic::Ordering;
    if draw(rates.throttle) {
        counters.throttled.fetch_add(1, Ordering::Relaxed);
        return match throttled() {
            Outcome::Answer(status, body, mut headers) => {
                headers.push(("retry-after", rates.retry_after_secs.to_string()));
                Outcome::Answer(status, body, headers)
            }
            Outcome::Reset => Outcome::Reset,
        };
    }
    let reset = draw(rates.reset);
    let failed = draw(rates.server_error);
    let after = draw(0.5);
    let fault = || {
        if reset {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            Outcome::Reset
        } else {
            counters.server_errors.fetch_add(1, Ordering::Relaxed);
            server_error()
        }
    };
    if (reset || failed) && !after {
        return fault();
    }
    let outcome = operation();
    if reset || failed {
        return fault();
    }
    outcome
}

/// For the fakes' own tests: sends 60 requests under injected faults and checks that each
/// fault happened, that throttling says `Retry-After: retry_after`, and that the fake counted
/// exactly what the client saw.
#[cfg(test)]
pub async fn check_injected_faults(
    send: impl Fn() -> reqwest::RequestBuilder,
    retry_after: &str,
    counted: FaultCounters<'_>,
) {
    use std::sync::atomic::Ordering;
    let (mut throttled, mut errors, mut resets, mut ok) = (0, 0, 0, 0);
    for _ in 0..60 {
        match send().send().await {
            Ok(r) if r.status() == 429 => {
                assert_eq!(r.headers()["retry-after"], retry_after);
                throttled += 1;
            }
            Ok(r) if r.status() == 500 => errors += 1,
            Ok(r) if r.status() == 200 => ok += 1,
            Ok(r) => panic!("unexpected {}", r.status()),
            Err(_) => resets += 1,
        }
    }
    assert!(throttled > 0 && errors > 0 && resets > 0 && ok > 0);
    assert_eq!(counted.throttled.load(Ordering::Relaxed), throttled);
    assert_eq!(counted.server_errors.load(Ordering::Relaxed), errors);
    assert_eq!(counted.resets.load(Ordering::Relaxed), resets);
}
