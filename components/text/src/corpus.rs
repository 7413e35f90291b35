//! The JSON-lines corpus format: one document per line with `id`, `title`,
//! `text`, `url` and string `metadata`. Used by the BM25 build script and the
//! indexing tools alike.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One document of a corpus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Document {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    pub text: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Parses a JSON-lines corpus, naming the line of the first bad record.
pub fn parse_jsonl(input: &str) -> Result<Vec<Document>, String> {
    input
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}
