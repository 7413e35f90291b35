//! Code shared by Spindle's guest components.
//!
//! Everything here is plain Rust with no WASI imports, so it builds for the
//! host too: the BM25 index is built by a build script with the same
//! tokeniser the component queries with, and unit tests run natively.

pub mod bm25;
pub mod corpus;
pub mod extractive;
pub mod lexical;
pub mod openai;
#[cfg(feature = "spin")]
pub mod runtime;
pub mod sse;
pub mod tokenize;
