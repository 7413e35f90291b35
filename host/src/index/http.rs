//! Blocking JSON calls for the indexer. The services, how their answers
//! are read and the errors that name them are `spindle_clients::exchange`,
//! shared with the guests; this is only the transport. The indexer is a
//! batch job, so plain blocking I/O (ureq) keeps it simple; the serving
//! path uses the pooled hyper client instead.

use serde_json::Value;
use spindle_clients::exchange::{self, MAX_RESPONSE_BYTES};
use std::time::Duration;

/// One remote service the indexer writes to.
pub struct Service {
    remote: exchange::Service,
    agent: ureq::Agent,
}

impl Service {
    pub fn new(name: &'static str, base: &str, headers: Vec<(String, String)>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build();
        let remote = exchange::Service { name, base: base.trim_end_matches('/').to_string(), headers, timeout };
        Service { remote, agent: agent.into() }
    }

    /// Where the service is, as messages show it (no credentials).
    pub fn shown(&self) -> String {
        self.remote.shown_url("")
    }

    /// A failure of this service's answer to a call to `path`.
    pub fn malformed(&self, path: &str, detail: impl Into<String>) -> anyhow::Error {
        self.remote.malformed(path, detail).into()
    }

    /// Sends a request; returns the status and the raw body.
    fn send(&self, method: &str, path: &str, body: Option<(&str, String)>) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut req =
            http::Request::builder().method(method).uri(self.remote.url(path)).header("accept", "application/json");
        for (k, v) in &self.remote.headers {
            req = req.header(k, v);
        }
        let result = match body {
            Some((content_type, body)) => self.agent.run(req.header("content-type", content_type).body(body)?),
            None => self.agent.run(req.body(())?),
        };
        let mut resp = result.map_err(|e| self.remote.unreachable(path, e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes =
            resp.body_mut().with_config().limit(MAX_RESPONSE_BYTES as u64).read_to_vec().map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => self.remote.too_large(path),
                e => self.remote.unreachable(path, format!("the response broke off: {e}")),
            })?;
        Ok((status, bytes))
    }

    /// Sends a request; returns the status and the JSON body (`Null` when
    /// the body is empty or not JSON, as for a `HEAD`).
    pub fn call(&self, method: &str, path: &str, body: Option<(&str, String)>) -> anyhow::Result<(u16, Value)> {
        let (status, bytes) = self.send(method, path, body)?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// A call that must succeed (2xx) with a JSON answer.
    pub fn ok(&self, method: &str, path: &str, body: Option<(&str, String)>) -> anyhow::Result<Value> {
        let (status, bytes) = self.send(method, path, body)?;
        Ok(self.remote.answer(path, status, &bytes)?)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.ok("POST", path, Some(("application/json", body.to_string())))
    }
}
