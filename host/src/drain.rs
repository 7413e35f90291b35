//! Ending streams at shutdown without truncating them: once the drain
//! timeout passes, an SSE response gets a final `error` event (code
//! `server_shutdown`) at the next event boundary, then ends; other
//! responses just end.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

const SHUTDOWN_EVENT: &str =
    "event: error\ndata: {\"code\":\"server_shutdown\",\"message\":\"the server is shutting down; please retry\"}\n\n";

pub struct Drainable<B> {
    inner: Option<B>,
    sse: bool,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Whether everything sent so far ends at an event boundary.
    at_boundary: bool,
}

impl<B> Drainable<B> {
    pub fn new(inner: B, sse: bool, cut: CancellationToken) -> Self {
        Drainable { inner: Some(inner), sse, cut: Box::pin(cut.cancelled_owned()), at_boundary: true }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Drainable<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let me = self.get_mut();
        let Some(inner) = me.inner.as_mut() else { return Poll::Ready(None) };
        if me.at_boundary && me.cut.as_mut().poll(cx).is_ready() {
            me.inner = None;
            return Poll::Ready(me.sse.then(|| Ok(Frame::data(Bytes::from_static(SHUTDOWN_EVENT.as_bytes())))));
        }
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !data.is_empty()
        {
            me.at_boundary = data.ends_with(b"\n\n");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}
