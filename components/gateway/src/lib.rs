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
mod openai_route;
mod openapi;
mod pipeline;
mod sse_route;
mod stream_body;

use spin_sdk::http::{BoxBody, IntoResponse, Method, Request, Response, box_body};
use stream_body::buffered;

/// The chat page: one self-contained file, no external assets.
const PAGE: &str = include_str!("page.html");

fn page() -> Response<BoxBody> {
    Response::builder()
        .status(200)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(box_body(PAGE.to_string()))
        .expect("static headers are valid")
}

/// The routes and the methods each accepts (for 405 answers).
const ROUTES: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/api/chat/stream", "GET, POST"),
    ("/v1/chat/completions", "POST"),
    ("/v1/models", "GET"),
    ("/openapi.json", "GET"),
    ("/healthz", "GET"),
];

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/api/chat/stream") | (Method::POST, "/api/chat/stream") => sse_route::handle(req).await,
        (Method::POST, "/v1/chat/completions") => openai_route::completions(req).await,
        (Method::GET, "/v1/models") => buffered(openai_route::models().await),
        (Method::GET, "/") => buffered(page()),
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
