//! Blocking JSON calls for the indexer, with errors that name the service,
//! the URL and the status. The indexer is a batch job, so plain blocking
//! I/O (ureq) keeps it simple; the serving path uses the pooled hyper
//! client instead.

use anyhow::{Context, bail};
use serde_json::Value;
use std::time::Duration;

/// One remote service the indexer writes to.
pub struct Service {
    pub name: &'static str,
    pub base: String,
    pub headers: Vec<(String, String)>,
    agent: ureq::Agent,
}

/// Largest response body read, in bytes.
const MAX_RESPONSE: u64 = 64 << 20;

impl Service {
    pub fn new(name: &'static str, base: &str, headers: Vec<(String, String)>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build();
        Service { name, base: base.trim_end_matches('/').to_string(), headers, agent: agent.into() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; returns the status and the JSON body (`Null` when
    /// the body is empty or not JSON, as for a `HEAD`).
    pub fn call(&self, method: &str, path: &str, body: Option<(&str, String)>) -> anyhow::Result<(u16, Value)> {
        let url = self.url(path);
        let mut req = http::Request::builder().method(method).uri(&url).header("accept", "application/json");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let result = match body {
            Some((content_type, body)) => self.agent.run(req.header("content-type", content_type).body(body)?),
            None => self.agent.run(req.body(())?),
        };
        let mut resp = result.with_context(|| format!("cannot reach {} at {url}", self.name))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .with_context(|| format!("reading the answer of {} at {url}", self.name))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A call that must succeed (2xx).
    pub fn ok(&self, method: &str, path: &str, body: Option<(&str, String)>) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            bail!("{} at {} answered HTTP {status}: {}", self.name, self.url(path), value);
        }
        Ok(value)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.ok("POST", path, Some(("application/json", body.to_string())))
    }
}
