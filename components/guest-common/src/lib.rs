//! Code shared by Spindle's guest components.
//!
//! Everything here is plain Rust with no WASI imports, so it builds for the
//! host too: the BM25 index is built by a build script with the same
//! tokeniser the component queries with, and unit tests run natively.

pub mod auth;
pub mod bm25;
#[cfg(feature = "spin")]
pub mod body;
pub mod chunk;
#[cfg(feature = "spin")]
pub mod component;
pub mod corpus;
pub mod embeddings;
pub mod extractive;
pub mod fusion;
pub mod hit;
pub mod lexical;
pub mod openai;
pub mod opensearch;
#[cfg(feature = "spin")]
pub mod remote;
pub mod rerank_api;
#[cfg(feature = "spin")]
pub mod runtime;
#[cfg(feature = "spin")]
pub mod search;
#[cfg(feature = "step")]
pub mod step;
pub mod stores;
pub mod tokenize;

/// At most `max` characters of `s`, marked with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
