//! Clients of the remote services the steps call: the request and response
//! formats of OpenSearch/Elasticsearch, Chroma, Milvus, OpenAI-style
//! embeddings, the Cohere/Jina/TEI rerank APIs and OpenAI chat streaming,
//! with the authentication each expects. The formats are plain Rust, shared
//! with `spindle index` on the host so the two cannot disagree; the `spin`
//! feature adds the calls themselves over Spin's outbound HTTP (deadlines,
//! size limits, errors that name the service and the cause).

pub mod auth;
pub mod embeddings;
pub mod exchange;
pub mod openai;
pub mod opensearch;
pub mod rerank_api;
pub mod stores;

#[cfg(feature = "spin")]
pub mod body;
#[cfg(feature = "spin")]
pub mod remote;
#[cfg(feature = "spin")]
pub mod search;
