//! `GET /openapi.json` (OpenAPI 3.1, generated from the request and event
//! types by utoipa) and `GET /docs` (Swagger UI, bundled at build time from
//! the npm package `swagger-ui-dist`, so it works offline).
//!
//! The functions below only carry the route documentation: the routes
//! themselves are matched in `lib.rs`.
#![allow(dead_code)]

use crate::api::{ChatBody, HistoryMessage};
use crate::events::{Done, ErrorBody, Meta, Source, Timings, Usage};
use crate::openai_route::{ChatMessage, CompletionRequest, StreamOptions};
use serde::Serialize;
use spin_sdk::http::{BoxBody, Response};
use utoipa::{OpenApi, ToSchema};

/// The data of one event of an answer stream: `meta`, `sources`, `done`
/// and `error` carry JSON; unnamed events carry a piece of answer text.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum StreamEventData {
    Meta(Meta),
    Sources(Vec<Source>),
    Done(Done),
    Error(ErrorBody),
    Text(String),
}

/// One Server-Sent Event of an answer stream, as a client's SSE parser
/// sees it.
#[derive(Serialize, ToSchema)]
pub struct SseEvent {
    /// `meta`, `sources`, `done` or `error`; absent for a piece of answer text.
    event: Option<String>,
    /// For named events a JSON document (see StreamEventData); for text
    /// events the text itself.
    data: String,
}

/// Every error before a stream starts.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    error: RequestError,
}

/// Why a request was refused: `code` names the rule (`missing_query`,
/// `query_too_long`, `invalid_top_k`, `body_too_large`, ...); on
/// `/v1/...` OpenAI's error shape, with `type` and `param` too.
#[derive(Serialize, ToSchema)]
pub struct RequestError {
    code: String,
    message: String,
}

const STREAM: &str = "The answer as Server-Sent Events, in order: `event: meta` (data: Meta), \
`event: sources` (data: an array of Source), unnamed events whose data is a piece of answer text \
(one `data:` line per line of text), then `event: done` (data: Done) or `event: error` (data: ErrorBody). \
Idle streams get `: keep-alive` comments between events.";

/// Ask a question (query string).
#[utoipa::path(get, path = "/api/chat/stream", tag = "answers",
    params(
        ("query" = String, Query, description = "The question: 1 to 2000 characters after trimming", min_length = 1, max_length = 2000, pattern = r"\S"),
        ("top_k" = Option<u32>, Query, description = "Number of sources, 1 to 20 (default 5)", minimum = 1, maximum = 20),
    ),
    responses(
        (status = 200, description = STREAM, content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "Missing, empty or too long `query`, or `top_k` out of range", body = ErrorResponse),
    ))]
fn chat_stream_get() {}

/// Ask a question (JSON body, with history and filters).
#[utoipa::path(post, path = "/api/chat/stream", tag = "answers",
    request_body(content = ChatBody, content_type = "application/json"),
    responses(
        (status = 200, description = STREAM, content_type = "text/event-stream", body = SseEvent),
        (status = 400, description = "Invalid JSON, unknown fields, or values out of range", body = ErrorResponse),
        (status = 413, description = "Body over 64 KiB", body = ErrorResponse),
        (status = 415, description = "Body not application/json", body = ErrorResponse),
    ))]
fn chat_stream_post() {}

/// OpenAI-compatible chat completions (streaming or not); sources in an extra `sources` field.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body(content = CompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A chat.completion (JSON), or with `stream: true` chat.completion.chunk events ending with `data: [DONE]`",
            content(("application/json"), ("text/event-stream"))),
        (status = 400, description = "No user message, unsupported role, or invalid body", body = ErrorResponse),
        (status = 413, description = "Body over 64 KiB", body = ErrorResponse),
        (status = 502, description = "The answer failed (non-streaming only)", body = ErrorResponse),
    ))]
fn completions() {}

/// The model answers come from.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, description = "An OpenAI model list", content_type = "application/json")))]
fn models() {}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ok\"}`", content_type = "application/json")))]
fn healthz() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Spindle",
        description = "Retrieval-augmented answers streamed as Server-Sent Events. \
Under `spindle`, the host also serves `GET /readyz`, `GET /metrics` (Prometheus) and, when API keys are configured, \
requires `Authorization: Bearer <key>`."
    ),
    paths(chat_stream_get, chat_stream_post, completions, models, healthz),
    components(schemas(
        ChatBody,
        HistoryMessage,
        CompletionRequest,
        ChatMessage,
        StreamOptions,
        ErrorResponse,
        RequestError,
        ErrorBody,
        Meta,
        Source,
        Done,
        Timings,
        Usage
    ))
)]
struct ApiDoc;

pub fn spec() -> Response<BoxBody> {
    let json = ApiDoc::openapi().to_json().expect("the spec serialises");
    crate::page_asset("application/json", json.into_bytes())
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Spindle API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"#;

const DOCS_INIT: &str = r##"window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });"##;

#[cfg(target_family = "wasm")]
static SWAGGER_JS: &[u8] = include_bytes!("../../../web/node_modules/swagger-ui-dist/swagger-ui-bundle.js");
#[cfg(target_family = "wasm")]
static SWAGGER_CSS: &[u8] = include_bytes!("../../../web/node_modules/swagger-ui-dist/swagger-ui.css");
// A native build of this crate only runs its unit tests, before (and
// without) the npm install that the component's build command does.
#[cfg(not(target_family = "wasm"))]
static SWAGGER_JS: &[u8] = b"";
#[cfg(not(target_family = "wasm"))]
static SWAGGER_CSS: &[u8] = b"";

/// `/docs` and its assets.
pub fn docs(path: &str) -> Option<Response<BoxBody>> {
    Some(match path {
        "/docs" | "/docs/" => crate::page_asset("text/html; charset=utf-8", DOCS_PAGE.as_bytes().to_vec()),
        "/docs/swagger-ui-bundle.js" => crate::page_asset("text/javascript", SWAGGER_JS.to_vec()),
        "/docs/swagger-ui.css" => crate::page_asset("text/css", SWAGGER_CSS.to_vec()),
        "/docs/init.js" => crate::page_asset("text/javascript", DOCS_INIT.as_bytes().to_vec()),
        _ => return None,
    })
}
