//! What the host records about each request, off the hot path: response
//! bodies are tapped as they stream (first-byte time, size, the gateway's
//! `done`/`error` events), and when a response ends a record goes over a
//! bounded channel to a background task that updates metrics and appends
//! JSON lines to `access.jsonl` (every request) and `queries.jsonl` (every
//! answer: query, per-step timings, tokens, outcome).

use crate::cancel::Guard;
use crate::metrics::{CodeLabels, Metrics, OutcomeLabels, RequestLabels, StepLabels};
use bytes::Bytes;
use guest_common::sse::Decoder;
use http_body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Records waiting for the writer; beyond this they are counted and dropped
/// rather than slowing requests down.
const QUEUE: usize = 16_384;
/// Most request-body bytes kept to find the question of a POST.
const CAPTURE_LIMIT: usize = 16 * 1024;

/// One finished request.
pub struct Record {
    pub started: Started,
    pub status: u16,
    pub duration_s: f64,
    pub first_byte_s: Option<f64>,
    pub bytes: u64,
    pub complete: bool,
    pub done: Option<Value>,
    pub error: Option<Value>,
}

/// Hands records to the background writer.
#[derive(Clone)]
pub struct Observer {
    pub metrics: Arc<Metrics>,
    tx: mpsc::Sender<Record>,
}

impl Observer {
    /// Starts the writer task; `log_dir` `None` keeps metrics only.
    pub fn start(metrics: Arc<Metrics>, log_dir: Option<PathBuf>) -> anyhow::Result<Observer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let files = match &log_dir {
            Some(dir) => Some(LogFiles::open(dir)?),
            None => None,
        };
        tokio::spawn(write_records(rx, metrics.clone(), files));
        Ok(Observer { metrics, tx })
    }

    fn submit(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.metrics.records_dropped.inc();
        }
    }
}

struct LogFiles {
    access: std::io::BufWriter<std::fs::File>,
    queries: std::io::BufWriter<std::fs::File>,
}

impl LogFiles {
    fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| -> anyhow::Result<_> {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name))?;
            Ok(std::io::BufWriter::new(f))
        };
        Ok(LogFiles { access: open("access.jsonl")?, queries: open("queries.jsonl")? })
    }
}

async fn write_records(mut rx: mpsc::Receiver<Record>, metrics: Arc<Metrics>, mut files: Option<LogFiles>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(r) = next.take() {
            account(&metrics, &r);
            if let Some(f) = files.as_mut() {
                let _ = writeln!(f.access, "{}", access_line(&r));
                if let Some(line) = query_line(&r) {
                    let _ = writeln!(f.queries, "{line}");
                }
            }
            next = rx.try_recv().ok();
        }
        // Flush once the queue is drained: batches under load, prompt when idle.
        if let Some(f) = files.as_mut() {
            let _ = f.access.flush();
            let _ = f.queries.flush();
        }
    }
}

fn account(m: &Metrics, r: &Record) {
    m.requests.get_or_create(&RequestLabels { component: r.started.component.clone(), status: r.status }).inc();
    m.request_duration.observe(r.duration_s);
    if let Some(t) = r.first_byte_s {
        m.time_to_first_event.observe(t);
    }
    if !r.complete {
        m.client_disconnects.inc();
    }
    if let Some(done) = &r.done {
        if let Some(timings) = done["timings_ms"].as_object() {
            for step in ["retrieve", "rerank", "prompt", "generate"] {
                if let Some(ms) = timings.get(step).and_then(Value::as_f64) {
                    m.step_duration.get_or_create(&StepLabels { step: step.into() }).observe(ms / 1000.0);
                }
            }
        }
        if let Some(n) = done["usage"]["completion_tokens"].as_u64() {
            m.completion_tokens.inc_by(n);
        }
        if done["fallback"].is_string() && done["generator"] == "extractive" {
            m.fallbacks.inc();
        }
        if let Some(outcome) = done["cache"].as_str() {
            m.answer_cache.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).inc();
        }
    }
    if let Some(code) = r.error.as_ref().and_then(|e| e["code"].as_str()) {
        m.upstream_errors.get_or_create(&CodeLabels { code: code.to_string() }).inc();
    }
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn access_line(r: &Record) -> Value {
    let s = &r.started;
    json!({
        "time": timestamp(s.time), "id": s.id, "method": s.method, "path": s.path, "component": s.component,
        "status": r.status, "duration_ms": (r.duration_s * 1000.0).round(), "first_byte_ms": r.first_byte_s.map(|s| (s * 1000.0).round()),
        "bytes": r.bytes, "complete": r.complete,
    })
}

fn query_line(r: &Record) -> Option<Value> {
    if r.done.is_none() && r.error.is_none() {
        return None;
    }
    let done = r.done.clone().unwrap_or(Value::Null);
    let s = &r.started;
    Some(json!({
        "time": timestamp(s.time), "id": s.id, "route": s.path, "query": s.question(), "status": r.status,
        "outcome": if r.error.is_some() { "error" } else if r.complete { "done" } else { "client_gone" },
        "timings_ms": done["timings_ms"], "usage": done["usage"], "generator": done["generator"],
        "fallback": done["fallback"], "error": r.error,
    }))
}

/// What is known when a request starts.
pub struct Started {
    pub id: String,
    pub time: SystemTime,
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub component: String,
    pub query: Option<String>,
    pub captured: Option<Arc<Mutex<Vec<u8>>>>,
}

impl Started {
    /// The question: the `query` parameter, or from a captured JSON body
    /// its `query` field or its last user message (OpenAI format).
    fn question(&self) -> Option<String> {
        if self.query.is_some() {
            return self.query.clone();
        }
        let body = self.captured.as_ref()?.lock().unwrap().clone();
        let v: Value = serde_json::from_slice(&body).ok()?;
        if let Some(q) = v["query"].as_str() {
            return Some(q.to_string());
        }
        v["messages"].as_array()?.iter().rev().find(|m| m["role"] == "user")?["content"].as_str().map(str::to_string)
    }
}

/// A request body that keeps a copy of its first bytes for the query log.
pub struct CapturedBody<B> {
    inner: B,
    copy: Arc<Mutex<Vec<u8>>>,
}

impl<B> CapturedBody<B> {
    pub fn new(inner: B) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let copy = Arc::new(Mutex::new(Vec::new()));
        (CapturedBody { inner, copy: copy.clone() }, copy)
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for CapturedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut copy = me.copy.lock().unwrap();
            let room = CAPTURE_LIMIT.saturating_sub(copy.len());
            copy.extend_from_slice(&data[..data.len().min(room)]);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body on its way to the client: measured as it streams, and
/// holding the request's cancellation guard until hyper drops it.
pub struct TappedBody<B> {
    inner: B,
    tap: Option<Tap>,
}

struct Tap {
    started: Started,
    status: u16,
    sse: Option<Decoder>,
    first_byte: Option<Instant>,
    bytes: u64,
    ended: bool,
    done: Option<Value>,
    error: Option<Value>,
    observer: Observer,
    _guard: Guard,
}

impl<B> TappedBody<B> {
    pub fn new(inner: B, started: Started, status: u16, sse: bool, observer: Observer, guard: Guard) -> Self {
        observer.metrics.open_streams.inc();
        let tap = Tap {
            started,
            status,
            sse: sse.then(Decoder::default),
            first_byte: None,
            bytes: 0,
            ended: false,
            done: None,
            error: None,
            observer,
            _guard: guard,
        };
        TappedBody { inner, tap: Some(tap) }
    }
}

impl Tap {
    fn saw(&mut self, data: &[u8]) {
        self.first_byte.get_or_insert_with(Instant::now);
        self.bytes += data.len() as u64;
        if let Some(decoder) = self.sse.as_mut() {
            // Tokens travel as unnamed events, so a frame of whole unnamed
            // events holds neither `done` nor `error`: skipping its decoding
            // (an allocation per event, ~2% of CPU at 64 tokens a stream) is
            // exact, never a missed record. Anything else is decoded.
            let whole_unnamed =
                decoder.between_events() && data.ends_with(b"\n\n") && memchr::memmem::find(data, b"event").is_none();
            if whole_unnamed {
                return;
            }
            for event in decoder.feed(data) {
                let slot = match event.name.as_deref() {
                    Some("done") => &mut self.done,
                    Some("error") => &mut self.error,
                    _ => continue,
                };
                *slot = serde_json::from_str(&event.data).ok();
            }
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TappedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let me = self.get_mut();
        let polled = Pin::new(&mut me.inner).poll_frame(cx);
        if let Some(tap) = me.tap.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        tap.saw(data);
                    }
                }
                Poll::Ready(None) => tap.ended = true,
                _ => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for TappedBody<B> {
    fn drop(&mut self) {
        let Some(tap) = self.tap.take() else { return };
        tap.observer.metrics.open_streams.dec();
        let at = tap.started.at;
        let record = Record {
            duration_s: at.elapsed().as_secs_f64(),
            first_byte_s: tap.first_byte.map(|t| t.duration_since(at).as_secs_f64()),
            started: tap.started,
            status: tap.status,
            bytes: tap.bytes,
            complete: tap.ended,
            done: tap.done,
            error: tap.error,
        };
        tap.observer.submit(record);
    }
}
