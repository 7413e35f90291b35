//! `retriever-bm25`: the embedded default retriever. A BM25 inverted index
//! over the bundled corpus, built at component build time (see `build.rs`).

use spindle_step::export::{Found, Request};
use spindle_text::bm25::{StaticDoc, StaticIndex, search};
use spindle_text::hit::{Failure, Hit};

include!(concat!(env!("OUT_DIR"), "/index.rs"));

async fn retrieve(q: Request) -> Result<Found, Failure> {
    let matches =
        |doc: &StaticDoc| q.filters.iter().all(|(k, v)| doc.metadata.iter().any(|(mk, mv)| mk == k && mv == v));
    let hits = search(&INDEX, &q.text, q.top_k as usize, |d| matches(&INDEX.docs[d]))
        .into_iter()
        .map(|hit| {
            let doc = &INDEX.docs[hit.doc];
            Hit {
                id: doc.id.to_string(),
                text: doc.text.to_string(),
                title: doc.title.map(str::to_string),
                url: doc.url.map(str::to_string),
                score: hit.score,
                metadata: doc.metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            }
        })
        .collect();
    Ok(Found { hits, degraded: Vec::new() })
}

spindle_step::export_retriever!(Bm25, retrieve);
