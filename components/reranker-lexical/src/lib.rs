//! `reranker-lexical`: the embedded default reranker (the retriever's score,
//! BM25 over the candidates and query-term coverage, blended; see
//! `guest_common::lexical`).

mod bindings {
    wit_bindgen::generate!({
        world: "spindle:reranker/reranker-step",
        path: ["../../wit/types", "../../wit/reranker"],
        generate_all,
    });
}

use bindings::exports::spindle::reranker::reranker::Guest;
use bindings::spindle::types::types::{Passage, StepError};

struct Lexical;

impl Guest for Lexical {
    async fn rerank(query: String, passages: Vec<Passage>, top_n: u32) -> Result<Vec<Passage>, StepError> {
        guest_common::step::exit_after_returning();
        let order = {
            let texts: Vec<&str> = passages.iter().map(|p| p.text.as_str()).collect();
            let prior: Vec<f32> = passages.iter().map(|p| p.score).collect();
            guest_common::lexical::rerank(&query, &texts, &prior)
        };
        let mut slots: Vec<Option<Passage>> = passages.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .take(top_n as usize)
            .filter_map(|(i, score)| {
                slots[i].take().map(|mut p| {
                    p.score = score;
                    p
                })
            })
            .collect())
    }
}

bindings::export!(Lexical with_types_in bindings);
