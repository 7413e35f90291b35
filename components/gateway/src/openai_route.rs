//! The OpenAI-compatible facade: `POST /v1/chat/completions` (streaming and
//! not) and `GET /v1/models`, so OpenAI SDKs and tools such as Open WebUI
//! use Spindle unchanged. The last user message is the question, earlier
//! messages the history; the sources travel in an extra `sources` field of
//! the final chunk (streaming) or of the response.

use crate::api::{self, ChatRequest};
use crate::bindings::{Message, Role, generator};
use crate::events::{Done, EncodedSink, ErrorBody, Event, Gone, Sink, Source};
use crate::pipeline;
use crate::stream_body;
use serde::Deserialize;
use serde_json::{Value, json};
use spin_sdk::http::{BoxBody, Request, Response};
use spin_sdk::wasip3::http::types::{self, ErrorCode};
use spindle_wire::encoding::{self, Encoding, OpenAiEncoder};
use spindle_wire::events::End;
use spindle_wire::headers as wire_headers;

/// An OpenAI chat-completions request (the fields Spindle reads).
#[derive(Deserialize, utoipa::ToSchema)]
// `model`, `max_tokens` and `temperature` are accepted so OpenAI clients
// work unchanged; the model and its settings are the server's.
#[allow(dead_code)]
pub struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    /// The conversation; the last `user` message is the question.
    #[schema(min_items = 1)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Spindle extension: number of sources, 1 to 20 (default 5).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 20)]
    top_k: Option<i64>,
    #[serde(default)]
    filters: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    /// `user`, `assistant`, `system` or `developer`.
    #[schema(pattern = "^(user|assistant|system|developer)$")]
    role: String,
    #[schema(value_type = String, min_length = 1, pattern = r"\S")]
    content: Content,
}

/// `content` is a string or a list of parts (`{"type":"text","text":...}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    fn text(self) -> String {
        match self {
            Content::Text(t) => t,
            Content::Parts(parts) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
            }
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> Response<BoxBody> {
    api::json(status, &encoding::error_body(status, code, message))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub async fn models() -> Response<BoxBody> {
    let info = generator::info().await;
    let id = if info.ready { info.model } else { "extractive".to_string() };
    api::json(
        200,
        &json!({"object": "list", "data": [{"id": id, "object": "model", "created": 0, "owned_by": "spindle"}]}),
    )
}

async fn parse(req: Request) -> Result<(ChatRequest, bool, bool), Response<BoxBody>> {
    let caller = api::Caller::of(&req);
    let body = api::read_body(req).await.map_err(|e| error(e.status, e.code, &e.message))?;
    let body: CompletionRequest =
        serde_json::from_slice(&body).map_err(|e| error(400, "invalid_json", &format!("invalid request body: {e}")))?;
    let mut messages: Vec<(Role, String)> = Vec::new();
    for m in body.messages {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" | "developer" => Role::System,
            other => return Err(error(400, "invalid_history", &format!("unsupported message role `{other}`"))),
        };
        messages.push((role, m.content.text()));
    }
    let Some(last_user) = messages.iter().rposition(|(r, _)| *r == Role::User) else {
        return Err(error(
            400,
            "missing_query",
            "`messages` must contain a user message: the last one is the question",
        ));
    };
    let query = messages[last_user].1.clone();
    let history =
        messages[..last_user].iter().map(|(role, content)| Message { role: *role, content: content.clone() }).collect();
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    let chat = api::validate(Some(query), history, body.top_k, body.filters.into_iter().collect(), caller)
        .map_err(|e| error(e.status, e.code, &e.message))?;
    Ok((chat, body.stream, include_usage))
}

pub async fn completions(req: Request) -> Result<types::Response, ErrorCode> {
    let (chat, stream, include_usage) = match parse(req).await {
        Ok(p) => p,
        Err(res) => return stream_body::buffered(res),
    };
    let deadlines = match pipeline::Deadlines::load().await {
        Ok(d) => d,
        Err(e) => return stream_body::buffered(error(500, "configuration_error", &e)),
    };
    let id = format!("chatcmpl-{}", chat.request_id);
    if stream {
        let (body, response) = stream_body::sse(&chat, Encoding::OpenAi)?;
        let mut sink = EncodedSink::new(OpenAiEncoder::new(id, now_secs(), include_usage), body.clone());
        spin_sdk::wasip3::spawn(async move {
            let _ = pipeline::run(chat, &deadlines, &mut sink).await;
            body.finish().await;
        });
        return Ok(response);
    }
    stream_body::buffered(complete(chat, &deadlines, id).await)
}

/// The whole answer in one `chat.completion` response.
async fn complete(chat: ChatRequest, deadlines: &pipeline::Deadlines, id: String) -> Response<BoxBody> {
    let mut collected = Collected::default();
    let query = wire_headers::encode_query(&chat.query);
    let _ = pipeline::run(chat, deadlines, &mut collected).await;
    let (mut res, end) = match (collected.error, collected.done) {
        (Some(e), _) => (error(502, e.code.as_str(), &e.message), End::Error(e)),
        (None, Some(done)) => {
            let body = encoding::completion(&id, now_secs(), &collected.text, &collected.sources, &done);
            (api::json(200, &body), End::Done(Box::new(done)))
        }
        (None, None) => unreachable!("the pipeline ends with done or error"),
    };
    // For the host's query log, as a stream's last event would say it.
    for (name, value) in [(wire_headers::QUERY, query), (wire_headers::END, wire_headers::encode_end(&end))] {
        if let Ok(value) = spin_sdk::http::HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, value);
        }
    }
    res
}

/// Collects a whole answer for the non-streaming response.
#[derive(Default)]
struct Collected {
    text: String,
    sources: Vec<Source>,
    done: Option<Done>,
    error: Option<ErrorBody>,
}

impl Sink for Collected {
    async fn send_all(&mut self, events: Vec<Event>) -> Result<(), Gone> {
        for event in events {
            match event {
                Event::Meta(_) => {}
                Event::Sources(s) => self.sources = s,
                Event::Text(t) => self.text.push_str(&t),
                Event::Done(d) => self.done = Some(d),
                Event::Error(e) => self.error = Some(e),
            }
        }
        Ok(())
    }
}
