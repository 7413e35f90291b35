//! The end of every streamed answer is explicit. Once the drain timeout
//! passes at shutdown, an answer stream gets a final error frame (code
//! `server_shutdown`) at the next event boundary, then ends; likewise, with
//! code `request_timeout`, once the whole-request deadline passes. (The
//! instance's own deadline covers a request only until its response
//! starts: wasmtime-wasi-http's handler stops counting it then.) And a
//! stream whose component stopped before its last event (a trap, a memory
//! limit, a CPU limit) gets one with code `stream_aborted` instead of
//! ending silently.
//!
//! Frames are written in the stream's own encoding (`spindle-wire`), so an
//! OpenAI client sees an OpenAI error, and the stream's last event is found
//! by decoding it, never by searching its bytes.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use spindle_wire::{ErrorCode, Tracker};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub struct Drainable<B> {
    inner: Option<B>,
    /// Follows an answer stream; `None` for other responses, which are
    /// passed through untouched.
    tracker: Option<Tracker>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The whole-request deadline.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The body's end was returned (hyper must poll until it is, so the
    /// tap sees the end of a stream the host closed).
    ended: bool,
    /// An untracked response was cut short (it has no frame to say so).
    cut_short: bool,
}

impl<B> Drainable<B> {
    pub fn new(inner: B, tracker: Option<Tracker>, cut: CancellationToken, deadline: tokio::time::Instant) -> Self {
        Drainable {
            inner: Some(inner),
            tracker,
            cut: Box::pin(cut.cancelled_owned()),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            ended: false,
            cut_short: false,
        }
    }

    /// Whether the host cut an untracked response short.
    pub fn cut_short(&self) -> bool {
        self.cut_short
    }

    /// The answer stream's tracker, for the record of how it ended.
    pub fn tracker(&self) -> Option<&Tracker> {
        self.tracker.as_ref()
    }

    /// Ends the body, with an error frame first when it is an unfinished
    /// answer stream.
    fn end_with<E>(&mut self, code: ErrorCode) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        self.inner = None;
        let Some(tracker) = self.tracker.as_mut() else {
            self.cut_short = true;
            self.ended = true;
            return Poll::Ready(None);
        };
        let frame = tracker.closing_frame(code);
        tracker.close(code);
        Poll::Ready(frame.map(|f| Ok(Frame::data(Bytes::from(f)))))
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Drainable<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let me = self.get_mut();
        let Some(inner) = me.inner.as_mut() else {
            me.ended = true;
            return Poll::Ready(None);
        };
        // Other responses are cut wherever they are; answers between events.
        if me.tracker.as_ref().is_none_or(Tracker::at_boundary) {
            if me.cut.as_mut().poll(cx).is_ready() {
                return me.end_with(ErrorCode::ServerShutdown);
            }
            if me.deadline.as_mut().poll(cx).is_ready() {
                tracing::warn!("a response ran past the whole-request deadline: ending it");
                return me.end_with(ErrorCode::RequestTimeout);
            }
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(tracker), Some(data)) = (me.tracker.as_mut(), frame.data_ref()) {
                    tracker.feed(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) if me.tracker.as_ref().is_some_and(|t| !t.finished()) => {
                tracing::warn!("stream ended before its last event: appending an error frame");
                me.end_with(ErrorCode::StreamAborted)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(b) => b.is_end_stream(),
            None => self.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}
