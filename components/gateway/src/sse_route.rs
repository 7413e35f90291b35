//! `GET|POST /api/chat/stream`: the answer as Spindle's Server-Sent Events.

use crate::api;
use crate::events::EncodedSink;
use crate::pipeline;
use crate::stream_body::{self, StreamBody};
use futures::future::select;
use spin_sdk::http::Request;
use spin_sdk::wasip3::http::types::{self, ErrorCode};
use spindle_step::config::variable_u64;
use spindle_wire::{Encoding, SpindleEncoder, sse};
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
    let (body, response) = stream_body::sse(&chat, Encoding::Spindle)?;
    spin_sdk::wasip3::spawn(async move {
        let mut sink = EncodedSink::new(SpindleEncoder, body.clone());
        let last_write = sink.last_write.clone();
        // Whichever ends first ends the stream: the answer, or the heartbeat
        // finding the client gone.
        select(pin!(pipeline::run(chat, &deadlines, &mut sink)), pin!(heartbeat(body.clone(), last_write, interval)))
            .await;
        body.finish().await;
    });
    Ok(response)
}
