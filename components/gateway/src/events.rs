//! The events of one answer come from `spindle-wire`, the one home of the
//! host↔app protocol; this module adds where they go: a [`Sink`], and the
//! one sink that encodes them into a streamed body.

use spindle_wire::Encoder;
pub use spindle_wire::events::*;

use crate::stream_body::StreamBody;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// The client went away; stop all work.
pub struct Gone;

/// Where events go.
pub trait Sink {
    async fn send(&mut self, event: Event) -> Result<(), Gone> {
        self.send_all(vec![event]).await
    }

    /// Sends events that exist at the same moment (the tokens of one
    /// upstream read). Sinks that write bytes write them all at once: one
    /// body write instead of one per token.
    async fn send_all(&mut self, events: Vec<Event>) -> Result<(), Gone>;
}

/// Encodes events with `E` into a streamed response body.
pub struct EncodedSink<E> {
    pub encoder: E,
    pub body: StreamBody,
    /// When the body was last written to (for heartbeats).
    pub last_write: Rc<Cell<Instant>>,
}

impl<E: Encoder> EncodedSink<E> {
    pub fn new(encoder: E, body: StreamBody) -> Self {
        EncodedSink { encoder, body, last_write: Rc::new(Cell::new(Instant::now())) }
    }
}

impl<E: Encoder> Sink for EncodedSink<E> {
    async fn send_all(&mut self, events: Vec<Event>) -> Result<(), Gone> {
        let mut data = String::new();
        for event in &events {
            self.encoder.encode(event, &mut data);
        }
        if data.is_empty() {
            return Ok(());
        }
        // A failed send means the host dropped the body: the client is gone.
        self.body.send(data).await?;
        self.last_write.set(Instant::now());
        Ok(())
    }
}
