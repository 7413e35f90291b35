//! `GET|POST /api/chat/stream`: the answer as Server-Sent Events.

use crate::api;
use crate::events::Event;
use crate::pipeline::{self, Gone, Sink};
use futures::SinkExt;
use futures::channel::mpsc::Sender;
use futures::future::select;
use guest_common::runtime::variable_u64;
use guest_common::sse;
use spin_sdk::http::{BoxBody, Request, Response, body, box_body};
use std::cell::Cell;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Default interval of `: keep-alive` comments on an idle stream.
const DEFAULT_HEARTBEAT_MS: u64 = 15_000;

struct SseSink {
    tx: Sender<String>,
    last_write: Rc<Cell<Instant>>,
}

impl Sink for SseSink {
    async fn send(&mut self, event: Event) -> Result<(), Gone> {
        // A failed send means the host dropped the body: the client is gone.
        self.tx.send(event.to_sse()).await.map_err(|_| Gone)?;
        self.last_write.set(Instant::now());
        Ok(())
    }
}

/// Writes a comment whenever nothing was written for `interval`, so proxies
/// with read timeouts keep the stream open. Each write is a whole comment
/// between whole events. Ends when the client has gone.
async fn heartbeat(mut tx: Sender<String>, last_write: Rc<Cell<Instant>>, interval: Duration) {
    loop {
        let idle = last_write.get().elapsed();
        if idle < interval {
            spin_sdk::time::sleep(interval - idle).await;
            continue;
        }
        if tx.send(sse::comment("keep-alive")).await.is_err() {
            return;
        }
        last_write.set(Instant::now());
    }
}

pub async fn handle(req: Request) -> Response<BoxBody> {
    let chat = match api::parse(req).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let deadlines = match pipeline::Deadlines::load().await {
        Ok(d) => d,
        Err(e) => return api::error(500, "configuration_error", &e),
    };
    let interval = match variable_u64("heartbeat_ms", DEFAULT_HEARTBEAT_MS).await {
        Ok(ms) => Duration::from_millis(ms.max(1)),
        Err(e) => return api::error(500, "configuration_error", &e),
    };
    let request_id = chat.request_id.clone();
    let (tx, body) = body::stream::<String>();
    spin_sdk::wasip3::spawn(async move {
        let last_write = Rc::new(Cell::new(Instant::now()));
        let mut sink = SseSink { tx: tx.clone(), last_write: last_write.clone() };
        // Whichever ends first ends the stream: the answer, or the heartbeat
        // finding the client gone. Dropping both senders closes the body.
        select(pin!(pipeline::run(chat, &deadlines, &mut sink)), pin!(heartbeat(tx, last_write, interval))).await;
    });
    stream_response(request_id, body)
}

/// The headers of every streamed answer: SSE, never cached or buffered by
/// proxies, with the request id.
pub fn stream_response(
    request_id: String,
    body: impl http_body::Body<Data = bytes::Bytes, Error = anyhow::Error> + Send + 'static,
) -> Response<BoxBody> {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .header("x-request-id", request_id)
        .body(box_body(body))
        .expect("static headers are valid")
}
