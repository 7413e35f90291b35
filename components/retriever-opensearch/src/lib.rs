//! `retriever-opensearch`: BM25 on an Elasticsearch 8 / OpenSearch 2 index
//! through `_search` (see `guest_common::opensearch` for the request
//! features it relies on). Variables: `opensearch_url` (origin),
//! `opensearch_index`, `opensearch_fields`, `opensearch_username` +
//! `opensearch_password` or `opensearch_api_key`, `keyword_timeout_ms`.

use guest_common::component::{Found, Request};
use guest_common::hit::{Failure, collapse_by_doc};
use guest_common::search::Keyword;

async fn search(r: Request) -> Result<Found, Failure> {
    let keyword = Keyword::load().await?;
    // Twice as many chunks, so `top_k` documents remain after collapsing.
    let hits = keyword.search(&r.text, &r.filters, r.top_k * 2).await?;
    Ok(Found { hits: collapse_by_doc(hits, r.top_k as usize), degraded: Vec::new() })
}

guest_common::export_retriever!(OpenSearch, search);
