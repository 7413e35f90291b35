//! The events of one answer come from `spindle-wire`, the one home of the
//! host↔app protocol; this module adds where they go: a [`Sink`], and the
//! one sink that encodes them into a streamed body (numbered with SSE
//! `id:`s, and journaled for resumption when a journal is configured).

use spindle_wire::Encoder;
pub use spindle_wire::events::*;

use crate::journal;
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
    /// `id: <stream>:<n>` on every event, n counting from 1.
    ids: Option<(String, usize)>,
    journal: Option<journal::Writer>,
    /// The client left; a journaled answer goes on for a reconnect.
    client_gone: bool,
}

impl<E: Encoder> EncodedSink<E> {
    pub fn new(encoder: E, body: StreamBody) -> Self {
        EncodedSink {
            encoder,
            body,
            last_write: Rc::new(Cell::new(Instant::now())),
            ids: None,
            journal: None,
            client_gone: false,
        }
    }

    /// Numbers every event `<stream>:<n>` and, with a journal, appends it
    /// there before the client gets it (so any id a client saw can be
    /// resumed from).
    pub fn resumable(mut self, stream: &str, journal: Option<journal::Writer>) -> Self {
        self.ids = Some((stream.to_string(), 0));
        self.journal = journal;
        self
    }

    /// Marks the journaled answer complete.
    pub async fn finish(&mut self) {
        if let Some(j) = &self.journal {
            j.finish().await;
        }
    }
}

impl<E: Encoder> Sink for EncodedSink<E> {
    async fn send_all(&mut self, events: Vec<Event>) -> Result<(), Gone> {
        let mut frames = Vec::with_capacity(events.len());
        for event in &events {
            let mut encoded = String::new();
            self.encoder.encode(event, &mut encoded);
            if encoded.is_empty() {
                continue;
            }
            // Ids count the frames sent, so `n` is also the frame's place
            // in the journal.
            frames.push(match &mut self.ids {
                Some((stream, n)) => {
                    *n += 1;
                    format!("id: {stream}:{n}\n{encoded}")
                }
                None => encoded,
            });
        }
        if frames.is_empty() {
            return Ok(());
        }
        if let Some(j) = &mut self.journal
            && let Err(e) = j.append(&frames).await
        {
            // The answer goes on unjournaled: a reconnect will find it
            // incomplete and say so.
            eprintln!("{e}");
            self.journal = None;
        }
        if self.client_gone {
            return if self.journal.is_some() { Ok(()) } else { Err(Gone) };
        }
        // A failed send means the host dropped the body: the client is gone.
        if self.body.send(frames.concat()).await.is_err() {
            self.client_gone = true;
            return if self.journal.is_some() { Ok(()) } else { Err(Gone) };
        }
        self.last_write.set(Instant::now());
        Ok(())
    }
}
