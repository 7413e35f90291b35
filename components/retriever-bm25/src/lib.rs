//! `retriever-bm25`: the embedded default retriever. A BM25 inverted index
//! over the bundled corpus, built at component build time (see `build.rs`).

use guest_common::bm25::Index;
use std::sync::OnceLock;

mod bindings {
    wit_bindgen::generate!({
        world: "spindle:retriever/retriever-step",
        path: ["../../wit/types", "../../wit/retriever"],
        generate_all,
    });
}

use bindings::exports::spindle::retriever::retriever::Guest;
use bindings::spindle::types::types::{Passage, Query, StepError};

/// Largest `top-k` served; the gateway enforces its own, smaller limit.
const MAX_TOP_K: u32 = 100;

static INDEX_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/index.bin"));

fn index() -> Result<&'static Index, StepError> {
    static INDEX: OnceLock<Result<Index, String>> = OnceLock::new();
    INDEX.get_or_init(|| Index::from_bytes(INDEX_BYTES)).as_ref().map_err(|e| StepError::Internal(e.clone()))
}

struct Bm25;

impl Guest for Bm25 {
    async fn retrieve(q: Query) -> Result<Vec<Passage>, StepError> {
        if q.text.trim().is_empty() {
            return Err(StepError::InvalidInput("empty query".into()));
        }
        if q.top_k == 0 || q.top_k > MAX_TOP_K {
            return Err(StepError::InvalidInput(format!("top-k must be 1..={MAX_TOP_K}, got {}", q.top_k)));
        }
        let index = index()?;
        let hits = index
            .search(&q.text, q.top_k as usize, |doc| q.filters.iter().all(|(k, v)| doc.metadata.get(k) == Some(v)));
        Ok(hits
            .into_iter()
            .map(|hit| {
                let doc = index.doc(hit.doc);
                Passage {
                    id: doc.id.clone(),
                    text: doc.text.clone(),
                    title: doc.title.clone(),
                    url: doc.url.clone(),
                    score: hit.score,
                    metadata: doc.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                }
            })
            .collect())
    }
}

bindings::export!(Bm25 with_types_in bindings);
