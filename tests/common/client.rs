//! An HTTP client for tests that reads SSE responses event by event and
//! stamps each event with its arrival time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spindle_wire::sse::{Decoder, Event};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub type Body = Full<Bytes>;

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response whose body is read incrementally.
pub struct Stream {
    pub status: u16,
    pub headers: http::HeaderMap,
    body: hyper::body::Incoming,
    decoder: Decoder,
    pending: VecDeque<Event>,
    /// Raw bytes seen, for assertions on framing.
    pub raw: Vec<u8>,
}

pub async fn get(url: &str) -> Stream {
    send(http::Request::get(url).body(Body::default()).unwrap()).await
}

pub async fn post_json(url: &str, json: &str) -> Stream {
    send(
        http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json.to_string())))
            .unwrap(),
    )
    .await
}

/// The status of a GET, or `None` if the server cannot be reached.
pub async fn try_get(url: &str) -> Option<u16> {
    let req = http::Request::get(url).body(Body::default()).unwrap();
    client().request(req).await.ok().map(|r| r.status().as_u16())
}

pub async fn send(req: http::Request<Body>) -> Stream {
    let res = client().request(req).await.expect("request failed");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    Stream {
        status,
        headers,
        body: res.into_body(),
        decoder: Decoder::default(),
        pending: VecDeque::new(),
        raw: Vec::new(),
    }
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next event and when it arrived; `None` at the end of the body.
    /// Panics if nothing arrives within `limit`: a hang is a failure.
    pub async fn next_event_within(&mut self, limit: Duration) -> Option<(Event, Instant)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some((e, Instant::now()));
            }
            let frame = tokio::time::timeout(limit, self.body.frame()).await.expect("stream stalled");
            match frame {
                None => return None,
                Some(Err(e)) => panic!("body error: {e}"),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.raw.extend_from_slice(data);
                        // Bodies that are not event streams (scripts, pages)
                        // are read whole through `raw`; their lines may pass
                        // the decoder's limit, which is no failure here.
                        self.pending.extend(self.decoder.feed(data).unwrap_or_default());
                    }
                }
            }
        }
    }

    pub async fn next_event(&mut self) -> Option<(Event, Instant)> {
        self.next_event_within(Duration::from_secs(30)).await
    }

    /// Every remaining event.
    pub async fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some((e, _)) = self.next_event().await {
            out.push(e);
        }
        out
    }

    /// The whole body as JSON (for error responses).
    pub async fn json(self) -> serde_json::Value {
        let bytes = self.body.collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }
}

/// Names of the events, with `text` for unnamed ones.
pub fn names(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.name.clone().unwrap_or_else(|| "text".into())).collect()
}

pub fn text(events: &[Event]) -> String {
    events.iter().filter(|e| e.name.is_none()).map(|e| e.data.as_str()).collect()
}

pub fn data(events: &[Event], name: &str) -> serde_json::Value {
    let e = events
        .iter()
        .find(|e| e.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {name} event in {:?}", names(events)));
    serde_json::from_str(&e.data).unwrap()
}

/// Runs an SDK client script from tests/clients against `base`; returns
/// the JSON it prints.
pub fn run_sdk_client(program: &str, script: &str, base: &str) -> serde_json::Value {
    let dir = super::spindle::repo_root().join("tests/clients");
    let out = std::process::Command::new(program)
        .arg(dir.join(script))
        .arg(base)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script} printed no JSON ({e})"))
}
