//! The store-neutral search result and step failure that the remote
//! retrievers and rerankers share before converting to their WIT types.

/// One passage as a search engine returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The passage (chunk) id: `<document id>#<chunk number>` for indexed chunks.
    pub id: String,
    pub text: String,
    pub title: Option<String>,
    pub url: Option<String>,
    /// Higher is better; only comparable within one result list.
    pub score: f32,
    pub metadata: Vec<(String, String)>,
}

impl Hit {
    /// The document a chunk belongs to: its `doc_id` metadata, else the id.
    pub fn doc_id(&self) -> &str {
        self.metadata.iter().find(|(k, _)| k == "doc_id").map(|(_, v)| v.as_str()).unwrap_or(&self.id)
    }
}

/// Why a step failed, in the four kinds of the WIT `step-error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

/// Keeps the best-ranked hit of each document, in order: several chunks of
/// one document would otherwise crowd other documents out of the sources.
pub fn collapse_by_doc(hits: Vec<Hit>, top: usize) -> Vec<Hit> {
    let mut seen = std::collections::HashSet::new();
    hits.into_iter().filter(|h| seen.insert(h.doc_id().to_string())).take(top).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, doc: &str) -> Hit {
        Hit {
            id: id.into(),
            text: String::new(),
            title: None,
            url: None,
            score: 0.0,
            metadata: vec![("doc_id".into(), doc.into())],
        }
    }

    #[test]
    fn collapse_keeps_first_chunk_of_each_document() {
        let hits = vec![hit("a#1", "a"), hit("a#0", "a"), hit("b#0", "b"), hit("c#0", "c")];
        let ids: Vec<_> = collapse_by_doc(hits, 2).into_iter().map(|h| h.id).collect();
        assert_eq!(ids, ["a#1", "b#0"]);
    }
}
