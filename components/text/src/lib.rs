//! Text and ranking, shared by the guests and the host: the tokeniser
//! (Snowball stemming, CJK bigrams), the BM25 index, chunking, Reciprocal
//! Rank Fusion, lexical scoring and extractive answers, and the
//! store-neutral [`hit::Hit`]. Plain Rust with no WASI imports, so the
//! BM25 index is built by a build script with the same tokeniser the
//! component queries with, `spindle index` chunks as the retrievers expect,
//! and unit tests run natively.

pub mod bm25;
pub mod chunk;
pub mod corpus;
pub mod extractive;
pub mod fusion;
pub mod hit;
pub mod lang;
pub mod lexical;
pub mod packed;
pub mod tokenize;

/// At most `max` characters of `s`, marked with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
