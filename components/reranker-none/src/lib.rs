//! `reranker-none`: keeps the retriever's order and its first `top-n`
//! passages. For apps whose retriever already ranks well enough, and for
//! measuring a retriever on its own (`scripts/eval-retrieval.py`).

use spindle_text::hit::Failure;

async fn keep_order(_query: &str, _texts: &[&str], prior: &[f32], _request_id: &str) -> Result<Vec<f32>, Failure> {
    // Retrievers return best first with descending scores, and the sort
    // is stable: the incoming scores keep the incoming order.
    Ok(prior.to_vec())
}

spindle_step::export_reranker!(NoReranker, keep_order);
