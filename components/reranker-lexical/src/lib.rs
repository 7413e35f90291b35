//! `reranker-lexical`: the embedded default reranker (the retriever's score,
//! BM25 over the candidates and query-term coverage, blended; see
//! `spindle_text::lexical`).

use spindle_text::hit::Failure;
use spindle_text::lexical;

async fn score(query: &str, texts: &[&str], prior: &[f32], _request_id: &str) -> Result<Vec<f32>, Failure> {
    let mut scores = vec![0.0; texts.len()];
    for (i, s) in lexical::rerank(query, texts, prior) {
        scores[i] = s;
    }
    Ok(scores)
}

spindle_step::export_reranker!(Lexical, score);
