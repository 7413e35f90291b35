//! `retriever-opensearch`: BM25 on an Elasticsearch 8 / OpenSearch 2 index
//! through `_search` (see `spindle_clients::opensearch` for the request
//! features it relies on). Variables: `opensearch_url` (origin),
//! `opensearch_index`, `opensearch_fields`, `opensearch_username` +
//! `opensearch_password` or `opensearch_api_key`, `keyword_timeout_ms`.

use spindle_clients::search::Keyword;
use spindle_step::export::{Found, Request};
use spindle_text::hit::{Failure, collapse_by_doc};

async fn search(r: Request) -> Result<Found, Failure> {
    let keyword = Keyword::load(&r.request_id).await?;
    // Twice as many chunks, so `top_k` documents remain after collapsing.
    let hits = keyword.search(&r.text, &r.filters, r.top_k * 2).await?;
    Ok(Found { hits: collapse_by_doc(hits, r.top_k as usize), degraded: Vec::new() })
}

spindle_step::export_retriever!(OpenSearch, search);
