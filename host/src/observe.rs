//! What the host records about each request, off the hot path: response
//! bodies are tapped as they stream (first-byte time, size), answer streams
//! are read back through `spindle-wire` (their typed `done` or `error`), and
//! when a response ends a record goes over a bounded channel to a
//! background task that updates metrics and appends JSON lines to
//! `access.jsonl` (every request) and `queries.jsonl` (every answer: query,
//! per-step timings, tokens, outcome), each rotated by size ([`crate::logfile`]).

use crate::cancel::Guard;
use crate::drain::Drainable;
use crate::logfile::{LogFile, Rotation};
use crate::metrics::{CodeLabels, Metrics, OutcomeLabels, RequestLabels, StepLabels};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use spindle_wire::{Done, End, ErrorBody};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// Records waiting for the writer; beyond this they are counted and dropped
/// rather than slowing requests down.
const QUEUE: usize = 16_384;

/// One finished request.
pub struct Record {
    pub started: Started,
    pub status: u16,
    pub duration_s: f64,
    pub first_byte_s: Option<f64>,
    pub bytes: u64,
    pub complete: bool,
    /// How an answer stream ended, as it said.
    pub end: Option<End>,
}

impl Record {
    fn done(&self) -> Option<&Done> {
        match &self.end {
            Some(End::Done(d)) => Some(d),
            _ => None,
        }
    }

    fn error(&self) -> Option<&ErrorBody> {
        match &self.end {
            Some(End::Error(e)) => Some(e),
            _ => None,
        }
    }
}

/// Hands records to the background writer.
#[derive(Clone)]
pub struct Observer {
    pub metrics: Arc<Metrics>,
    tx: mpsc::Sender<Record>,
}

impl Observer {
    /// Starts the writer task; `log_dir` `None` keeps metrics only.
    pub fn start(metrics: Arc<Metrics>, log_dir: Option<PathBuf>, rotation: Rotation) -> anyhow::Result<Observer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let files = match &log_dir {
            Some(dir) => Some(LogFiles::open(dir, rotation)?),
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
    access: LogFile,
    queries: LogFile,
}

impl LogFiles {
    fn open(dir: &Path, rotation: Rotation) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| LogFile::open(dir.join(name), rotation);
        Ok(LogFiles { access: open("access.jsonl")?, queries: open("queries.jsonl")? })
    }
}

async fn write_records(mut rx: mpsc::Receiver<Record>, metrics: Arc<Metrics>, mut files: Option<LogFiles>) {
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(r) = next.take() {
            account(&metrics, &r);
            if let Some(f) = files.as_mut() {
                let _ = f.access.write_line(&access_line(&r).to_string());
                if let Some(line) = query_line(&r) {
                    let _ = f.queries.write_line(&line.to_string());
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
    if let Some(done) = r.done() {
        for (step, ms) in done.timings_ms.steps() {
            m.step_duration.get_or_create(&StepLabels { step: step.as_str().into() }).observe(ms / 1000.0);
        }
        if let Some(usage) = done.usage {
            m.completion_tokens.inc_by(usage.completion_tokens.into());
        }
        if done.fell_back() {
            m.fallbacks.inc();
        }
        m.answer_cache.get_or_create(&OutcomeLabels { outcome: done.cache.as_str().to_string() }).inc();
    }
    if let Some(error) = r.error() {
        m.stream_errors.get_or_create(&CodeLabels { code: error.code.as_str().to_string() }).inc();
    }
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn access_line(r: &Record) -> Value {
    let s = &r.started;
    json!({
        "time": timestamp(s.time), "id": s.id, "method": s.method, "path": s.path, "component": s.component,
        "revision": s.revision, "status": r.status, "duration_ms": (r.duration_s * 1000.0).round(), "first_byte_ms": r.first_byte_s.map(|s| (s * 1000.0).round()),
        "bytes": r.bytes, "complete": r.complete,
    })
}

fn query_line(r: &Record) -> Option<Value> {
    let end = r.end.as_ref()?;
    let s = &r.started;
    let outcome = match end {
        End::Error(_) => "error",
        End::Done(_) if r.complete => "done",
        End::Done(_) => "client_gone",
    };
    let done = r.done();
    Some(json!({
        "time": timestamp(s.time), "id": s.id, "route": s.path, "query": s.query, "revision": s.revision, "status": r.status,
        "outcome": outcome,
        "timings_ms": done.map(|d| &d.timings_ms), "usage": done.and_then(|d| d.usage),
        "generator": done.map(|d| &d.generator), "fallback": done.and_then(|d| d.fallback.as_ref()),
        "error": r.error(),
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
    /// The question, as the app validated it (from its response head).
    pub query: Option<String>,
    /// The revision of the app that answered.
    pub revision: String,
}

/// A response body on its way to the client: measured as it streams, and
/// holding the request's cancellation guard until hyper drops it.
pub struct TappedBody<B> {
    inner: Drainable<B>,
    tap: Option<Tap>,
}

struct Tap {
    started: Started,
    status: u16,
    /// How a whole answer ended, from its head.
    end: Option<End>,
    first_byte: Option<Instant>,
    bytes: u64,
    ended: bool,
    observer: Observer,
    _guard: Guard,
    /// What must live as long as the stream: the app producing it.
    _app: Arc<dyn Send + Sync>,
}

impl<B> TappedBody<B> {
    pub fn new(
        inner: Drainable<B>,
        started: Started,
        status: u16,
        end: Option<End>,
        observer: Observer,
        guard: Guard,
        app: Arc<dyn Send + Sync>,
    ) -> Self {
        observer.metrics.open_streams.inc();
        let tap =
            Tap { started, status, end, first_byte: None, bytes: 0, ended: false, observer, _guard: guard, _app: app };
        TappedBody { inner, tap: Some(tap) }
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
                        tap.first_byte.get_or_insert_with(Instant::now);
                        tap.bytes += data.len() as u64;
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
            complete: tap.ended && !self.inner.cut_short(),
            end: self.inner.tracker().and_then(|t| t.end().cloned()).or(tap.end),
        };
        tap.observer.submit(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        let started = Started {
            id: format!("req-{n}"),
            time: SystemTime::now(),
            at: Instant::now(),
            method: "GET".into(),
            path: "/api/chat/stream".into(),
            component: "gateway".into(),
            query: None,
            revision: "0123456789ab".into(),
        };
        Record { started, status: 200, duration_s: 0.01, first_byte_s: None, bytes: 10, complete: true, end: None }
    }

    #[tokio::test]
    async fn the_access_log_rotates_by_size() {
        let dir = std::env::temp_dir().join(format!("spindle-observe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // An access line is about 200 bytes: every few lines start a new file.
        let rotation = Rotation { max_bytes: 1000, keep: 2 };
        let observer = Observer::start(Arc::new(Metrics::new()), Some(dir.clone()), rotation).unwrap();
        for n in 0..40 {
            observer.submit(record(n));
        }
        let last = dir.join("access.jsonl.2");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let ids = |name: &str| -> Vec<String> {
            let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
                .collect()
        };
        while !ids("access.jsonl").contains(&"req-39".to_string()) {
            assert!(Instant::now() < deadline, "the writer did not write every record");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(last.exists(), "two old files are kept");
        assert!(!dir.join("access.jsonl.3").exists(), "no more than two");
        for name in ["access.jsonl", "access.jsonl.1", "access.jsonl.2"] {
            let size = std::fs::metadata(dir.join(name)).unwrap().len();
            assert!(size > 0 && size <= 1000, "{name}: {size} bytes");
        }
        // The newest records, in order, across the kept files.
        let kept: Vec<String> =
            ["access.jsonl.2", "access.jsonl.1", "access.jsonl"].iter().flat_map(|n| ids(n)).collect();
        let first: usize = kept[0].trim_start_matches("req-").parse().unwrap();
        let expected: Vec<String> = (first..40).map(|n| format!("req-{n}")).collect();
        assert_eq!(kept, expected);
        assert!(first > 0, "the oldest records were dropped with their file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
