//! Reading a streamed HTTP response body (an LLM answer) straight from its
//! `wasi:http` stream into one small buffer that is reused for every read.
//!
//! spin-sdk's `IncomingBody` allocates a fresh 16 KiB buffer for every read
//! and lends it to the host while the read waits. An LLM stream waits
//! between tokens nearly all the time, so each open answer held 16 KiB of
//! the instance's linear memory (which never shrinks) and paid a 16 KiB
//! allocation and free per token, for chunks of a few hundred bytes.

use spin_sdk::http::Response;
use spin_sdk::wasip3::http::types::{self, ErrorCode};
use spin_sdk::wasip3::wit_bindgen::{FutureReader, FutureWriter, StreamReader, StreamResult};
use spin_sdk::wasip3::wit_future;

/// Bytes one read may return. OpenAI-style stream chunks are a few hundred
/// bytes; more than this waiting at once simply takes more reads.
pub const READ_SIZE: usize = 2048;

/// The body of a response, read piece by piece.
pub struct BodyReader {
    stream: StreamReader<u8>,
    /// Tells the host how reading went; kept open while the body is read.
    _result: FutureWriter<Result<(), ErrorCode>>,
    /// Resolves once the body has ended: with an error if it was cut off.
    trailers: Option<FutureReader<Result<Option<types::Trailers>, ErrorCode>>>,
    buf: Vec<u8>,
}

impl BodyReader {
    /// Takes over the body of `resp`, which must not have been read yet.
    pub fn new(resp: Response) -> Result<Self, String> {
        let mut body = resp.into_body();
        let msg = body.take_unstarted().ok_or("the response body was already read")?;
        let (result, reader) = wit_future::new(|| Ok(()));
        let (stream, trailers) = types::Response::consume_body(msg, reader);
        Ok(BodyReader { stream, _result: result, trailers: Some(trailers), buf: Vec::with_capacity(READ_SIZE) })
    }

    /// The next piece of the body; `None` once it has ended cleanly, an
    /// error if the connection failed.
    pub async fn next(&mut self) -> Option<Result<&[u8], String>> {
        loop {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let (result, buf) = self.stream.read(buf).await;
            self.buf = buf;
            match result {
                StreamResult::Complete(0) => continue,
                StreamResult::Complete(_) => return Some(Ok(&self.buf)),
                StreamResult::Dropped | StreamResult::Cancelled => {
                    let trailers = self.trailers.take()?;
                    return match trailers.await {
                        Ok(_) => None,
                        Err(e) => Some(Err(format!("{e:?}"))),
                    };
                }
            }
        }
    }
}
