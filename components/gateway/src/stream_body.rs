//! Streamed response bodies written straight into the `wasi:http` body
//! stream: one copy and one stream write per event.
//!
//! spin-sdk's `body::stream` puts a channel and an `http_body` adapter task
//! between the writer and the body stream, a second hop (and a wakeup) for
//! every token of every answer; this is the direct path for the routes that
//! stream. Clones share the one writer, so a heartbeat and the answer can
//! both write, each write whole.

use crate::api::ChatRequest;
use crate::events::Gone;
use futures::lock::Mutex;
use spin_sdk::http::{BoxBody, HeaderMap, HeaderValue, IntoResponse, Response};
use spin_sdk::wasip3::http::types::{self, ErrorCode, Fields};
use spin_sdk::wasip3::http_compat::BodyWriter;
use spindle_wire::Encoding;
use spindle_wire::headers as wire_headers;
use std::rc::Rc;

/// The writing end of a streamed body.
#[derive(Clone)]
pub struct StreamBody(Rc<Mutex<Option<BodyWriter>>>);

impl StreamBody {
    /// Writes `data` whole; `Gone` once the client (or the host) dropped
    /// the body.
    pub async fn send(&self, data: String) -> Result<(), Gone> {
        let mut writer = self.0.lock().await;
        let writer = writer.as_mut().ok_or(Gone)?;
        let unwritten = writer.stream_writer.write_all(data.into_bytes()).await;
        if unwritten.is_empty() { Ok(()) } else { Err(Gone) }
    }

    /// Ends the body cleanly (no trailers). A body dropped without this ends
    /// with an error, which closes the connection: the client can tell a
    /// cut-off answer from a complete one.
    pub async fn finish(&self) {
        let Some(BodyWriter { stream_writer, result_writer, .. }) = self.0.lock().await.take() else { return };
        drop(stream_writer);
        // The host may have gone already; there is no one left to tell.
        let _ = result_writer.write(Ok(None)).await;
    }
}

/// A `200` SSE response for `chat` in `encoding` (never cached or buffered
/// by proxies; with the request id, the encoding and the question for the
/// host's logs) whose body is written through the returned [`StreamBody`].
pub fn sse(chat: &ChatRequest, encoding: Encoding) -> Result<(StreamBody, types::Response), ErrorCode> {
    sse_stream(&chat.request_id, Some(&chat.query), encoding, false)
}

/// [`sse`] for a stream `request_id` names; `journaled` tells the host the
/// answer outlives its client (it must not cancel its calls).
pub fn sse_stream(
    request_id: &str,
    query: Option<&str>,
    encoding: Encoding,
    journaled: bool,
) -> Result<(StreamBody, types::Response), ErrorCode> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(wire_headers::ENCODING, HeaderValue::from_static(encoding.header_value()));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(wire_headers::REQUEST_ID, id);
    }
    if let Some(Ok(query)) = query.map(|q| HeaderValue::from_str(&wire_headers::encode_query(q))) {
        headers.insert(wire_headers::QUERY, query);
    }
    if journaled {
        headers.insert(wire_headers::JOURNALED, HeaderValue::from_static("1"));
    }
    let fields = Fields::try_from(headers).map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let (writer, contents, trailers) = BodyWriter::new();
    let (response, _transmitted) = types::Response::new(fields, Some(contents), trailers);
    response.set_status_code(200).map_err(|()| ErrorCode::InternalError(Some("status 200 refused".into())))?;
    Ok((StreamBody(Rc::new(Mutex::new(Some(writer)))), response))
}

/// Converts an ordinary (buffered) response for the router.
pub fn buffered(res: Response<BoxBody>) -> Result<types::Response, ErrorCode> {
    res.into_response()
}
