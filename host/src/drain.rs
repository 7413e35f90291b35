//! The end of every streamed response is explicit. Once the drain timeout
//! passes at shutdown, an SSE response gets a final `error` event (code
//! `server_shutdown`) at the next event boundary, then ends; likewise, with
//! code `request_timeout`, once the whole-request deadline passes. (The
//! instance's own deadline covers a request only until its response
//! starts: wasmtime-wasi-http's handler stops counting it then.) And an SSE
//! response whose component stopped before its last event (a trap, a
//! memory limit, a CPU limit) gets an `error` event (code `stream_aborted`)
//! instead of ending silently.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

const SHUTDOWN_EVENT: &str =
    "event: error\ndata: {\"code\":\"server_shutdown\",\"message\":\"the server is shutting down; please retry\"}\n\n";
const TIMEOUT_EVENT: &str = "event: error\ndata: {\"code\":\"request_timeout\",\"message\":\"the answer ran past the server's deadline for a whole request\"}\n\n";
const ABORTED_EVENT: &str = "event: error\ndata: {\"code\":\"stream_aborted\",\"message\":\"the component stopped before the answer was complete\"}\n\n";

/// Markers of a stream's last event: ours (`done` / `error`) and the
/// OpenAI encoding's (`[DONE]` / an error object).
const END_MARKERS: [&[u8]; 4] = [b"event: done\n", b"event: error\n", b"data: [DONE]", b"data: {\"error\""];

pub struct Drainable<B> {
    inner: Option<B>,
    sse: bool,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The whole-request deadline.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Whether everything sent so far ends at an event boundary.
    at_boundary: bool,
    /// Whether the last event of the stream has been sent.
    finished: bool,
}

impl<B> Drainable<B> {
    pub fn new(inner: B, sse: bool, cut: CancellationToken, deadline: tokio::time::Instant) -> Self {
        Drainable {
            inner: Some(inner),
            sse,
            cut: Box::pin(cut.cancelled_owned()),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            at_boundary: true,
            finished: false,
        }
    }

    /// Ends the body, with `event` first when it is an unfinished SSE stream.
    fn end_with<E>(&mut self, event: &'static str) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        self.inner = None;
        let emit = self.sse && !self.finished;
        let boundary = if self.at_boundary { "" } else { "\n\n" };
        self.finished = true;
        Poll::Ready(emit.then(|| Ok(Frame::data(Bytes::from(format!("{boundary}{event}"))))))
    }
}

fn has_end_marker(data: &[u8]) -> bool {
    END_MARKERS.iter().any(|m| memchr::memmem::find(data, m).is_some())
}

impl<B: Body<Data = Bytes> + Unpin> Body for Drainable<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let me = self.get_mut();
        let Some(inner) = me.inner.as_mut() else { return Poll::Ready(None) };
        if me.at_boundary {
            if me.cut.as_mut().poll(cx).is_ready() {
                return me.end_with(SHUTDOWN_EVENT);
            }
            if me.deadline.as_mut().poll(cx).is_ready() {
                tracing::warn!("a response ran past the whole-request deadline: ending it");
                return me.end_with(TIMEOUT_EVENT);
            }
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    me.at_boundary = data.ends_with(b"\n\n");
                    me.finished |= me.sse && has_end_marker(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) if me.sse && !me.finished => {
                tracing::warn!("stream ended before its last event: appending an error event");
                me.end_with(ABORTED_EVENT)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}
