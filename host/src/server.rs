//! The HTTP front: accepts connections with hyper, gives every request an
//! id, routes it to its component and streams the component's response body
//! to the client frame by frame.

use crate::cancel::{GuardedBody, Registry};
use crate::routes::{self, Pattern};
use crate::runtime::Handler;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use wasmtime_wasi_http::WasiBody;

pub const REQUEST_ID: &str = "x-request-id";

/// Routes to the components serving them.
pub struct Router {
    pub routes: Vec<(Pattern, Arc<Handler>)>,
    cancel: Registry,
    next_id: AtomicU64,
    id_prefix: String,
}

impl Router {
    pub fn new(routes: Vec<(Pattern, Arc<Handler>)>, cancel: Registry) -> Self {
        // A per-process prefix keeps ids unique across restarts.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Router {
            routes,
            cancel,
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:08x}", (nanos as u64 ^ std::process::id() as u64) as u32),
        }
    }

    fn request_id(&self) -> String {
        format!("{}-{:08x}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

fn json_error(status: u16, code: &str, message: &str) -> http::Response<WasiBody> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {}).boxed_unsync())
        .expect("static response is valid")
}

async fn handle(router: &Router, mut req: http::Request<Incoming>) -> http::Response<WasiBody> {
    let id = match req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.to_string(),
        _ => {
            let id = router.request_id();
            req.headers_mut().insert(REQUEST_ID, id.parse().expect("hex id is a valid header"));
            id
        }
    };
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %path);
    let _enter = span.enter();
    let Some(handler) = routes::best(&router.routes, &path) else {
        return with_id(json_error(404, "not_found", &format!("no route for {path}")), &id);
    };
    // Components see an absolute URI, as under Spin.
    let host = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost").to_string();
    let pq = req.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if let Ok(uri) = http::Uri::builder().scheme("http").authority(host).path_and_query(pq).build() {
        *req.uri_mut() = uri;
    }
    let req = req.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
    // Dropped with the response body, or with this future if the client
    // leaves before the response starts: either way outbound calls stop.
    let guard = router.cancel.register(&id);
    let response = match handler.handle((), req).await {
        Ok(res) => res.map(|body| GuardedBody::new(body, guard).boxed_unsync()),
        Err(e) => {
            tracing::error!("component failed: {e:?}");
            json_error(500, "internal_error", "the component failed while handling this request")
        }
    };
    with_id(response, &id)
}

fn with_id(mut res: http::Response<WasiBody>, id: &str) -> http::Response<WasiBody> {
    if !res.headers().contains_key(REQUEST_ID) {
        res.headers_mut().insert(REQUEST_ID, id.parse().expect("checked when accepted"));
    }
    res
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, router: Arc<Router>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(handle(&router, req).await) }
            });
            if let Err(e) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}
