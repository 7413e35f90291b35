//! The events of one answer, in the order a client receives them, and their
//! SSE encoding (DESIGN.md §4): `meta`, `sources`, unnamed text chunks, then
//! `done` or `error`.

use guest_common::sse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    pub request_id: String,
    pub model: String,
    pub generator: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Source {
    /// Citation number used in the answer: `[n]`.
    pub n: usize,
    pub id: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub score: f32,
    pub snippet: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy, ToSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Milliseconds spent in each step, to the microsecond (most steps take
/// well under one); `first_token` is from the request's start to the first
/// text chunk.
#[derive(Debug, Serialize, Default, ToSchema)]
pub struct Timings {
    pub retrieve: f64,
    pub rerank: f64,
    pub prompt: f64,
    pub first_token: Option<f64>,
    pub generate: f64,
    pub total: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub finish_reason: String,
    pub usage: Option<Usage>,
    pub timings_ms: Timings,
    /// Which generator produced the text: e.g. "openai" or "extractive".
    pub generator: String,
    pub model: String,
    /// Why the configured generator was not used, when it was not.
    pub fallback: Option<String>,
    /// Steps that failed without failing the answer (e.g. the reranker).
    pub degraded: Vec<String>,
    /// The answer cache: "hit", "miss", "off" or "unavailable".
    pub cache: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

#[derive(Debug)]
pub enum Event {
    Meta(Meta),
    Sources(Vec<Source>),
    Text(String),
    Done(Done),
    Error(ErrorBody),
}

impl Event {
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Event::Error(ErrorBody { code: code.into(), message: message.into() })
    }

    pub fn to_sse(&self) -> String {
        match self {
            Event::Meta(m) => sse::event(Some("meta"), &json(m)),
            Event::Sources(s) => sse::event(Some("sources"), &json(s)),
            Event::Text(t) => sse::event(None, t),
            Event::Done(d) => sse::event(Some("done"), &json(d)),
            Event::Error(e) => sse::event(Some("error"), &json(e)),
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("event payloads always serialise")
}
