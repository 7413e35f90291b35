//! `retriever-vector`: embeds the query through an OpenAI-style embeddings
//! endpoint and searches a vector store (Chroma or Milvus, variable
//! `vector_store`). Variables: `vector_url` (origin), `vector_collection`,
//! `vector_api_key`, `vector_timeout_ms`, and the `embeddings_*` ones.

use guest_common::component::{Found, Request};
use guest_common::hit::{Failure, collapse_by_doc};
use guest_common::search::Vector;

async fn search(r: Request) -> Result<Found, Failure> {
    let vector = Vector::load().await?;
    let hits = vector.search(&r.text, &r.filters, r.top_k * 2).await?;
    Ok(Found { hits: collapse_by_doc(hits, r.top_k as usize), degraded: Vec::new() })
}

guest_common::export_retriever!(VectorRetriever, search);
