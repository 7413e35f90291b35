//! `generator-openai`: streams an answer from any OpenAI-compatible
//! `/v1/chat/completions` endpoint (vLLM, llama.cpp, Ollama, OpenAI ...).
//!
//! Configured by Spin variables: `llm_url` (API base including `/v1`; empty
//! means "not configured"), `llm_model`, `llm_api_key`, `llm_timeout_ms`
//! (connect + response headers), `llm_max_tokens` (answer length cap),
//! `llm_idle_timeout_ms` (longest silence
//! between stream chunks, including before the first token).
//!
//! `generate` returns only once the first token has arrived, so every
//! failure before it is an `Err` the gateway can fall back from; failures
//! after it travel in the stream as `chunk::error`. Dropping the stream drops
//! the HTTP response body, which closes the upstream connection and stops
//! the model generating.

use spindle_clients::body::BodyReader;
use spindle_clients::openai::{self, StreamError, StreamItem};
use spindle_step::config::{variable_or, variable_u64};
use spindle_step::deadline::{IdleDeadline, deadline};
use spindle_wire::sse::Decoder;
use std::time::Duration;

mod bindings {
    spin_sdk::wit_bindgen::generate!({
        world: "spindle:generator/generator-step",
        path: ["../../wit/types", "../../wit/generator"],
        runtime_path: "::spin_sdk::wit_bindgen::rt",
        generate_all,
    });
}

use bindings::exports::spindle::generator::generator::{Chunk, GenerateOptions, GeneratorInfo, Guest, Usage};
use bindings::spindle::types::types::{Message, Passage, Role, StepError};

/// Most bytes of an upstream error body quoted back to the client.
const MAX_ERROR_BODY: usize = 64 * 1024;

struct Config {
    url: String,
    model: String,
    api_key: String,
    timeout: Duration,
    idle_timeout: Duration,
    /// Answer length cap when the request sets none; 0: the model's own.
    max_tokens: u32,
}

impl Config {
    async fn load() -> Result<Self, StepError> {
        let ms = |r: Result<u64, String>| r.map(Duration::from_millis).map_err(StepError::InvalidInput);
        Ok(Config {
            url: variable_or("llm_url", "").await.trim_end_matches('/').to_string(),
            model: variable_or("llm_model", "default").await,
            api_key: variable_or("llm_api_key", "").await,
            timeout: ms(variable_u64("llm_timeout_ms", 30_000).await)?,
            idle_timeout: ms(variable_u64("llm_idle_timeout_ms", 60_000).await)?,
            max_tokens: variable_u64("llm_max_tokens", 1024)
                .await
                .map_err(StepError::InvalidInput)?
                .try_into()
                .map_err(|_| StepError::InvalidInput("variable `llm_max_tokens` is too large".into()))?,
        })
    }
}

/// The upstream response body, decoded into chunks a read at a time.
struct Upstream {
    body: BodyReader,
    idle: IdleDeadline,
    chunks: Chunks,
}

/// What has been decoded from the body so far.
#[derive(Default)]
struct Chunks {
    decoder: Decoder,
    pending: Vec<Chunk>,
    finished: bool,
    ended: bool,
}

impl Upstream {
    /// Every chunk decoded from the next read of the body (at least one);
    /// `None` once the upstream stream has ended cleanly.
    ///
    /// A batch, not a chunk at a time: when the machine is busy one read
    /// often brings several tokens (5-6 per read at 1,000 open streams),
    /// and each write to the gateway wakes it, which then writes to the
    /// client; one write per read keeps that cost per read, not per token.
    async fn next_batch(&mut self) -> Option<Vec<Chunk>> {
        loop {
            let chunks = &mut self.chunks;
            if !chunks.pending.is_empty() {
                return Some(std::mem::take(&mut chunks.pending));
            }
            if chunks.ended {
                return None;
            }
            let read = self.idle.run(self.body.next()).await;
            match read {
                None => {
                    return chunks.fail(StepError::Timeout(format!(
                        "the LLM sent nothing for {} ms",
                        self.idle.limit().as_millis()
                    )));
                }
                Some(None) if chunks.finished => chunks.ended = true,
                Some(None) => {
                    return chunks.fail(StepError::Unavailable("the LLM stream ended before [DONE]".into()));
                }
                Some(Some(Err(e))) => {
                    return chunks.fail(StepError::Unavailable(format!("the LLM connection failed: {e}")));
                }
                Some(Some(Ok(bytes))) => chunks.decode(bytes),
            }
        }
    }
}

impl Chunks {
    fn decode(&mut self, bytes: &[u8]) {
        let events = match self.decoder.feed(bytes) {
            Ok(events) => events,
            Err(too_long) => {
                self.pending
                    .push(Chunk::Error(StepError::Internal(format!("the LLM sent a broken stream: {too_long}"))));
                self.ended = true;
                return;
            }
        };
        for event in events {
            match openai::parse_event(&event.data) {
                Ok(items) => {
                    for item in items {
                        match item {
                            StreamItem::Text(t) => self.pending.push(Chunk::Text(t)),
                            StreamItem::Finish(r) => {
                                self.finished = true;
                                self.pending.push(Chunk::Finish(r));
                            }
                            StreamItem::Usage { prompt_tokens, completion_tokens } => {
                                self.pending.push(Chunk::Usage(Usage { prompt_tokens, completion_tokens }))
                            }
                            StreamItem::Done => {
                                self.finished = true;
                                self.ended = true;
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    let err = match e {
                        StreamError::Upstream(m) => StepError::Unavailable(format!("the LLM reported an error: {m}")),
                        StreamError::Malformed(m) => {
                            StepError::Internal(format!("the LLM sent a malformed chunk: {m}"))
                        }
                    };
                    self.pending.push(Chunk::Error(err));
                    self.ended = true;
                    return;
                }
            }
        }
    }

    /// Ends the stream with `err`, after what was already decoded.
    fn fail(&mut self, err: StepError) -> Option<Vec<Chunk>> {
        self.ended = true;
        self.pending.push(Chunk::Error(err));
        Some(std::mem::take(&mut self.pending))
    }
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// The JSON body of the chat completion request for `messages`.
fn request_body(cfg: &Config, messages: &[Message], options: &GenerateOptions) -> String {
    let pairs: Vec<(&str, &str)> = messages.iter().map(|m| (role(m.role), m.content.as_str())).collect();
    let max_tokens = options.max_tokens.or((cfg.max_tokens > 0).then_some(cfg.max_tokens));
    openai::chat_request(&cfg.model, &pairs, max_tokens, options.temperature)
}

async fn start(cfg: &Config, body: String, options: &GenerateOptions) -> Result<Upstream, StepError> {
    let endpoint = format!("{}/chat/completions", cfg.url);
    // Messages reach clients (`done.fallback`) and logs: no credentials in them.
    let shown = spindle_clients::exchange::redact(&endpoint);
    let mut req = spin_sdk::http::Request::post(&endpoint)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("x-request-id", &options.request_id);
    if !cfg.api_key.is_empty() {
        req = req.header("authorization", format!("Bearer {}", cfg.api_key));
    }
    let req = req.body(body).map_err(|e| StepError::InvalidInput(format!("bad LLM URL `{shown}`: {e}")))?;
    let resp = match deadline(cfg.timeout, spin_sdk::http::send(req)).await {
        None => {
            return Err(StepError::Timeout(format!(
                "no response from the LLM at {shown} within {} ms",
                cfg.timeout.as_millis()
            )));
        }
        Some(Err(e)) => {
            return Err(StepError::Unavailable(format!("cannot reach the LLM at {shown}: {e:?}")));
        }
        Some(Ok(resp)) => resp,
    };
    let status = resp.status();
    let mut body = BodyReader::new(resp).map_err(StepError::Internal)?;
    if !status.is_success() {
        let mut buf = Vec::new();
        while let Some(Some(Ok(bytes))) = deadline(cfg.timeout, body.next()).await {
            buf.extend_from_slice(bytes);
            if buf.len() > MAX_ERROR_BODY {
                break;
            }
        }
        return Err(StepError::Unavailable(format!(
            "the LLM at {shown} answered HTTP {}: {}",
            status.as_u16(),
            openai::error_body_message(&buf)
        )));
    }
    Ok(Upstream { body, idle: IdleDeadline::new(cfg.idle_timeout), chunks: Chunks::default() })
}

struct OpenAi;

impl Guest for OpenAi {
    async fn info() -> GeneratorInfo {
        spindle_step::step::exit_after_returning();
        let url = variable_or("llm_url", "").await;
        GeneratorInfo {
            name: "openai".into(),
            model: variable_or("llm_model", "default").await,
            ready: !url.is_empty(),
        }
    }

    async fn generate(
        messages: Vec<Message>,
        passages: Vec<Passage>,
        options: GenerateOptions,
    ) -> Result<spin_sdk::wit_bindgen::StreamReader<Chunk>, StepError> {
        spindle_step::step::exit_after_returning();
        // The prompt already quotes the passages, and the first token may be
        // seconds away with thousands of answers waiting: hold nothing the
        // request does not need.
        drop(passages);
        let cfg = Config::load().await?;
        if cfg.url.is_empty() {
            return Err(StepError::Unavailable("no LLM is configured (variable llm_url is empty)".into()));
        }
        let body = request_body(&cfg, &messages, &options);
        drop(messages);
        let mut upstream = start(&cfg, body, &options).await?;
        // Hold everything up to the first token: an error before it is a
        // clean `Err` (the caller may fall back); after it, it is streamed.
        let mut head = Vec::new();
        let mut text = false;
        while !text {
            let Some(batch) = upstream.next_batch().await else { break };
            for c in batch {
                match c {
                    Chunk::Error(e) if !text => return Err(e),
                    c => {
                        text |= matches!(c, Chunk::Text(_));
                        head.push(c);
                    }
                }
            }
        }
        let (mut tx, rx) = bindings::wit_stream::new::<Chunk>();
        spin_sdk::wit_bindgen::spawn(async move {
            let mut batch = head;
            loop {
                if !batch.is_empty() && !tx.write_all(batch).await.is_empty() {
                    // The reader is gone (client disconnected): returning
                    // drops `upstream` and with it the LLM connection.
                    return;
                }
                match upstream.next_batch().await {
                    Some(b) => batch = b,
                    None => return,
                }
            }
        });
        Ok(rx)
    }
}

bindings::export!(OpenAi with_types_in bindings);
