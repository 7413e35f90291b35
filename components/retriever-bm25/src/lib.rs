//! `retriever-bm25`: the embedded default retriever. A BM25 inverted index
//! over the bundled corpus, built at component build time (see `build.rs`).

use guest_common::bm25::{StaticDoc, StaticIndex, search};

include!(concat!(env!("OUT_DIR"), "/index.rs"));

mod bindings {
    wit_bindgen::generate!({
        world: "spindle:retriever/retriever-step",
        path: ["../../wit/types", "../../wit/retriever"],
        generate_all,
    });
}

use bindings::exports::spindle::retriever::retriever::{Guest, Retrieval};
use bindings::spindle::types::types::{Passage, Query, StepError};

/// Largest `top-k` served; the gateway enforces its own, smaller limit.
const MAX_TOP_K: u32 = 100;

struct Bm25;

impl Guest for Bm25 {
    async fn retrieve(q: Query) -> Result<Retrieval, StepError> {
        guest_common::step::exit_after_returning();
        if q.text.trim().is_empty() {
            return Err(StepError::InvalidInput("empty query".into()));
        }
        if q.top_k == 0 || q.top_k > MAX_TOP_K {
            return Err(StepError::InvalidInput(format!("top-k must be 1..={MAX_TOP_K}, got {}", q.top_k)));
        }
        let matches =
            |doc: &StaticDoc| q.filters.iter().all(|(k, v)| doc.metadata.iter().any(|(mk, mv)| mk == k && mv == v));
        let hits = search(&INDEX, &q.text, q.top_k as usize, |d| matches(&INDEX.docs[d]));
        let passages = hits
            .into_iter()
            .map(|hit| {
                let doc = &INDEX.docs[hit.doc];
                Passage {
                    id: doc.id.to_string(),
                    text: doc.text.to_string(),
                    title: doc.title.map(str::to_string),
                    url: doc.url.map(str::to_string),
                    score: hit.score,
                    metadata: doc.metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                }
            })
            .collect();
        Ok(Retrieval { passages, degraded: Vec::new() })
    }
}

bindings::export!(Bm25 with_types_in bindings);
