//! `reranker-embedding`: reorders candidates by the cosine similarity of
//! query and passage embeddings from the embeddings endpoint (the
//! `embeddings_*` variables), blended with the order they arrived in
//! (`rerank_prior_weight`, see `guest_common::fusion::blend_ranks`). For
//! where no cross-encoder runs; passage vectors are cached in memory and in
//! the key-value store `default`, so a passage is embedded once.

use guest_common::embeddings::cosine;
use guest_common::fusion::blend_ranks;
use guest_common::hit::Failure;
use guest_common::runtime::variable_or;
use guest_common::search::{Embedder, Side};

/// Weight of the incoming order against the embedding similarity.
const DEFAULT_PRIOR_WEIGHT: f32 = 1.0;

async fn score(query: &str, texts: &[&str], prior: &[f32]) -> Result<Vec<f32>, Failure> {
    let weight = match variable_or("rerank_prior_weight", "").await {
        s if s.is_empty() => DEFAULT_PRIOR_WEIGHT,
        s => s.parse::<f32>().ok().filter(|w| *w >= 0.0).ok_or_else(|| {
            Failure::InvalidInput(format!("variable `rerank_prior_weight` must be a number ≥ 0, got `{s}`"))
        })?,
    };
    let embedder = Embedder::load().await?;
    let q = embedder.embed(&[query], Side::Query).await?.pop().unwrap_or_default();
    let passages = embedder.embed_cached(texts, Side::Passage).await?;
    let similarity: Vec<f32> = passages.iter().map(|p| cosine(&q, p)).collect();
    Ok(blend_ranks(&similarity, prior, weight))
}

guest_common::export_reranker!(EmbeddingReranker, score);
