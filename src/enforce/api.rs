//! The daemon's HTTP API (axum): health, readiness, status, events (server-sent), metrics
//! (Prometheus text), and operator actions. Bearer tokens map to roles.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::{Role, Shared, Trigger};

pub async fn serve(
    app: axum::Router,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "the API server stopped");
    }
}

/// The API of every stack: the first at `/` (as when enforcing one stack), each at
/// `/stacks/NAME/ENVIRONMENT/`, and `/stacks` listing them with who leads each.
pub fn app(shareds: &[Arc<Shared>]) -> axum::Router {
    let mut app = router(shareds[0].clone());
    for shared in shareds {
        let path = {
            let s = shared.status.lock().expect("status");
            format!("/stacks/{}/{}", s.stack, s.environment)
        };
        app = app.nest(&path, router(shared.clone()));
    }
    let all = shareds.to_vec();
    app.route(
        "/stacks",
        get(move |headers: HeaderMap| {
            let all = all.clone();
            async move { stacks(&all, &headers) }
        }),
    )
}

fn stacks(all: &[Arc<Shared>], headers: &HeaderMap) -> Response {
    if let Err(r) = authorize(&all[0], headers, Role::Viewer) {
        return r;
    }
    let list: Vec<serde_json::Value> = all
        .iter()
        .map(|shared| {
            let s = shared.status.lock().expect("status");
            serde_json::json!({
                "stack": s.stack,
                "environment": s.environment,
                "ready": s.ready,
                "reconciles": s.reconciles,
                "leadership": s.leadership,
            })
        })
        .collect();
    Json(list).into_response()
}

pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/reconcile", post(reconcile))
        .route("/failover", post(failover))
        .route("/failback", post(failback))
        .with_state(shared)
}

/// 401 without a known token, 403 with one whose role is too low. Without any tokens
/// configured, reading is open and operating is refused.
fn authorize(shared: &Shared, headers: &HeaderMap, need: Role) -> Result<(), Response> {
    let tokens = &shared.settings.tokens;
    if tokens.is_empty() {
        return if need == Role::Viewer {
            Ok(())
        } else {
            Err(error(
                StatusCode::FORBIDDEN,
                "no API tokens are configured: operator actions are disabled (see --token-file)",
            ))
        };
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(role) = token.and_then(|t| tokens.get(t.trim())) else {
        let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a header value"),
        );
        return Err(r);
    };
    if *role < need {
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!("this needs the {need:?} role; the token has {role:?}").to_lowercase(),
        ));
    }
    Ok(())
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let (ready, follower) = {
        let s = shared.status.lock().expect("status");
        let follower = s
            .leadership
            .as_ref()
            .is_some_and(|l| l.role != super::ha::LEADER && l.leader.is_some());
        (s.ready, follower)
    };
    // A follower serves the read-only API as soon as it knows who leads.
    if ready || follower {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no reconcile has completed yet\n",
        )
            .into_response()
    }
}

async fn status(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Role::Viewer) {
        return r;
    }
    let body =
        serde_json::to_vec(&*shared.status.lock().expect("status")).expect("status serializes");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Role::Viewer) {
        return r;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

/// Server-sent events: the recent ones first, then each as it happens.
async fn events(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Role::Viewer) {
        return r;
    }
    let rx = shared.events.subscribe();
    let recent: Vec<super::Event> = shared
        .status
        .lock()
        .expect("status")
        .recent
        .iter()
        .cloned()
        .collect();
    let last = recent.last().map_or(0, |e| e.seq);
    let live = BroadcastStream::new(rx).filter_map(move |e| match e {
        Ok(e) if e.seq > last => Some(e),
        _ => None,
    });
    let stream = tokio_stream::iter(recent).chain(live).map(|e| {
        Ok::<_, Infallible>(
            SseEvent::default()
                .event(e.kind.clone())
                .id(e.seq.to_string())
                .json_data(&e)
                .expect("events serialize"),
        )
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn reconcile(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, Role::Operator) {
        return r;
    }
    if let Some(why) = shared.led_elsewhere() {
        return error(StatusCode::CONFLICT, &why);
    }
    if shared.trigger(Trigger::Manual) {
        (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "queued": true })),
        )
            .into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    }
}

#[derive(Deserialize)]
struct RecordQuery {
    record: String,
}

async fn failover(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    manual(&shared, &headers, &uri, false)
}

async fn failback(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    manual(&shared, &headers, &uri, true)
}

/// Authorization first, then the `?record=ADDRESS` parameter.
fn manual(shared: &Arc<Shared>, headers: &HeaderMap, uri: &Uri, back: bool) -> Response {
    if let Err(r) = authorize(shared, headers, Role::Operator) {
        return r;
    }
    if let Some(why) = shared.led_elsewhere() {
        return error(StatusCode::CONFLICT, &why);
    }
    let record = match Query::<RecordQuery>::try_from_uri(uri) {
        Ok(Query(q)) => q.record,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "name the record: ?record=record.ZONE/NAME/TYPE",
            );
        }
    };
    match shared.manual_failover(&record, back) {
        Ok(message) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "message": message })),
        )
            .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}
