//! `retriever-hybrid`: keyword (OpenSearch BM25) and vector search run
//! concurrently and fused with Reciprocal Rank Fusion (`hybrid_rrf_k`,
//! default 60), de-duplicated by passage id, then collapsed to one passage
//! per document.
//!
//! Fusion lives in a retriever rather than the gateway because a Spin
//! component takes one dependency per WIT package: the gateway cannot
//! import two retrievers. Swapping this one line in `spin.toml` turns hybrid
//! search on or off.
//!
//! A side that fails or misses its deadline (`keyword_timeout_ms`,
//! `vector_timeout_ms`) degrades the answer: the other side's results are
//! returned and the failure is listed in `degraded` (shown in the `done`
//! event). Only when both fail does retrieval fail.

use spindle_clients::exchange::RemoteError;
use spindle_clients::search::{Keyword, Vector};
use spindle_step::config::variable_or;
use spindle_step::export::{Found, Request};
use spindle_text::fusion::{DEFAULT_K, rrf};
use spindle_text::hit::{Failure, Hit, collapse_by_doc};

async fn keyword(r: &Request, k: u32) -> Result<Vec<Hit>, RemoteError> {
    Keyword::load(&r.request_id).await?.search(&r.text, &r.filters, k).await
}

async fn vector(r: &Request, k: u32) -> Result<Vec<Hit>, RemoteError> {
    Vector::load(&r.request_id).await?.search(&r.text, &r.filters, k).await
}

async fn search(r: Request) -> Result<Found, Failure> {
    let rrf_k =
        match variable_or("hybrid_rrf_k", "").await {
            s if s.is_empty() => DEFAULT_K,
            s => s.parse::<f32>().ok().filter(|k| *k >= 0.0).ok_or_else(|| {
                Failure::InvalidInput(format!("variable `hybrid_rrf_k` must be a number ≥ 0, got `{s}`"))
            })?,
        };
    let depth = r.top_k * 2;
    let (kw, vec) = futures::join!(keyword(&r, depth), vector(&r, depth));
    let mut lists = Vec::new();
    let mut degraded = Vec::new();
    let mut failures = Vec::new();
    for (name, result) in [("keyword", kw), ("vector", vec)] {
        match result {
            Ok(hits) => lists.push(hits),
            Err(e) => {
                degraded.push(format!("{name}: {e}"));
                failures.push(e);
            }
        }
    }
    if lists.is_empty() {
        let message = format!("both searches failed: {}", degraded.join("; "));
        return Err(if failures.iter().all(RemoteError::is_timeout) {
            Failure::Timeout(message)
        } else {
            Failure::Unavailable(message)
        });
    }
    let fused = rrf(lists, rrf_k, usize::MAX);
    Ok(Found { hits: collapse_by_doc(fused, r.top_k as usize), degraded })
}

spindle_step::export_retriever!(Hybrid, search);
