//! `GET|POST /api/chat/stream`: the answer as Server-Sent Events.

use crate::api;
use crate::events::Event;
use crate::pipeline::{self, Gone, Sink};
use crate::stream_body::{self, StreamBody};
use futures::future::select;
use guest_common::runtime::variable_u64;
use guest_common::sse;
use spin_sdk::http::Request;
use spin_sdk::wasip3::http::types::{self, ErrorCode};
use std::cell::Cell;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Default interval of `: keep-alive` comments on an idle stream.
const DEFAULT_HEARTBEAT_MS: u64 = 15_000;

struct SseSink {
    body: StreamBody,
    last_write: Rc<Cell<Instant>>,
}

impl Sink for SseSink {
    async fn send(&mut self, event: Event) -> Result<(), Gone> {
        self.send_all(vec![event]).await
    }

    async fn send_all(&mut self, events: Vec<Event>) -> Result<(), Gone> {
        let data: String = events.iter().map(Event::to_sse).collect();
        if data.is_empty() {
            return Ok(());
        }
        // A failed send means the host dropped the body: the client is gone.
        self.body.send(data).await?;
        self.last_write.set(Instant::now());
        Ok(())
    }
}

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

pub async fn handle(req: Request) -> Result<types::Response, ErrorCode> {
    let chat = match api::parse(req).await {
        Ok(c) => c,
        Err(e) => return stream_body::buffered(e.into_response()),
    };
    let deadlines = match pipeline::Deadlines::load().await {
        Ok(d) => d,
        Err(e) => return stream_body::buffered(api::error(500, "configuration_error", &e)),
    };
    let interval = match variable_u64("heartbeat_ms", DEFAULT_HEARTBEAT_MS).await {
        Ok(ms) => Duration::from_millis(ms.max(1)),
        Err(e) => return stream_body::buffered(api::error(500, "configuration_error", &e)),
    };
    let (body, response) = stream_body::sse(&chat.request_id)?;
    spin_sdk::wasip3::spawn(async move {
        let last_write = Rc::new(Cell::new(Instant::now()));
        let mut sink = SseSink { body: body.clone(), last_write: last_write.clone() };
        // Whichever ends first ends the stream: the answer, or the heartbeat
        // finding the client gone.
        select(pin!(pipeline::run(chat, &deadlines, &mut sink)), pin!(heartbeat(body.clone(), last_write, interval)))
            .await;
        body.finish().await;
    });
    Ok(response)
}
