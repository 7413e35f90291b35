//! JSON over HTTP with remote services, without the transport: the
//! service's description (name, origin, auth headers, deadline), how an
//! answer is read (status, size limit, JSON), and errors that name the
//! service, the URL and what went wrong, with credentials and query strings
//! kept out of them. The guests send through Spin (`remote`, feature
//! `spin`), `spindle index` through a blocking client; both read answers
//! here.

use serde_json::Value;
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
pub fn error_text(body: &[u8]) -> String {
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

    /// Where a call to `path` goes.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches('/'))
    }

    /// The URL of a call to `path` as messages show it: without userinfo
    /// or query string, which may hold credentials.
    pub fn shown_url(&self, path: &str) -> String {
        redact(&self.url(path))
    }

    /// A failure of this service's answer, for callers that check its JSON.
    pub fn malformed(&self, path: &str, detail: impl Into<String>) -> RemoteError {
        RemoteError::Malformed { service: self.name, url: self.shown_url(path), detail: detail.into() }
    }

    /// The call to `path` could not be made or broke off.
    pub fn unreachable(&self, path: &str, detail: impl Into<String>) -> RemoteError {
        RemoteError::Unreachable { service: self.name, url: self.shown_url(path), detail: detail.into() }
    }

    /// The call to `path` did not finish within the deadline.
    pub fn timed_out(&self, path: &str) -> RemoteError {
        RemoteError::Timeout { service: self.name, url: self.shown_url(path), ms: self.timeout.as_millis() }
    }

    /// The answer to a call to `path` grew past [`MAX_RESPONSE_BYTES`].
    pub fn too_large(&self, path: &str) -> RemoteError {
        self.malformed(path, format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"))
    }

    /// Reads a whole answer to a call to `path`: a 2xx status with a JSON
    /// body, or an error quoting what the service said.
    pub fn answer(&self, path: &str, status: u16, body: &[u8]) -> Result<Value, RemoteError> {
        if !(200..300).contains(&status) {
            return Err(RemoteError::Status {
                service: self.name,
                url: self.shown_url(path),
                status,
                message: error_text(body),
            });
        }
        serde_json::from_slice(body).map_err(|e| {
            let start = spindle_text::truncate(&String::from_utf8_lossy(body), 120);
            self.malformed(path, format!("not JSON ({e}): {start}"))
        })
    }
}

/// `url` without userinfo (`user:password@`), query string and fragment.
/// A URL that does not parse is not shown at all: where its credentials
/// end cannot be told.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let shown = u.to_string();
            // `Url` adds a `/` to an empty path; keep the base as written.
            if url.split(['?', '#']).next().is_some_and(|s| !s.ends_with('/')) && u.path() == "/" {
                shown.trim_end_matches('/').to_string()
            } else {
                shown
            }
        }
        Err(_) => "(a URL that does not parse)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(base: &str) -> Service {
        Service { name: "the thing", base: base.into(), headers: Vec::new(), timeout: Duration::from_millis(5) }
    }

    #[test]
    fn credentials_never_reach_a_message() {
        let s = service("http://user:secret@search.example:9200");
        let e = s.answer("/idx/_search?api-key=k2", 503, br#"{"error": "down"}"#).unwrap_err().to_string();
        assert_eq!(e, "the thing at http://search.example:9200/idx/_search answered HTTP 503: down");
        assert!(!s.timed_out("/x?token=t").to_string().contains("token"));
        assert_eq!(redact("https://a:b@h/p?q#f"), "https://h/p");
        assert_eq!(redact("http://h:1"), "http://h:1");
        assert_eq!(redact("http://h:1/v1/chat/completions"), "http://h:1/v1/chat/completions");
        // Unencoded separators in a password: nothing of it is shown.
        for bad in ["http://alice:pa/ss@h/v1", "http://alice:p?x@h", "http://alice:p#x@h"] {
            let shown = redact(bad);
            assert!(!shown.contains("alice") && !shown.contains("ss@") && !shown.contains("x@"), "{bad}: {shown}");
        }
    }

    #[test]
    fn answers_are_json_or_an_error_quoting_the_service() {
        let s = service("http://h");
        assert_eq!(s.answer("/", 200, br#"{"a":1}"#).unwrap()["a"], 1);
        let e = s.answer("/", 200, b"<html>").unwrap_err().to_string();
        assert!(e.starts_with("the thing at http://h/ sent an unusable response: not JSON"), "{e}");
        let long = "x".repeat(1000);
        let e = s.answer("/", 500, long.as_bytes()).unwrap_err().to_string();
        assert!(e.len() < 400, "error bodies are quoted in part: {}", e.len());
    }
}
