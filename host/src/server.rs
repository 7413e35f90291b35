//! The HTTP front: accepts connections with hyper, and around every request
//! assigns a request id, answers the host's own routes (`/healthz`,
//! `/readyz`, `/metrics`), applies CORS and API-key auth, routes to the
//! component and streams its response body to the client frame by frame,
//! tapped for metrics and logs. On shutdown it stops accepting, lets open
//! streams finish for the drain timeout, then ends them with an `error` event.

use crate::cancel::Registry;
use crate::observe::{CapturedBody, Observer, Started, TappedBody};
use crate::routes::{self, Pattern};
use crate::runtime::Handler;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use wasmtime_wasi_http::WasiBody;

pub const REQUEST_ID: &str = "x-request-id";

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
}

/// Everything a request needs.
pub struct Server {
    pub routes: Vec<(Pattern, String, Arc<Handler>)>,
    cancel: Registry,
    observer: Observer,
    settings: Settings,
    draining: AtomicBool,
    /// Fires when the drain timeout has passed: open streams end.
    cut: CancellationToken,
    next_id: AtomicU64,
    id_prefix: String,
}

impl Server {
    pub fn new(
        routes: Vec<(Pattern, String, Arc<Handler>)>,
        cancel: Registry,
        observer: Observer,
        settings: Settings,
    ) -> Self {
        // A per-process prefix keeps ids unique across restarts.
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Server {
            routes,
            cancel,
            observer,
            settings,
            draining: AtomicBool::new(false),
            cut: CancellationToken::new(),
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:08x}", (nanos as u64 ^ std::process::id() as u64) as u32),
        }
    }

    fn request_id(&self) -> String {
        format!("{}-{:08x}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed))
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
        let Some(token) = given.strip_prefix("Bearer ") else { return false };
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

async fn handle(server: Arc<Server>, mut req: http::Request<Incoming>) -> http::Response<WasiBody> {
    let started_at = Instant::now();
    let id = match req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() && v.len() <= 128 && v.is_ascii() => v.to_string(),
        _ => {
            let id = server.request_id();
            req.headers_mut().insert(REQUEST_ID, id.parse().expect("hex id is a valid header"));
            id
        }
    };
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %path);
    // `instrument`, not `span.enter()`: a guard held across an await is
    // exited on whichever thread resumes the task, which corrupted the
    // span stacks and panicked worker threads (dropping their connections)
    // under load.
    let response = route(&server, req, &id, &path, started_at).instrument(span).await;
    with_id(response, &id)
}

async fn route(
    server: &Arc<Server>,
    req: http::Request<Incoming>,
    id: &str,
    path: &str,
    started_at: Instant,
) -> http::Response<WasiBody> {
    if req.method() == http::Method::GET {
        match path {
            "/healthz" => return full(200, "application/json", r#"{"status":"ok"}"#.into()),
            "/readyz" if server.draining.load(Ordering::Relaxed) => {
                return full(503, "application/json", r#"{"status":"draining"}"#.into());
            }
            "/readyz" => return full(200, "application/json", r#"{"status":"ready"}"#.into()),
            _ => {}
        }
    }
    if !server.authorized(&req) {
        let mut res = json_error(401, "unauthorized", "send a valid API key as `Authorization: Bearer <key>`");
        res.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return res;
    }
    if req.method() == http::Method::GET && path == "/metrics" {
        return full(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            server.observer.metrics.encode(),
        );
    }
    let Some((component, handler)) =
        routes::best_by(&server.routes, path, |(p, _, _)| p).map(|(_, c, h)| (c.clone(), h.clone()))
    else {
        return json_error(404, "not_found", &format!("no route for {path}"));
    };
    let method = req.method().to_string();
    let query = req
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "query").map(|(_, v)| v.into_owned()));
    // Components see an absolute URI, as under Spin.
    let host = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost").to_string();
    let pq = req.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = http::Uri::builder().scheme("http").authority(host).path_and_query(pq).build() {
        parts.uri = uri;
    }
    let (body, captured) = if parts.method == http::Method::POST {
        let (b, copy) = CapturedBody::new(body);
        (b.map_err(wasmtime_wasi_http::Error::from).boxed_unsync(), Some(copy))
    } else {
        (body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync(), None)
    };
    let req = http::Request::from_parts(parts, body);
    let started = Started {
        id: id.to_string(),
        time: SystemTime::now(),
        at: started_at,
        method,
        path: path.to_string(),
        component: component.clone(),
        query,
        captured,
    };
    // Dropped with the response body, or with this future if the client
    // leaves before the response starts: either way outbound calls stop.
    let guard = server.cancel.register(id);
    match handler.handle((), req).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let sse = res
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
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
                let body = TappedBody::new(body, started, status, sse, observer, guard);
                crate::drain::Drainable::new(body, sse, cut, deadline).boxed_unsync()
            })
        }
        Err(e) => {
            tracing::error!(component = %component, "component failed: {e:?}");
            json_error(500, "internal_error", "the component failed while handling this request")
        }
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
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
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
        let server = server.clone();
        let service = ServiceBuilder::new().option_layer(cors.clone()).service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(handle(server, req).await) }
        });
        let conn = auto::Builder::new(TokioExecutor::new())
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
