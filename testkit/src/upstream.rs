//! A fake OpenAI-compatible `/v1/chat/completions` server for protocol,
//! timing and fault tests. It speaks OpenAI's streaming format exactly
//! (`chat.completion.chunk` events, a usage chunk, `data: [DONE]`) and its
//! error bodies, with scripted delays and failures, and records what its
//! client did, including when it went away.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How a streamed answer ends.
#[derive(Clone, Debug)]
pub enum End {
    /// finish_reason "stop", a usage chunk, then `[DONE]`.
    Done,
    /// An in-band `{"error": ...}` event, then the connection closes.
    ErrorEvent(String),
    /// A chunk that is not JSON.
    Malformed,
    /// The connection closes with no finish and no `[DONE]`.
    Drop,
    /// Nothing more is sent, and the connection stays open.
    Stall,
}

#[derive(Clone, Debug)]
pub enum Behaviour {
    Stream {
        tokens: Vec<String>,
        first_delay: Duration,
        per_token: Duration,
        end: End,
    },
    /// The whole stream (role, one chunk per token, finish, `[DONE]`) in
    /// one write, as a fast model or a busy connection delivers it.
    Burst(Vec<String>),
    /// An HTTP error status with an OpenAI error body.
    Status(u16, String),
    /// Reads the request and never answers.
    Hang,
}

impl Behaviour {
    pub fn tokens(n: usize, first_delay_ms: u64, per_token_ms: u64) -> Self {
        Behaviour::Stream {
            tokens: (0..n).map(|i| format!("tok{i} ")).collect(),
            first_delay: Duration::from_millis(first_delay_ms),
            per_token: Duration::from_millis(per_token_ms),
            end: End::Done,
        }
    }

    pub fn ending(self, end: End) -> Self {
        match self {
            Behaviour::Stream { tokens, first_delay, per_token, .. } => {
                Behaviour::Stream { tokens, first_delay, per_token, end }
            }
            other => other,
        }
    }
}

/// A prompt containing this gets an HTTP 500 whatever the behaviour.
pub const FAIL_MARKER: &str = "please-fail-upstream";

/// A prompt containing this followed by a number `n` gets a response whose
/// head carries an `x-padding` header of `n` bytes.
pub const HEAD_PADDING_MARKER: &str = "please-pad-head-";

fn head_padding(body: &[u8]) -> Option<usize> {
    let at = body.windows(HEAD_PADDING_MARKER.len()).position(|w| w == HEAD_PADDING_MARKER.as_bytes())?;
    let rest = &body[at + HEAD_PADDING_MARKER.len()..];
    rest.iter().take_while(|b| b.is_ascii_digit()).map(|&b| char::from(b)).collect::<String>().parse().ok()
}

/// What the upstream saw.
#[derive(Default, Debug)]
pub struct Log {
    pub requests: Vec<serde_json::Value>,
    pub headers: Vec<http::HeaderMap>,
    /// When each token was handed to the connection.
    pub sent: Vec<Instant>,
    pub finished: Option<Instant>,
    /// When the client was found to have gone before the stream ended.
    pub disconnected: Option<Instant>,
}

pub struct Upstream {
    pub origin: String,
    pub log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    let v = serde_json::json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "fake-model",
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    format!("data: {v}\n\n")
}

type Body = BoxBody<Bytes, Infallible>;

impl Upstream {
    pub async fn start(behaviour: Behaviour) -> Upstream {
        Self::start_with(behaviour, true).await
    }

    /// `record: false` keeps no log, for load that would make it grow.
    pub async fn start_with(behaviour: Behaviour, record: bool) -> Upstream {
        let listener = crate::listen::loopback().unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let log = shared.clone();
                let behaviour = behaviour.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        let behaviour = behaviour.clone();
                        async move { Ok::<_, Infallible>(respond(req, behaviour, log, record).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { origin, log, task }
    }

    /// An origin where nothing listens (connection refused).
    pub async fn refused_origin() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        origin
    }
}

async fn respond(
    req: http::Request<hyper::body::Incoming>,
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    record: bool,
) -> http::Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    // A prompt asking for it gets an HTTP 500: lets one server mix failures into load.
    let behaviour = if body.windows(FAIL_MARKER.len()).any(|w| w == FAIL_MARKER.as_bytes()) {
        Behaviour::Status(500, "failure requested by the prompt".into())
    } else {
        behaviour
    };
    let log = if record { log } else { Arc::new(Mutex::new(Log::default())) };
    {
        let mut l = log.lock().unwrap();
        l.requests.push(json.clone());
        l.headers.push(parts.headers.clone());
    }
    if parts.uri.path() != "/v1/chat/completions" {
        return full(404, r#"{"error":{"message":"Unknown request URL","type":"invalid_request_error","param":null,"code":"unknown_url"}}"#.into());
    }
    let padding = head_padding(&body);
    let mut response = match behaviour {
        Behaviour::Status(status, message) => full(
            status,
            serde_json::json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
                .to_string(),
        ),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            full(500, String::new())
        }
        Behaviour::Burst(tokens) => {
            let mut body = chunk(serde_json::json!({"role": "assistant", "content": ""}), None);
            for token in &tokens {
                body.push_str(&chunk(serde_json::json!({"content": token}), None));
            }
            body.push_str(&chunk(serde_json::json!({}), Some("stop")));
            body.push_str("data: [DONE]\n\n");
            let mut response = full(200, body);
            response.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
            response
        }
        Behaviour::Stream { tokens, first_delay, per_token, end } => {
            let include_usage = json["stream_options"]["include_usage"].as_bool().unwrap_or(false);
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                let gone = |log: &Arc<Mutex<Log>>| {
                    log.lock().unwrap().disconnected.get_or_insert_with(Instant::now);
                };
                let send = |text: String| {
                    let tx = tx.clone();
                    async move { tx.send(Ok(Frame::data(Bytes::from(text)))).await.is_ok() }
                };
                if !send(chunk(serde_json::json!({"role": "assistant", "content": ""}), None)).await {
                    return gone(&log);
                }
                for (i, token) in tokens.iter().enumerate() {
                    let wait = if i == 0 { first_delay } else { per_token };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = tx.closed() => return gone(&log),
                    }
                    if !send(chunk(serde_json::json!({"content": token}), None)).await {
                        return gone(&log);
                    }
                    log.lock().unwrap().sent.push(Instant::now());
                }
                if tokens.is_empty() {
                    tokio::time::sleep(first_delay).await;
                }
                let tail = match end {
                    End::Done => {
                        let mut t = chunk(serde_json::json!({}), Some("stop"));
                        if include_usage {
                            let usage = serde_json::json!({
                                "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "fake-model",
                                "choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": tokens.len(), "total_tokens": 42 + tokens.len()},
                            });
                            t.push_str(&format!("data: {usage}\n\n"));
                        }
                        t.push_str("data: [DONE]\n\n");
                        t
                    }
                    End::ErrorEvent(message) => {
                        format!(
                            "data: {}\n\n",
                            serde_json::json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
                        )
                    }
                    End::Malformed => "data: {\"choices\": [this is not json\n\n".to_string(),
                    End::Drop => String::new(),
                    End::Stall => {
                        tx.closed().await;
                        return gone(&log);
                    }
                };
                if !tail.is_empty() && !send(tail).await {
                    return gone(&log);
                }
                log.lock().unwrap().finished = Some(Instant::now());
            });
            let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
            http::Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
    };
    if let Some(n) = padding {
        response.headers_mut().insert("x-padding", "p".repeat(n).parse().unwrap());
    }
    response
}

fn full(status: u16, body: String) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}
