//! `GET|POST /api/chat/stream`: the answer as Spindle's Server-Sent Events,
//! every event numbered (`id: <request id>:<n>`); with a stream journal
//! configured ([`crate::journal`]), a request carrying `Last-Event-ID`
//! resumes that stream instead of asking anew.

use crate::api;
use crate::events::{EncodedSink, ErrorCode as EventError, Event};
use crate::journal::{self, Poll, Reader, Writer};
use crate::pipeline;
use crate::stream_body::{self, StreamBody};
use futures::future::{Either, select};
use spin_sdk::http::Request;
use spin_sdk::wasip3::http::types::{self, ErrorCode};
use spindle_step::config::variable_u64;
use spindle_wire::{Encoder, Encoding, SpindleEncoder, sse};
use std::cell::Cell;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Default interval of `: keep-alive` comments on an idle stream.
const DEFAULT_HEARTBEAT_MS: u64 = 15_000;

/// Writes a comment whenever nothing was written for `interval`, so proxies
/// with read timeouts keep the stream open. Each write is a whole comment
/// between whole events. Ends when the client has gone.
async fn heartbeat(body: StreamBody, last_write: Rc<Cell<Instant>>, interval: Duration) {
    loop {
        let idle = last_write.get().elapsed();
        if idle < interval {
            spin_sdk::time::sleep(interval - idle).await;
            continue;
        }
        if body.send(sse::comment("keep-alive")).await.is_err() {
            return;
        }
        last_write.set(Instant::now());
    }
}

/// Renews the journal's `alive` key for as long as the answer is produced.
async fn lease(writer: Writer) {
    loop {
        if let Err(e) = writer.renew().await {
            eprintln!("{e}");
        }
        spin_sdk::time::sleep(journal::LEASE_EVERY).await;
    }
}

async fn heartbeat_interval() -> Result<Duration, String> {
    variable_u64("heartbeat_ms", DEFAULT_HEARTBEAT_MS).await.map(|ms| Duration::from_millis(ms.max(1)))
}

pub async fn handle(req: Request) -> Result<types::Response, ErrorCode> {
    let config = async { Ok::<_, String>((journal::configured().await?, heartbeat_interval().await?)) };
    let (journal_at, interval) = match config.await {
        Ok(c) => c,
        Err(e) => return stream_body::buffered(api::error(500, "configuration_error", &e)),
    };
    if let Some(last) = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()) {
        return resume(last, journal_at, interval).await;
    }
    let chat = match api::parse(req).await {
        Ok(c) => c,
        Err(e) => return stream_body::buffered(e.into_response()),
    };
    let deadlines = match pipeline::Deadlines::load().await {
        Ok(d) => d,
        Err(e) => return stream_body::buffered(api::error(500, "configuration_error", &e)),
    };
    // A journal that cannot be reached costs resumability, not the answer.
    let (writer, renewer) = match &journal_at {
        Some((url, ttl)) => {
            match (Writer::open(url, *ttl, &chat.request_id).await, Writer::open(url, *ttl, &chat.request_id).await) {
                (Ok(w), Ok(r)) => (Some(w), Some(r)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("{e}");
                    (None, None)
                }
            }
        }
        None => (None, None),
    };
    let journaled = writer.is_some();
    let (body, response) = stream_body::sse_stream(&chat.request_id, Some(&chat.query), Encoding::Spindle, journaled)?;
    spin_sdk::wasip3::spawn(async move {
        let id = chat.request_id.clone();
        let mut sink = EncodedSink::new(SpindleEncoder, body.clone()).resumable(&id, writer);
        let last_write = sink.last_write.clone();
        let beats = async {
            heartbeat(body.clone(), last_write, interval).await;
            // A journaled answer goes on without its client.
            if journaled {
                std::future::pending::<()>().await;
            }
        };
        let renew = async {
            match renewer {
                Some(r) => lease(r).await,
                None => std::future::pending().await,
            }
        };
        // Whichever ends first ends the stream: the answer, or the heartbeat
        // finding the client gone.
        select(pin!(pipeline::run(chat, &deadlines, &mut sink)), pin!(select(pin!(beats), pin!(renew)))).await;
        sink.finish().await;
        body.finish().await;
    });
    Ok(response)
}

/// Resumes stream `<id>:<n>` from the journal: the frames after the n-th,
/// then new ones as they are appended, until the last event; an
/// `origin_lost` error if the producing replica stops first.
async fn resume(
    last_event_id: &str,
    journal_at: Option<(String, u64)>,
    interval: Duration,
) -> Result<types::Response, ErrorCode> {
    let Some((stream, seen)) = journal::parse_last_event_id(last_event_id) else {
        let message = "Last-Event-ID must be an event id of this API: <request id>:<n>";
        return stream_body::buffered(api::error(400, "invalid_last_event_id", message));
    };
    let Some((url, _)) = journal_at else {
        let message = "this server keeps no stream journal (stream_journal_url): ask again without Last-Event-ID";
        return stream_body::buffered(api::error(410, "stream_not_resumable", message));
    };
    let reader = match Reader::open(&url, &stream).await {
        Ok(r) => r,
        Err(e) => return stream_body::buffered(api::error(503, "journal_unavailable", &e)),
    };
    // From the last frame the client has, to know whether it was the end.
    let first = match reader.read(seen.saturating_sub(1)).await {
        Ok(Poll::Frames(mut f)) => {
            if seen > 0 && !f.is_empty() {
                let had = f.remove(0);
                // The client has the whole answer: 204 tells an
                // EventSource to stop reconnecting.
                if journal::is_last(&had) {
                    let empty =
                        spin_sdk::http::Response::builder().status(204).body(spin_sdk::http::box_body(String::new()));
                    return stream_body::buffered(empty.expect("a bare 204 is valid"));
                }
            }
            f
        }
        Ok(Poll::Missing) => {
            let message = "no journal of this stream: it expired or never existed; ask again without Last-Event-ID";
            return stream_body::buffered(api::error(410, "stream_expired", message));
        }
        Err(e) => return stream_body::buffered(api::error(503, "journal_unavailable", &e)),
    };
    let (body, response) = stream_body::sse_stream(&stream, None, Encoding::Spindle, false)?;
    spin_sdk::wasip3::spawn(async move {
        let last_write = Rc::new(Cell::new(Instant::now()));
        let relay = relay(&reader, &stream, seen, first, &body, &last_write);
        // Ends with the relay, or when the heartbeat finds the client gone.
        if let Either::Left(_) = select(pin!(relay), pin!(heartbeat(body.clone(), last_write.clone(), interval))).await
        {
            body.finish().await;
        }
    });
    Ok(response)
}

async fn relay(
    reader: &Reader,
    stream: &str,
    mut next: usize,
    mut frames: Vec<String>,
    body: &StreamBody,
    last_write: &Cell<Instant>,
) {
    loop {
        if !frames.is_empty() {
            next += frames.len();
            let done = frames.last().is_some_and(|f| journal::is_last(f));
            if body.send(frames.concat()).await.is_err() {
                return;
            }
            last_write.set(Instant::now());
            if done {
                return;
            }
        }
        spin_sdk::time::sleep(journal::POLL_EVERY).await;
        frames = match reader.read(next).await {
            Ok(Poll::Frames(f)) => f,
            Ok(Poll::Missing) | Err(_) => Vec::new(),
        };
        // Nothing new and nobody producing (read again: the producer may
        // have finished between the two looks): the answer is lost.
        if frames.is_empty() && !reader.origin_alive().await.unwrap_or(false) {
            if let Ok(Poll::Frames(f)) = reader.read(next).await
                && !f.is_empty()
            {
                frames = f;
                continue;
            }
            let mut frame = format!("id: {stream}:{}\n", next + 1);
            SpindleEncoder.encode(
                &Event::error(EventError::OriginLost, "the server producing this answer stopped; ask again"),
                &mut frame,
            );
            let _ = body.send(frame).await;
            return;
        }
    }
}
