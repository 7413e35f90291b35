//! `retriever-vector`: embeds the query through an OpenAI-style embeddings
//! endpoint and searches a vector store (Chroma or Milvus, variable
//! `vector_store`). Variables: `vector_url` (origin), `vector_collection`,
//! `vector_api_key`, `vector_timeout_ms`, and the `embeddings_*` ones.

use spindle_clients::search::Vector;
use spindle_step::export::{Found, Request};
use spindle_text::hit::{Failure, collapse_by_doc};

async fn search(r: Request) -> Result<Found, Failure> {
    let vector = Vector::load(&r.request_id).await?;
    let hits = vector.search(&r.text, &r.filters, r.top_k * 2).await?;
    Ok(Found { hits: collapse_by_doc(hits, r.top_k as usize), degraded: Vec::new() })
}

spindle_step::export_retriever!(VectorRetriever, search);
