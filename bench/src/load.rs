//! The load: C concurrent SSE clients, each running streams back to back
//! until N streams are done, timing each stream's first text event.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use spindle_wire::sse::Decoder;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How one stream should behave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Normal,
    /// The client leaves after the first text event.
    Disconnect,
    /// The prompt asks the upstream to fail.
    Failing,
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub first_text: Vec<Duration>,
    pub errors: usize,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    pub streams: usize,
    pub elapsed: Duration,
}

/// Runs `total` streams against `url` with `concurrency` clients; `mix`
/// picks each stream's kind from its number.
pub async fn run(url: &str, concurrency: usize, total: usize, mix: fn(usize) -> Kind) -> Outcome {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(concurrency).build(connector);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return out;
                }
                let kind = mix(n);
                let q = if kind == Kind::Failing { spindle_testkit::upstream::FAIL_MARKER } else { "what+is+debian" };
                match one(&client, &format!("{url}?query={q}"), kind).await {
                    Ok(Some(t)) => out.first_text.push(t),
                    Ok(None) => {}
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
                out.streams += 1;
            }
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await.expect("client task");
        all.first_text.extend(o.first_text);
        all.errors += o.errors;
        if all.first_error.is_none() {
            all.first_error = o.first_error;
        }
        all.streams += o.streams;
    }
    all.elapsed = start.elapsed();
    all
}

/// One stream; the time to its first text event, if it had one.
async fn one(client: &Client<HttpConnector, Empty<Bytes>>, url: &str, kind: Kind) -> Result<Option<Duration>, String> {
    let start = Instant::now();
    let req = http::Request::get(url).body(Empty::new()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    if res.status() != 200 {
        return Err(format!("status {}", res.status()));
    }
    let mut body = res.into_body();
    let mut decoder = Decoder::default();
    let mut first = None;
    let mut ended_well = false;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(60), body.frame()).await.map_err(|_| "stalled")? {
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(data) = frame.data_ref() else { continue };
        for e in decoder.feed(data).map_err(|e| e.to_string())? {
            match e.name.as_deref() {
                None if first.is_none() => {
                    first = Some(start.elapsed());
                    if kind == Kind::Disconnect {
                        return Ok(first);
                    }
                }
                Some("done") => ended_well = true,
                Some("error") => return Err(e.data),
                _ => {}
            }
        }
    }
    if !ended_well {
        return Err("stream ended without done".into());
    }
    Ok(first)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}
