//! The two encodings of an answer stream, each with its end and error
//! frames: Spindle's SSE events (`meta`, `sources`, unnamed text events,
//! `done` / `error`) and OpenAI's `chat.completion.chunk` stream (text in
//! `delta.content`, sources and Spindle's `done` in extra fields of the last
//! chunk, `data: [DONE]`). A response names its encoding in the
//! [`crate::headers::ENCODING`] header, so the host frames what it adds in
//! the client's encoding.

use crate::events::{Done, ErrorCode, Event, Source, Usage};
use crate::sse;
use serde::Serialize;
use serde_json::Value;

/// The encodings of an answer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `GET|POST /api/chat/stream`.
    Spindle,
    /// `POST /v1/chat/completions` with `stream: true`.
    OpenAi,
}

impl Encoding {
    /// The value of the [`crate::headers::ENCODING`] response header.
    pub fn header_value(self) -> &'static str {
        match self {
            Encoding::Spindle => "spindle",
            Encoding::OpenAi => "openai",
        }
    }

    pub fn from_header(value: &str) -> Option<Encoding> {
        match value {
            "spindle" => Some(Encoding::Spindle),
            "openai" => Some(Encoding::OpenAi),
            _ => None,
        }
    }

    /// The frames that end a stream with an error, as this encoding's
    /// clients expect: an `error` event, or (OpenAI) a chunk holding an
    /// `error` object, which the openai SDKs raise as an exception, then
    /// `[DONE]` for clients that read on.
    pub fn error_frame(self, code: ErrorCode, message: &str) -> String {
        match self {
            Encoding::Spindle => {
                let body = crate::events::ErrorBody { code, message: message.to_string() };
                sse::event(Some("error"), &json(&body))
            }
            Encoding::OpenAi => {
                let body = OpenAiError { error: OpenAiErrorBody { message, kind: "server_error", param: None, code } };
                format!("data: {}\n\n{DONE_FRAME}", json(&body))
            }
        }
    }
}

/// The OpenAI stream's last frame.
pub const DONE_FRAME: &str = "data: [DONE]\n\n";

/// Turns events into the bytes of one encoding.
pub trait Encoder {
    /// Appends what encodes `event` to `out` (nothing, if this encoding
    /// does not show it on its own).
    fn encode(&mut self, event: &Event, out: &mut String);
}

/// Spindle's SSE encoding: one event per [`Event`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SpindleEncoder;

impl Encoder for SpindleEncoder {
    fn encode(&mut self, event: &Event, out: &mut String) {
        match event {
            Event::Meta(m) => sse::write_event(out, Some("meta"), &json(m)),
            Event::Sources(s) => sse::write_event(out, Some("sources"), &json(s)),
            Event::Text(t) => sse::write_event(out, None, t),
            Event::Done(d) => sse::write_event(out, Some("done"), &json(d)),
            Event::Error(e) => sse::write_event(out, Some("error"), &json(e)),
        }
    }
}

/// OpenAI's `chat.completion.chunk` stream. `meta` becomes the first chunk
/// (role only), `sources` wait for the last chunk, which also carries
/// Spindle's `done` under `spindle`.
#[derive(Debug)]
pub struct OpenAiEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    sources: Vec<Source>,
}

impl OpenAiEncoder {
    pub fn new(id: String, created: u64, include_usage: bool) -> Self {
        OpenAiEncoder { id, model: String::new(), created, include_usage, sources: Vec::new() }
    }

    fn chunk(&self, out: &mut String, delta: Delta<'_>, finish_reason: Option<&str>, last: Option<&Done>) {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![Choice { index: 0, delta, logprobs: None, finish_reason }],
            // `usage: null` on every chunk but the usage chunk, as OpenAI does.
            usage: self.include_usage.then_some(None),
            sources: last.map(|_| self.sources.as_slice()),
            spindle: last,
        };
        push_data(out, &chunk);
    }
}

impl Encoder for OpenAiEncoder {
    fn encode(&mut self, event: &Event, out: &mut String) {
        match event {
            Event::Meta(m) => {
                self.model.clone_from(&m.model);
                self.chunk(out, Delta { role: Some("assistant"), content: Some("") }, None, None);
            }
            Event::Sources(s) => self.sources.clone_from(s),
            Event::Text(t) => self.chunk(out, Delta { role: None, content: Some(t) }, None, None),
            Event::Done(done) => {
                self.model.clone_from(&done.model);
                self.chunk(out, Delta::default(), Some(&done.finish_reason), Some(done));
                if self.include_usage {
                    let chunk = Chunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: Vec::new(),
                        usage: Some(Some(OpenAiUsage::from(done.usage))),
                        sources: None,
                        spindle: None,
                    };
                    push_data(out, &chunk);
                }
                out.push_str(DONE_FRAME);
            }
            Event::Error(e) => out.push_str(&Encoding::OpenAi.error_frame(e.code, &e.message)),
        }
    }
}

/// The whole answer as one `chat.completion` (a non-streaming request).
pub fn completion(id: &str, created: u64, text: &str, sources: &[Source], done: &Done) -> Value {
    serde_json::json!({
        "id": id, "object": "chat.completion", "created": created, "model": done.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": done.finish_reason}],
        "usage": OpenAiUsage::from(done.usage),
        "sources": sources,
        "spindle": done,
    })
}

/// An OpenAI error response body (`{"error": {...}}`).
pub fn error_body(status: u16, code: &str, message: &str) -> Value {
    let kind = if status < 500 { "invalid_request_error" } else { "server_error" };
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<OpenAiUsage>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sources: Option<&'a [Source]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spindle: Option<&'a Done>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct OpenAiUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

impl From<Option<Usage>> for OpenAiUsage {
    fn from(u: Option<Usage>) -> Self {
        let u = u.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: 0 });
        OpenAiUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: ErrorCode,
}

fn push_data<T: Serialize>(out: &mut String, value: &T) {
    out.push_str("data: ");
    out.push_str(&json(value));
    out.push_str("\n\n");
}

pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("event payloads always serialise")
}
