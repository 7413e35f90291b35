//! Cancellation that follows a request outwards.
//!
//! wasmtime cannot cancel one guest task inside a shared instance, and a
//! guest only notices a gone client on its next write, so a request waiting
//! on a slow LLM would keep that LLM generating (Spin's behaviour, spin#3541).
//! Instead the host registers each inbound request under its `X-Request-Id`,
//! which the gateway forwards on its outbound calls; when the client goes
//! away, every outbound request carrying that id is dropped at once (its
//! connection closes, so the model server stops), and the guest sees the
//! failure and unwinds. Ids are unique among open requests: a request that
//! brings an id already in use gets a new one, so no request can cancel,
//! or be cancelled with, another's calls.

use bytes::Bytes;
use http_body::{Body, Frame};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime_wasi_http::Error as HttpError;

/// Open inbound requests by id.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<HashMap<String, CancellationToken>>>);

impl Registry {
    /// Registers an inbound request under `id` if no open request has it;
    /// dropping the guard cancels it. `None` when the id is taken.
    pub fn register(&self, id: &str) -> Option<Guard> {
        let mut map = self.0.lock().unwrap();
        if map.contains_key(id) {
            return None;
        }
        map.insert(id.to_string(), CancellationToken::new());
        Some(Guard { registry: self.clone(), id: id.to_string() })
    }

    /// The token of an open inbound request.
    pub fn token(&self, id: &str) -> Option<CancellationToken> {
        self.0.lock().unwrap().get(id).cloned()
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Held for as long as the client may still read the response.
pub struct Guard {
    registry: Registry,
    id: String,
}

impl Guard {
    /// Lets the request's outbound calls run on after its client leaves
    /// (the id is released now, not cancelled later).
    pub fn detach(&mut self) {
        self.registry.0.lock().unwrap().remove(&self.id);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(token) = self.registry.0.lock().unwrap().remove(&self.id) {
            token.cancel();
        }
    }
}

/// An outbound response body that ends with an error, dropping the
/// connection, as soon as its inbound request is cancelled.
pub struct CancellableBody<B> {
    inner: Option<B>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<B> CancellableBody<B> {
    pub fn new(inner: B, token: CancellationToken) -> Self {
        CancellableBody { inner: Some(inner), cancelled: Box::pin(token.cancelled_owned()) }
    }
}

impl<B: Body<Data = Bytes, Error = HttpError> + Unpin> Body for CancellableBody<B> {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let me = self.get_mut();
        let Some(inner) = me.inner.as_mut() else { return Poll::Ready(None) };
        if me.cancelled.as_mut().poll(cx).is_ready() {
            me.inner = None;
            return Poll::Ready(Some(Err(HttpError::ConnectionTerminated)));
        }
        Pin::new(inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_in_use_is_refused_and_free_again_when_its_request_ends() {
        let reg = Registry::default();
        let a = reg.register("x").unwrap();
        assert!(reg.register("x").is_none(), "a second open request may not share the id");
        let token = reg.token("x").unwrap();
        drop(a);
        assert!(token.is_cancelled());
        assert_eq!(reg.open(), 0);
        assert!(reg.register("x").is_some());
    }
}
