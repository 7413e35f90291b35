//! `reranker-http`: a hosted or self-run reranking model (cross-encoder)
//! behind one of the common rerank APIs: Cohere `/v2/rerank`, Jina
//! `/v1/rerank` or Hugging Face TEI `/rerank` (variable `rerank_api`).
//! Variables: `rerank_url` (origin), `rerank_path` (default per API),
//! `rerank_model`, `rerank_api_key`, `rerank_timeout_ms`.

use spindle_clients::auth::bearer;
use spindle_clients::exchange::{RemoteError, Service};
use spindle_clients::rerank_api::Api;
use spindle_step::config::{variable_or, variable_u64};
use spindle_text::hit::Failure;
use std::time::Duration;

async fn score(query: &str, texts: &[&str], _prior: &[f32], request_id: &str) -> Result<Vec<f32>, Failure> {
    let api: Api = variable_or("rerank_api", "cohere").await.parse().map_err(Failure::InvalidInput)?;
    let base = variable_or("rerank_url", "").await;
    if base.is_empty() {
        return Err(RemoteError::NotConfigured { service: "the reranker", variable: "rerank_url" }.into());
    }
    let timeout = variable_u64("rerank_timeout_ms", 5_000).await.map_err(Failure::InvalidInput)?;
    let service = Service {
        name: "the reranker",
        base,
        headers: bearer(&variable_or("rerank_api_key", "").await),
        timeout: Duration::from_millis(timeout),
    }
    .for_request(request_id);
    let path = variable_or("rerank_path", api.default_path()).await;
    let model = variable_or("rerank_model", "").await;
    let body = service.post(&path, &api.request(&model, query, texts)).await?;
    api.parse(&body, texts.len()).map_err(|d| service.malformed(&path, d).into())
}

spindle_step::export_reranker!(HttpReranker, score);
