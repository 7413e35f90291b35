//! The kit Spindle's steps are written with (wasm guests).
//!
//! - [`export`]: a retriever is a search function plus
//!   [`export_retriever!`], a reranker a scoring function plus
//!   [`export_reranker!`]; the macros generate the WIT bindings, validate
//!   the request with the limits every step shares, convert between
//!   [`hit::Hit`] and the WIT `passage` and map [`hit::Failure`] to
//!   `step-error`. Prompt and generator steps implement their generated
//!   `Guest` trait directly (one or two of each exist).
//! - [`config`]: Spin variables, read once per instance.
//! - [`deadline`]: bounded waits, one timer per stream.
//! - [`step`]: what every exported step function does first.

pub mod config;
pub mod deadline;
pub mod export;
pub mod step;

pub use spindle_text::hit;
