//! `reranker-none`: keeps the retriever's order and its first `top-n`
//! passages. For apps whose retriever already ranks well enough, and for
//! measuring a retriever on its own (`scripts/eval-retrieval.py`).

use guest_common::hit::Failure;

async fn keep_order(_query: &str, texts: &[&str], _prior: &[f32]) -> Result<Vec<f32>, Failure> {
    // Descending scores in arrival order; the ranks are what matter.
    Ok((0..texts.len()).map(|i| 1.0 / (1.0 + i as f32)).collect())
}

guest_common::export_reranker!(NoReranker, keep_order);
