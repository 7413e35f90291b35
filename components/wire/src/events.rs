//! The events of one answer, in the order a client receives them: `meta`,
//! `sources`, text chunks, then `done` or `error`. Both encodings
//! ([`crate::encoding`]) carry these types, and the host reads `done` and
//! `error` back through them, so a renamed field is a compile error, not a
//! silently empty metric.

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The first event: who answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Meta {
    pub request_id: String,
    pub model: String,
    pub generator: String,
    /// The revision of the app answering, when the host names it (a hash
    /// of its composed steps, routes and variables; it changes with every
    /// reload that changes the app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// One passage the answer may cite.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Source {
    /// Citation number used in the answer: `[n]`.
    pub n: usize,
    pub id: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub score: f32,
    pub snippet: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Milliseconds spent in each step, to the microsecond (most steps take
/// well under one); `first_token` is from the request's start to the first
/// text chunk.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Timings {
    pub retrieve: f64,
    pub rerank: f64,
    pub prompt: f64,
    pub first_token: Option<f64>,
    pub generate: f64,
    pub total: f64,
}

impl Timings {
    /// The pipeline's steps with their durations, for per-step metrics.
    pub fn steps(&self) -> [(Step, f64); 4] {
        [
            (Step::Retrieve, self.retrieve),
            (Step::Rerank, self.rerank),
            (Step::Prompt, self.prompt),
            (Step::Generate, self.generate),
        ]
    }
}

/// A timed step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Retrieve,
    Rerank,
    Prompt,
    Generate,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Retrieve => "retrieve",
            Step::Rerank => "rerank",
            Step::Prompt => "prompt",
            Step::Generate => "generate",
        }
    }
}

/// What the answer cache did for this answer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// Caching is turned off (`cache_ttl_secs` = 0).
    Off,
    /// The key-value store failed; the answer was computed without it.
    Unavailable,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Off => "off",
            CacheOutcome::Unavailable => "unavailable",
        }
    }
}

/// The generator that answers when no language model is configured or the
/// configured one failed.
pub const EXTRACTIVE: &str = "extractive";

/// The last event of a complete answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
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
    pub cache: CacheOutcome,
}

impl Done {
    /// Whether the extractive generator stood in for a configured one.
    pub fn fell_back(&self) -> bool {
        self.fallback.is_some() && self.generator == EXTRACTIVE
    }
}

/// Why an answer ended without `done`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A step refused its input.
    InvalidInput,
    RetrieverUnavailable,
    RetrieverTimeout,
    RetrieverError,
    PromptUnavailable,
    PromptTimeout,
    PromptError,
    /// The language model could not be reached.
    UpstreamUnavailable,
    /// The language model stopped sending within its deadline.
    UpstreamTimeout,
    /// The language model failed mid-answer or sent something unusable.
    UpstreamError,
    /// Set by the host: the drain timeout passed at shutdown.
    ServerShutdown,
    /// Set by the host: the whole-request deadline passed.
    RequestTimeout,
    /// Set by the host: the component stopped before its last event.
    StreamAborted,
    /// A resumed stream: the replica producing the answer stopped before
    /// its last event, so the rest of the answer is lost.
    OriginLost,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::RetrieverUnavailable => "retriever_unavailable",
            ErrorCode::RetrieverTimeout => "retriever_timeout",
            ErrorCode::RetrieverError => "retriever_error",
            ErrorCode::PromptUnavailable => "prompt_unavailable",
            ErrorCode::PromptTimeout => "prompt_timeout",
            ErrorCode::PromptError => "prompt_error",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::ServerShutdown => "server_shutdown",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::StreamAborted => "stream_aborted",
            ErrorCode::OriginLost => "origin_lost",
        }
    }

    /// The message of an error the host adds to a stream.
    pub fn host_message(self) -> &'static str {
        match self {
            ErrorCode::ServerShutdown => "the server is shutting down; please retry",
            ErrorCode::RequestTimeout => "the answer ran past the server's deadline for a whole request",
            ErrorCode::StreamAborted => "the component stopped before the answer was complete",
            _ => "the answer failed",
        }
    }
}

/// The last event of a failed answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// One event of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Meta(Meta),
    Sources(Vec<Source>),
    Text(String),
    Done(Done),
    Error(ErrorBody),
}

impl Event {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Event::Error(ErrorBody { code, message: message.into() })
    }
}

/// How an answer ended, as the host reads it back from the stream (or
/// from [`crate::headers::END`] for a whole answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    Done(Box<Done>),
    Error(ErrorBody),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_names() {
        for code in
            [ErrorCode::InvalidInput, ErrorCode::RetrieverTimeout, ErrorCode::UpstreamError, ErrorCode::StreamAborted]
        {
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(code.as_str()));
        }
        assert_eq!(serde_json::to_value(CacheOutcome::Unavailable).unwrap(), serde_json::json!("unavailable"));
    }
}
