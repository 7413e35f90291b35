//! The documented limits on what a client may ask (docs/api.md, "Limits").

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest question, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// `top_k`: how many sources the answer is built from.
pub const DEFAULT_TOP_K: u32 = 5;
pub const MAX_TOP_K: u32 = 20;
/// How many candidates are retrieved for the reranker to choose from.
pub const CANDIDATES_PER_SOURCE: u32 = 4;
pub const MAX_CANDIDATES: u32 = 50;
/// Conversation history: most messages and longest message, in characters.
pub const MAX_HISTORY_MESSAGES: usize = 20;
pub const MAX_HISTORY_CHARS: usize = 8_000;
/// Filters on passage metadata.
pub const MAX_FILTERS: usize = 8;
/// Characters of passage text shown as a source's snippet.
pub const SNIPPET_CHARS: usize = 300;
/// Longest source title shown, in characters, and source URL, in bytes.
pub const MAX_TITLE_CHARS: usize = 300;
pub const MAX_URL_BYTES: usize = 2048;
