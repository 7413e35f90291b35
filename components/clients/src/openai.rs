//! The OpenAI chat-completions wire format: request bodies and the
//! `stream: true` chunk stream (`data: {chat.completion.chunk}` ... `data: [DONE]`),
//! including the error objects OpenAI-compatible servers send.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// One thing an upstream stream event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Text(String),
    Finish(String),
    Usage {
        prompt_tokens: u32,
        completion_tokens: u32,
    },
    /// The `[DONE]` sentinel: the stream is complete.
    Done,
}

/// Why an upstream event could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamError {
    /// The upstream reported an error object (in-band, mid-stream).
    Upstream(String),
    /// The event was not a chat.completion.chunk.
    Malformed(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Upstream(m) => write!(f, "upstream error: {m}"),
            StreamError::Malformed(m) => write!(f, "malformed upstream chunk: {m}"),
        }
    }
}

/// One `chat.completion.chunk`, parsed in a single pass: the fields Spindle
/// reads are typed and borrowed where the JSON allows (content without
/// escapes), everything else is skipped without being built. This runs once
/// per token, so a `serde_json::Value` tree per chunk was a measurable cost.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    /// Present only on in-band errors; kept as a tree to read its message.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

/// Decodes the data of one upstream SSE event.
pub fn parse_event(data: &str) -> Result<Vec<StreamItem>, StreamError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(vec![StreamItem::Done]);
    }
    let chunk: Chunk<'_> =
        serde_json::from_str(data).map_err(|e| StreamError::Malformed(format!("{e}: {}", preview(data))))?;
    if let Some(err) = &chunk.error {
        return Err(StreamError::Upstream(error_message(err)));
    }
    if chunk.choices.is_none() && chunk.usage.is_none() {
        return Err(StreamError::Malformed(format!("no `choices`: {}", preview(data))));
    }
    let mut items = Vec::new();
    if let Some(choice) = chunk.choices.into_iter().flatten().next() {
        if let Some(text) = choice.delta.and_then(|d| d.content).filter(|t| !t.is_empty()) {
            items.push(StreamItem::Text(text.into_owned()));
        }
        if let Some(reason) = choice.finish_reason {
            items.push(StreamItem::Finish(reason));
        }
    }
    if let Some(u) = chunk.usage {
        items.push(StreamItem::Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens });
    }
    Ok(items)
}

/// The message of an OpenAI error body (`{"error": {"message": ...}}`), or
/// the body itself, shortened, when it is not one.
pub fn error_body_message(body: &[u8]) -> String {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v.get("error").map(error_message).unwrap_or_else(|| preview(&v.to_string())),
        Err(_) => preview(&String::from_utf8_lossy(body)),
    };
    // Quoted to clients and logs: a part is enough, whatever the upstream sent.
    spindle_text::truncate(&message, 300)
}

fn error_message(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| preview(&other.to_string())),
    }
}

fn preview(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A streaming chat-completions request, borrowing its text.
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// The JSON body of a streaming chat-completions request. Serialised from
/// borrowed text: a prompt holds several passages, and building a `Value`
/// tree first copied all of them once more per request.
pub fn chat_request(
    model: &str,
    messages: &[(&str, &str)],
    max_tokens: Option<u32>,
    temperature: Option<f32>,
) -> String {
    let body = ChatRequest {
        model,
        messages: messages.iter().map(|&(role, content)| ChatMessage { role, content }).collect(),
        stream: true,
        stream_options: StreamOptions { include_usage: true },
        max_tokens,
        temperature,
    };
    serde_json::to_string(&body).expect("borrowed strings and numbers always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_content_finish_usage_and_done() {
        let c = r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(parse_event(c).unwrap(), vec![StreamItem::Text("Hi".into())]);
        let f = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_event(f).unwrap(), vec![StreamItem::Finish("stop".into())]);
        let u = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        assert_eq!(parse_event(u).unwrap(), vec![StreamItem::Usage { prompt_tokens: 3, completion_tokens: 2 }]);
        assert_eq!(parse_event("[DONE]").unwrap(), vec![StreamItem::Done]);
        // Escaped content cannot be borrowed; it must still come out decoded.
        let e = r#"{"choices":[{"delta":{"content":"a\"b\n\u4e2d"},"finish_reason":null}]}"#;
        assert_eq!(parse_event(e).unwrap(), vec![StreamItem::Text("a\"b\n中".into())]);
        // Servers send `"delta": null` or `"content": null` on the last chunk.
        let n = r#"{"choices":[{"delta":null,"finish_reason":"length"}]}"#;
        assert_eq!(parse_event(n).unwrap(), vec![StreamItem::Finish("length".into())]);
    }

    #[test]
    fn chat_request_streams_with_usage_and_only_the_options_given() {
        let body: Value =
            serde_json::from_str(&chat_request("m", &[("system", "s \"q\""), ("user", "u")], None, None)).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "system", "content": "s \"q\""}, {"role": "user", "content": "u"}]})
        );
        let body: Value = serde_json::from_str(&chat_request("m", &[], Some(7), Some(0.5))).unwrap();
        assert_eq!((body["max_tokens"].as_u64(), body["temperature"].as_f64()), (Some(7), Some(0.5)));
    }

    #[test]
    fn reports_errors_and_garbage() {
        assert_eq!(
            parse_event(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
            Err(StreamError::Upstream("overloaded".into()))
        );
        assert!(matches!(parse_event("{not json"), Err(StreamError::Malformed(_))));
        assert!(matches!(parse_event(r#"{"foo":1}"#), Err(StreamError::Malformed(_))));
        assert!(matches!(parse_event(r#"{"choices":[{"delta":{"content":7}}]}"#), Err(StreamError::Malformed(_))));
        assert_eq!(parse_event(r#"{"error":"quota"}"#), Err(StreamError::Upstream("quota".into())));
        assert_eq!(error_body_message(br#"{"error":{"message":"bad key"}}"#), "bad key");
    }
}
