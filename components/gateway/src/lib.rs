//! The Spindle gateway: the one orchestrator of the RAG pipeline.
//!
//! It serves the HTTP routes (`wasi:http/handler@0.3.0`), validates input,
//! runs retrieve → rerank → prompt → generate through the step interfaces it
//! imports (each satisfied by a component named in `spin.toml`), and streams
//! the answer as Server-Sent Events. It runs unchanged under `spin up` and
//! `spindle up`.

mod api;
mod bindings;
mod cache;
mod events;
mod input_limits;
mod journal;
mod openai_route;
mod openapi;
mod pipeline;
mod sse_route;
mod stream_body;

use spin_sdk::http::{BoxBody, IntoResponse, Method, Request, Response, box_body};
use stream_body::buffered;

/// The chat page and its script: no assets from elsewhere.
const PAGE: &str = include_str!("page.html");
const PAGE_SCRIPT: &str = include_str!("chat.js");

/// What the page and the API docs may do: only this origin's scripts and
/// styles (Swagger UI sets inline styles), no framing by other sites.
pub const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A page or script of the gateway's own, with the headers that keep a
/// browser from misreading or framing it.
pub fn page_asset(content_type: &str, body: Vec<u8>) -> Response<BoxBody> {
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .header("content-security-policy", PAGE_POLICY)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .body(box_body(http_body_util::Full::new(bytes::Bytes::from(body))))
        .expect("static headers are valid")
}

/// The routes and the methods each accepts (for 405 answers).
const ROUTES: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/chat.js", "GET"),
    ("/api/chat/stream", "GET, POST"),
    ("/v1/chat/completions", "POST"),
    ("/v1/models", "GET"),
    ("/openapi.json", "GET"),
    ("/healthz", "GET"),
];

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    // Below the route this gateway serves (Spin and spindle both say it),
    // so a second pipeline can live under a prefix such as `/kb/...`.
    let path = match req.headers().get("spin-path-info").and_then(|v| v.to_str().ok()) {
        Some("") => "/".to_string(),
        Some(info) => info.to_string(),
        None => req.uri().path().to_string(),
    };
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/api/chat/stream") | (Method::POST, "/api/chat/stream") => sse_route::handle(req).await,
        (Method::POST, "/v1/chat/completions") => openai_route::completions(req).await,
        (Method::GET, "/v1/models") => buffered(openai_route::models().await),
        (Method::GET, "/") => buffered(page_asset("text/html; charset=utf-8", PAGE.as_bytes().to_vec())),
        (Method::GET, "/chat.js") => buffered(page_asset("text/javascript", PAGE_SCRIPT.as_bytes().to_vec())),
        (Method::GET, "/openapi.json") => buffered(openapi::spec()),
        (Method::GET, p) if p.starts_with("/docs") => {
            buffered(openapi::docs(p).unwrap_or_else(|| api::error(404, "not_found", &format!("no route for {p}"))))
        }
        (Method::GET, "/healthz") => buffered(api::json(200, &serde_json::json!({"status": "ok"}))),
        (method, p) => match ROUTES.iter().find(|(r, _)| *r == p) {
            Some((_, allow)) => {
                let mut res =
                    api::error(405, "method_not_allowed", &format!("{method} is not allowed on {p}; use {allow}"));
                res.headers_mut().insert("allow", spin_sdk::http::HeaderValue::from_static(allow));
                buffered(res)
            }
            None => buffered(api::error(404, "not_found", &format!("no route for {p}"))),
        },
    }
}
