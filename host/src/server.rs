//! The HTTP front: accepts connections with hyper, and around every request
//! assigns a request id, answers the host's own routes (`/healthz`,
//! `/readyz`, `/metrics`), applies CORS and API-key auth, routes to the
//! component and streams its response body to the client frame by frame,
//! tapped for metrics and logs. On shutdown it stops accepting, lets open
//! streams finish for the drain timeout, then ends them with an `error` event.

use crate::cancel::{Guard, Registry};
use crate::drain::Drainable;
use crate::live::{LiveApp, Rebuild};
use crate::observe::{Observer, Started, TappedBody};
use crate::routes;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioTimer;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use spindle_wire::headers as wire_headers;
use spindle_wire::{Encoding, Tracker};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use wasmtime_wasi_http::WasiBody;

pub use spindle_wire::headers::REQUEST_ID;

/// Host-level settings of `spindle up`, documented in README "Host settings".
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Origins allowed by CORS; `*` allows any. Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Accepted `Authorization: Bearer` keys. Empty: no auth.
    pub api_keys: Vec<String>,
    /// How long open streams may run on after a shutdown signal.
    pub drain_timeout: Duration,
    /// Deadline for a whole request, stream included.
    pub request_timeout: Duration,
    /// How long a request head may take, and an idle connection may wait.
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Serve the chat page and the API docs without a key (the API itself
    /// still needs one).
    pub public_pages: bool,
}

/// What `--public-pages` opens: the chat page (which then asks for a key
/// for its API calls) and the API description.
fn is_page(method: &http::Method, path: &str) -> bool {
    (method == http::Method::GET || method == http::Method::HEAD)
        && (matches!(path, "/" | "/chat.js" | "/openapi.json") || path == "/docs" || path.starts_with("/docs/"))
}

/// Everything a request needs.
pub struct Server {
    pub live: Arc<LiveApp>,
    cancel: Registry,
    observer: Observer,
    settings: Settings,
    draining: AtomicBool,
    /// Fires when the drain timeout has passed: open streams end.
    cut: CancellationToken,
}

impl Server {
    pub fn new(live: Arc<LiveApp>, settings: Settings) -> Self {
        let (cancel, observer) = (live.platform.cancel.clone(), live.platform.observer.clone());
        Server { live, cancel, observer, settings, draining: AtomicBool::new(false), cut: CancellationToken::new() }
    }

    fn cors(&self) -> Option<CorsLayer> {
        let origins = &self.settings.cors_origins;
        if origins.is_empty() {
            return None;
        }
        let allow = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([http::Method::GET, http::Method::POST, http::Method::OPTIONS])
                .allow_headers([
                    http::header::CONTENT_TYPE,
                    http::header::AUTHORIZATION,
                    http::HeaderName::from_static(REQUEST_ID),
                ])
                .expose_headers([http::HeaderName::from_static(REQUEST_ID)])
                .max_age(Duration::from_secs(600)),
        )
    }

    /// Whether the request carries one of the configured keys.
    fn authorized(&self, req: &http::Request<Incoming>) -> bool {
        if self.settings.api_keys.is_empty() {
            return true;
        }
        let Some(given) = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let Some((scheme, token)) = given.trim_start().split_once(' ') else { return false };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        // Compare every key in full so timing does not reveal a prefix.
        self.settings
            .api_keys
            .iter()
            .fold(false, |ok, key| ok | constant_time_eq(key.as_bytes(), token.trim().as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn full(status: u16, content_type: &str, body: String) -> http::Response<WasiBody> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {}).boxed_unsync())
        .expect("static response is valid")
}

fn json_error(status: u16, code: &str, message: &str) -> http::Response<WasiBody> {
    full(status, "application/json", serde_json::json!({"error": {"code": code, "message": message}}).to_string())
}

/// A new request id: random, so it cannot be guessed.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn handle(server: Arc<Server>, peer: SocketAddr, mut req: http::Request<Incoming>) -> http::Response<WasiBody> {
    let started_at = Instant::now();
    let id = match req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() && v.len() <= 128 && v.is_ascii() => v.to_string(),
        _ => new_request_id(),
    };
    let path = req.uri().path().to_string();
    // Every request the components see is registered for cancellation
    // under an id no other open request has.
    let mut guard = None;
    let id = if host_route(req.method(), &path) {
        id
    } else {
        let (id, g) = match server.cancel.register(&id) {
            Some(g) => (id, g),
            None => {
                let fresh = new_request_id();
                tracing::info!(client_id = %id, id = %fresh, "request id already in use: replaced");
                let g = server.cancel.register(&fresh).expect("a new random id is free");
                (fresh, g)
            }
        };
        req.headers_mut().insert(REQUEST_ID, id.parse().expect("a checked id is a valid header"));
        guard = Some(g);
        id
    };
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %path);
    // `instrument`, not `span.enter()`: a guard held across an await is
    // exited on whichever thread resumes the task, which corrupted the
    // span stacks and panicked worker threads (dropping their connections)
    // under load.
    let response = route(&server, req, peer, &id, &path, started_at, guard).instrument(span).await;
    with_id(response, &id)
}

/// The host's own routes: GET or HEAD on the probes and metrics, POST on
/// the reload.
fn host_route(method: &http::Method, path: &str) -> bool {
    ((method == http::Method::GET || method == http::Method::HEAD)
        && matches!(path, "/healthz" | "/readyz" | "/metrics"))
        || (method == http::Method::POST && path == RELOAD_PATH)
}

const RELOAD_PATH: &str = "/admin/reload";

async fn route(
    server: &Arc<Server>,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    id: &str,
    path: &str,
    started_at: Instant,
    guard: Option<Guard>,
) -> http::Response<WasiBody> {
    if host_route(req.method(), path) {
        match path {
            "/healthz" => return full(200, "application/json", r#"{"status":"ok"}"#.into()),
            "/readyz" if server.draining.load(Ordering::Relaxed) => {
                return full(503, "application/json", r#"{"status":"draining"}"#.into());
            }
            "/readyz" => return full(200, "application/json", r#"{"status":"ready"}"#.into()),
            _ => {}
        }
    }
    let public = server.settings.public_pages && is_page(req.method(), path);
    if !public && !server.authorized(&req) {
        let mut res = json_error(401, "unauthorized", "send a valid API key as `Authorization: Bearer <key>`");
        res.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return res;
    }
    if host_route(req.method(), path) && path == "/metrics" {
        return full(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            server.observer.metrics.encode(),
        );
    }
    if host_route(req.method(), path) && path == RELOAD_PATH {
        return reload(server, peer, req.headers().contains_key(http::header::ORIGIN)).await;
    }
    // The app this request runs on, to its end, whatever reloads meanwhile.
    let app = server.live.current();
    let Some((pattern, component, handler)) =
        routes::best_by(&app.routes, path, |(p, _, _)| p).map(|(p, c, h)| (p.clone(), c.clone(), h.clone()))
    else {
        return json_error(404, "not_found", &format!("no route for {path}"));
    };
    let method = req.method().to_string();
    // Components see an absolute URI, as under Spin.
    let host = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost").to_string();
    let pq = req.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = http::Uri::builder().scheme("http").authority(host).path_and_query(pq).build() {
        parts.uri = uri;
    }
    parts.headers.insert(wire_headers::REVISION, app.revision.parse().expect("a hex revision is a valid header"));
    // Spin's request headers are the host's to set: none from the client
    // get through. The routing ones let one component serve under any
    // route.
    let spoofed: Vec<http::HeaderName> =
        parts.headers.keys().filter(|k| k.as_str().starts_with("spin-")).cloned().collect();
    for name in spoofed {
        parts.headers.remove(name);
    }
    let peer_ip = peer.ip().to_canonical().to_string();
    for (name, value) in [
        ("spin-path-info", pattern.path_info(path)),
        ("spin-component-route", pattern.base()),
        ("spin-client-addr", peer_ip.as_str()),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            parts.headers.insert(name, v);
        }
    }
    let req = http::Request::from_parts(parts, body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
    let mut started = Started {
        id: id.to_string(),
        time: SystemTime::now(),
        at: started_at,
        method,
        path: path.to_string(),
        component: component.clone(),
        query: None,
        revision: app.revision.clone(),
    };
    // Dropped with the response body, or with this future if the client
    // leaves before the response starts: either way outbound calls stop.
    let mut guard = guard.expect("component requests are registered");
    match handler.handle((), req).await {
        Ok(mut res) => {
            let status = res.status().as_u16();
            // A journaled answer outlives its client: a reconnect reads it.
            if res.headers_mut().remove(wire_headers::JOURNALED).is_some() {
                guard.detach();
            }
            // The question, as the app understood it, is for the log only.
            if let Some(query) = res.headers_mut().remove(wire_headers::QUERY) {
                started.query = query.to_str().ok().map(wire_headers::decode_query);
            }
            // A whole answer says how it ended in its head; a stream, in
            // its last event (the tracker reads that).
            let end =
                res.headers_mut().remove(wire_headers::END).and_then(|v| wire_headers::decode_end(v.to_str().ok()?));
            let tracker = res
                .headers()
                .get(wire_headers::ENCODING)
                .and_then(|v| v.to_str().ok())
                .and_then(Encoding::from_header)
                .map(Tracker::new);
            // A child token per stream: every frame polls it, and polling
            // the one shared token had every stream on both cores take the
            // same lock.
            let cut = server.cut.child_token();
            let deadline = started_at
                .checked_add(server.settings.request_timeout)
                .unwrap_or_else(|| started_at + Duration::from_secs(u32::MAX.into()));
            let deadline = tokio::time::Instant::from_std(deadline);
            let observer = server.observer.clone();
            res.map(|body| {
                let body = Drainable::new(body, tracker, cut, deadline);
                TappedBody::new(body, started, status, end, observer, guard, app.clone()).boxed_unsync()
            })
        }
        Err(e) => {
            tracing::error!(component = %component, "component failed: {e:?}");
            json_error(500, "internal_error", "the component failed while handling this request")
        }
    }
}

/// `POST /admin/reload`: only from the machine itself (and with a valid
/// key when keys are configured, checked before this), never from a web
/// page (a browser names the page's `Origin`; a cross-site form could
/// otherwise make a local browser reload), and one at a time (409 while
/// one runs).
async fn reload(server: &Arc<Server>, peer: SocketAddr, origin: bool) -> http::Response<WasiBody> {
    if !peer.ip().to_canonical().is_loopback() || origin {
        return json_error(
            403,
            "forbidden",
            "reload from the machine itself (curl -X POST http://127.0.0.1:PORT/admin/reload) or with SIGHUP",
        );
    }
    // Its own task: a client that hangs up does not cancel a reload
    // halfway.
    let live = server.live.clone();
    let reload = tokio::spawn(async move { live.try_reload(Rebuild::Nothing, "admin").await });
    match reload.await {
        Ok(Ok(Some(done))) => full(200, "application/json", serde_json::to_string(&done).expect("a report serialises")),
        Ok(Ok(None)) => json_error(409, "reload_in_progress", "a reload is already running; try again when it ends"),
        Ok(Err(e)) => json_error(422, "reload_failed", &format!("{e:#}; still serving the previous app")),
        Err(e) => json_error(500, "internal_error", &format!("the reload task failed: {e}")),
    }
}

fn with_id(mut res: http::Response<WasiBody>, id: &str) -> http::Response<WasiBody> {
    if !res.headers().contains_key(REQUEST_ID)
        && let Ok(v) = id.parse()
    {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// Accepts connections until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let cors = server.cors();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (header_timeout, max_head) = (server.settings.header_read_timeout, server.settings.max_header_bytes);
        let server = server.clone();
        let service = ServiceBuilder::new().option_layer(cors.clone()).service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(handle(server, peer, req).await) }
        });
        // HTTP/1 only: detecting HTTP/2 first would wait for the client's
        // first bytes with no timeout at all.
        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
        // Slow or idle clients (slowloris) may not hold a connection open:
        // the head must arrive in time, and hyper also applies this timer
        // to an idle keep-alive connection waiting for its next request.
        // A head larger than the read buffer is answered 431.
        builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(max_head.max(8192));
        let conn = builder
            .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    server.draining.store(true, Ordering::Relaxed);
    let open = server.observer.metrics.open_streams.get();
    eprintln!(
        "Shutting down: no new connections; {open} open stream(s) may finish within {:?}",
        server.settings.drain_timeout
    );
    tokio::select! {
        _ = graceful.shutdown() => eprintln!("All connections closed"),
        _ = tokio::time::sleep(server.settings.drain_timeout) => {
            eprintln!("Drain timeout: ending the remaining streams");
            server.cut.cancel();
            // Give the final events a moment to reach the clients.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
