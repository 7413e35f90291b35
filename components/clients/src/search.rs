//! The remote searches, configured from Spin variables: BM25 on an
//! OpenSearch/Elasticsearch index, query embedding through an embeddings
//! endpoint, and nearest-neighbour search on a vector store. Shared by the
//! single retrievers, the hybrid retriever and the embedding reranker.

use crate::auth;
use crate::exchange::{RemoteError, Service};
use crate::stores::{Store, chroma, milvus};
use crate::{embeddings, opensearch};
use spindle_step::config::{variable_or, variable_u64};
use spindle_text::hit::Hit;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

async fn timeout(name: &str, default_ms: u64) -> Result<Duration, RemoteError> {
    variable_u64(name, default_ms).await.map(Duration::from_millis).map_err(RemoteError::BadConfig)
}

async fn origin(service: &'static str, variable: &'static str) -> Result<String, RemoteError> {
    let url = variable_or(variable, "").await;
    if url.is_empty() { Err(RemoteError::NotConfigured { service, variable }) } else { Ok(url) }
}

/// BM25 through the `_search` API (variables `opensearch_*`).
pub struct Keyword {
    service: Service,
    index: String,
    fields: Vec<String>,
}

impl Keyword {
    /// Configured by the variables, calling out on behalf of the inbound
    /// request `request_id`.
    pub async fn load(request_id: &str) -> Result<Self, RemoteError> {
        let base = origin("OpenSearch", "opensearch_url").await?;
        let headers = auth::opensearch(
            &variable_or("opensearch_username", "").await,
            &variable_or("opensearch_password", "").await,
            &variable_or("opensearch_api_key", "").await,
        );
        let fields = variable_or("opensearch_fields", "text").await;
        Ok(Keyword {
            service: Service {
                name: "OpenSearch",
                base,
                headers,
                timeout: timeout("keyword_timeout_ms", 3_000).await?,
            }
            .for_request(request_id),
            index: variable_or("opensearch_index", "spindle").await,
            fields: fields.split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect(),
        })
    }

    pub async fn search(&self, text: &str, filters: &[(String, String)], k: u32) -> Result<Vec<Hit>, RemoteError> {
        let fields: Vec<&str> = self.fields.iter().map(String::as_str).collect();
        let path = format!("/{}/_search", self.index);
        let body = self.service.post(&path, &opensearch::search_body(text, &fields, filters, k)).await?;
        let hits = opensearch::parse_hits(&body).map_err(|d| self.service.malformed(&path, d))?;
        if hits.is_empty() {
            self.check_not_empty().await?;
        }
        Ok(hits)
    }

    /// No hits from an empty index is a setup mistake, not "no match".
    async fn check_not_empty(&self) -> Result<(), RemoteError> {
        let path = format!("/{}/_count", self.index);
        let body = self.service.get(&path).await?;
        match body.get("count").and_then(serde_json::Value::as_u64) {
            Some(0) => Err(self.service.malformed(
                &path,
                format!("the index `{}` holds no documents (load it with `spindle index`)", self.index),
            )),
            _ => Ok(()),
        }
    }
}

/// Which side of an asymmetric embedding model (e5) a text is on.
#[derive(Clone, Copy)]
pub enum Side {
    Query,
    Passage,
}

/// An OpenAI-style embeddings endpoint (variables `embeddings_*`).
pub struct Embedder {
    service: Service,
    path: String,
    model: String,
    query_type: String,
    passage_type: String,
    dimension: usize,
    batch: usize,
}

impl Embedder {
    /// Configured by the variables, calling out on behalf of the inbound
    /// request `request_id`.
    pub async fn load(request_id: &str) -> Result<Self, RemoteError> {
        let base = origin("the embeddings endpoint", "embeddings_url").await?;
        let dimension = variable_u64("embeddings_dimension", 384).await.map_err(RemoteError::BadConfig)?;
        Ok(Embedder {
            service: Service {
                name: "the embeddings endpoint",
                base,
                headers: auth::bearer(&variable_or("embeddings_api_key", "").await),
                timeout: timeout("embeddings_timeout_ms", 5_000).await?,
            }
            .for_request(request_id),
            path: variable_or("embeddings_path", "/v1/embeddings").await,
            model: variable_or("embeddings_model", "multilingual-e5-small").await,
            query_type: variable_or("embeddings_query_type", "query").await,
            passage_type: variable_or("embeddings_passage_type", "passage").await,
            dimension: dimension as usize,
            batch: 16,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Embeds `texts` in batches, checking count and dimension.
    pub async fn embed(&self, texts: &[&str], side: Side) -> Result<Vec<Vec<f32>>, RemoteError> {
        let kind = match side {
            Side::Query => &self.query_type,
            Side::Passage => &self.passage_type,
        };
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch) {
            let body = self.service.post(&self.path, &embeddings::request(&self.model, batch, kind)).await?;
            let vectors = embeddings::parse(&body, batch.len(), self.dimension)
                .map_err(|d| self.service.malformed(&self.path, d))?;
            out.extend(vectors);
        }
        Ok(out)
    }
}

/// Most passage vectors kept in an instance's memory.
const MEMORY_CACHE_ENTRIES: usize = 4096;

thread_local! {
    /// Passage vectors by cache key: an instance serves many requests, and
    /// the same passages come back for related questions.
    static VECTORS: RefCell<HashMap<String, Vec<f32>>> = RefCell::new(HashMap::new());
}

impl Embedder {
    /// Like [`Embedder::embed`], through a cache: this instance's memory,
    /// then the key-value store `default` (shared by all instances, Redis
    /// in production). Only the misses are sent to the endpoint. A failing
    /// store only costs speed.
    pub async fn embed_cached(&self, texts: &[&str], side: Side) -> Result<Vec<Vec<f32>>, RemoteError> {
        let kind = match side {
            Side::Query => &self.query_type,
            Side::Passage => &self.passage_type,
        };
        let keys: Vec<String> = texts.iter().map(|t| embeddings::cache_key(&self.model, kind, t)).collect();
        let mut out: Vec<Option<Vec<f32>>> =
            keys.iter().map(|k| VECTORS.with(|m| m.borrow().get(k).cloned())).collect();
        let store = spin_sdk::key_value::Store::open_default().await.ok();
        if let Some(store) = &store {
            for (slot, key) in out.iter_mut().zip(&keys).filter(|(s, _)| s.is_none()) {
                *slot = store.get(key).await.ok().flatten().and_then(|b| embeddings::decode_vector(&b));
            }
        }
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let batch: Vec<&str> = missing.iter().map(|&i| texts[i]).collect();
            let vectors = self.embed(&batch, side).await?;
            for (&i, v) in missing.iter().zip(vectors) {
                if let Some(store) = &store {
                    let _ = store.set(&keys[i], embeddings::encode_vector(&v)).await;
                }
                out[i] = Some(v);
            }
        }
        let want = if self.dimension == 0 { out.iter().flatten().next().map_or(0, Vec::len) } else { self.dimension };
        VECTORS.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() + texts.len() > MEMORY_CACHE_ENTRIES {
                m.clear();
            }
            for (k, v) in keys.iter().zip(&out) {
                if let Some(v) = v {
                    m.insert(k.clone(), v.clone());
                }
            }
        });
        let vectors: Vec<Vec<f32>> = out.into_iter().flatten().collect();
        // A vector cached under an older configuration must not mix in.
        if vectors.iter().any(|v| v.len() != want) {
            VECTORS.with(|m| m.borrow_mut().clear());
            return self.embed(texts, side).await;
        }
        Ok(vectors)
    }
}

thread_local! {
    /// Chroma collection ids by name: the v2 API addresses collections by
    /// id, and looking it up on every query would double the round trips.
    static CHROMA_IDS: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// Vector search: embed the query, then ask the store (variables
/// `vector_*`).
pub struct Vector {
    store: Store,
    service: Service,
    collection: String,
    embedder: Embedder,
}

impl Vector {
    /// The vector search configured by the variables, calling out on
    /// behalf of the inbound request `request_id`.
    pub async fn load(request_id: &str) -> Result<Self, RemoteError> {
        let base = origin("the vector store", "vector_url").await?;
        let store: Store = variable_or("vector_store", "chroma").await.parse().map_err(RemoteError::BadConfig)?;
        let headers = auth::vector_store(store, &variable_or("vector_api_key", "").await);
        let name = match store {
            Store::Chroma => "Chroma",
            Store::Milvus => "Milvus",
        };
        Ok(Vector {
            store,
            service: Service { name, base, headers, timeout: timeout("vector_timeout_ms", 3_000).await? }
                .for_request(request_id),
            collection: variable_or("vector_collection", "spindle").await,
            embedder: Embedder::load(request_id).await?,
        })
    }

    pub async fn search(&self, text: &str, filters: &[(String, String)], k: u32) -> Result<Vec<Hit>, RemoteError> {
        let vector = self.embedder.embed(&[text], Side::Query).await?.pop().unwrap_or_default();
        match self.store {
            Store::Chroma => self.chroma(&vector, filters, k).await,
            Store::Milvus => self.milvus(&vector, filters, k).await,
        }
    }

    async fn chroma(&self, vector: &[f32], filters: &[(String, String)], k: u32) -> Result<Vec<Hit>, RemoteError> {
        let id = self.chroma_id().await?;
        let path = format!("{}/query", chroma::collection_path(&id));
        let result = self.service.post(&path, &chroma::query_body(vector, filters, k)).await;
        if result.is_err() {
            // The collection may have been re-created under a new id.
            CHROMA_IDS.with(|ids| ids.borrow_mut().remove(&self.collection));
        }
        let hits = chroma::parse_query(&result?).map_err(|d| self.service.malformed(&path, d))?;
        if hits.is_empty() {
            let count_path = format!("{}/count", chroma::collection_path(&id));
            if self.service.get(&count_path).await?.as_u64() == Some(0) {
                return Err(self.service.malformed(
                    &count_path,
                    format!("the collection `{}` holds no vectors (load it with `spindle index`)", self.collection),
                ));
            }
        }
        Ok(hits)
    }

    async fn chroma_id(&self) -> Result<String, RemoteError> {
        if let Some(id) = CHROMA_IDS.with(|ids| ids.borrow().get(&self.collection).cloned()) {
            return Ok(id);
        }
        let path = chroma::collection_path(&self.collection);
        let body = self.service.get(&path).await?;
        let id = chroma::collection_id(&body).map_err(|d| self.service.malformed(&path, d))?;
        CHROMA_IDS.with(|ids| ids.borrow_mut().insert(self.collection.clone(), id.clone()));
        Ok(id)
    }

    async fn milvus(&self, vector: &[f32], filters: &[(String, String)], k: u32) -> Result<Vec<Hit>, RemoteError> {
        let body = milvus::search_body(&self.collection, vector, filters, k)
            .map_err(|d| self.service.malformed(milvus::SEARCH, d))?;
        let answer = self.service.post(milvus::SEARCH, &body).await?;
        milvus::parse_search(&answer).map_err(|d| self.service.malformed(milvus::SEARCH, d))
    }
}
