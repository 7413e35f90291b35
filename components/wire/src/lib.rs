//! The wire between Spindle's host and its app, in one place: the events of
//! an answer ([`events`]), their SSE framing ([`sse`]), the two encodings a
//! client can ask for with their end and error frames ([`encoding`]), the
//! reading of a stream back by the host ([`tracker`]) and the header names
//! ([`headers`]). The gateway writes through it and the host reads through
//! it, so the compiler checks both sides of the contract.

/// Spindle SSE and OpenAI chunk encodings.
pub mod encoding;
/// Answer events.
pub mod events;
/// Header names.
pub mod headers;
/// SSE framing.
pub mod sse;
/// Reading a stream back.
pub mod tracker;

pub use encoding::{Encoder, Encoding, OpenAiEncoder, SpindleEncoder};
pub use events::{CacheOutcome, Done, End, ErrorBody, ErrorCode, Event, Meta, Source, Timings, Usage};
pub use tracker::Tracker;
