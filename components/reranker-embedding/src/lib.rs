//! `reranker-embedding`: scores each candidate by the cosine similarity of
//! query and passage embeddings from the embeddings endpoint (the
//! `embeddings_*` variables), plus `rerank_lexical_weight` times the
//! embedded lexical score (`spindle_text::lexical`: the retriever's score,
//! BM25 over the candidates and query-term coverage, in 0..1).
//!
//! Why the blend: a bi-encoder alone re-sorts candidates into plain dense
//! order and throws away the exact-term evidence hybrid retrieval found;
//! on the Debian FAQ set a small lexical weight lifts nDCG@10 over either
//! signal alone (README "Retrieval quality"). e5 cosines sit in a narrow
//! band (about 0.7-0.9), hence a small weight.
//!
//! For where no cross-encoder runs. Passage vectors are cached in memory
//! and in the key-value store `default`, so a passage is embedded once.

use spindle_clients::embeddings::cosine;
use spindle_clients::search::{Embedder, Side};
use spindle_step::config::variable_or;
use spindle_text::hit::Failure;
use spindle_text::lexical;

const DEFAULT_LEXICAL_WEIGHT: f32 = 0.05;

async fn score(query: &str, texts: &[&str], prior: &[f32], request_id: &str) -> Result<Vec<f32>, Failure> {
    let weight = match variable_or("rerank_lexical_weight", "").await {
        s if s.is_empty() => DEFAULT_LEXICAL_WEIGHT,
        s => s.parse::<f32>().ok().filter(|w| w.is_finite() && *w >= 0.0).ok_or_else(|| {
            Failure::InvalidInput(format!("variable `rerank_lexical_weight` must be a number ≥ 0, got `{s}`"))
        })?,
    };
    let embedder = Embedder::load(request_id).await?;
    let q = embedder.embed(&[query], Side::Query).await?.pop().unwrap_or_default();
    let passages = embedder.embed_cached(texts, Side::Passage).await?;
    let mut scores: Vec<f32> = passages.iter().map(|p| cosine(&q, p)).collect();
    for (i, lex) in lexical::rerank(query, texts, prior) {
        scores[i] += weight * lex;
    }
    Ok(scores)
}

spindle_step::export_reranker!(EmbeddingReranker, score);
