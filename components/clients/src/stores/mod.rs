//! The vector stores the vector retriever and the indexer speak, each a
//! small module of request builders and response parsers over its REST API.
//! Which one is used is the variable `vector_store`.

pub mod chroma;
pub mod milvus;

/// A supported vector store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Chroma,
    Milvus,
}

impl std::str::FromStr for Store {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "chroma" => Ok(Store::Chroma),
            "milvus" => Ok(Store::Milvus),
            other => Err(format!("unknown vector store `{other}` (expected `chroma` or `milvus`)")),
        }
    }
}
