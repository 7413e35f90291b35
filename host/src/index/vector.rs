//! Embeds chunks in batches and writes them to the vector store: Chroma
//! upserts by chunk id; Milvus (REST v1 has no upsert) deletes the chunks'
//! keys, then inserts them. Either way a re-run leaves one copy.

use super::http::Service;
use anyhow::{Context, bail};
use serde_json::json;
use spindle_clients::embeddings;
use spindle_clients::stores::{Store, chroma, milvus};
use spindle_text::chunk::Chunk;

pub struct Embedder {
    pub service: Service,
    pub path: String,
    pub model: String,
    pub passage_type: String,
    pub dimension: usize,
}

impl Embedder {
    pub fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        let body = self.service.post_json(&self.path, &embeddings::request(&self.model, texts, &self.passage_type))?;
        embeddings::parse(&body, texts.len(), self.dimension).map_err(|e| self.service.malformed(&self.path, e))
    }
}

pub struct VectorIndex {
    pub store: Store,
    pub service: Service,
    pub collection: String,
    /// Chroma's id of the collection, once created.
    chroma_id: Option<String>,
}

impl VectorIndex {
    pub fn new(store: Store, service: Service, collection: String) -> Self {
        VectorIndex { store, service, collection, chroma_id: None }
    }

    /// Creates the collection if needed (dropping it first when `recreate`).
    pub fn prepare(&mut self, recreate: bool, dimension: usize) -> anyhow::Result<()> {
        match self.store {
            Store::Chroma => {
                if recreate {
                    let (status, body) =
                        self.service.call("DELETE", &chroma::collection_path(&self.collection), None)?;
                    if status != 404 && !(200..300).contains(&status) {
                        bail!("cannot delete collection {}: HTTP {status}: {body}", self.collection);
                    }
                }
                let created = self.service.post_json(chroma::COLLECTIONS, &chroma::create_body(&self.collection))?;
                self.chroma_id = Some(chroma::collection_id(&created).map_err(anyhow::Error::msg)?);
            }
            Store::Milvus => {
                if recreate {
                    let body = json!({ "collectionName": self.collection });
                    let answer = self.service.post_json("/v1/vector/collections/drop", &body)?;
                    let _ = milvus::data(&answer); // Dropping a missing collection is fine.
                }
                let path = format!("{}?collectionName={}", milvus::DESCRIBE, self.collection);
                let exists = milvus::data(&self.service.ok("GET", &path, None)?).is_ok();
                if !exists {
                    let answer =
                        self.service.post_json(milvus::CREATE, &milvus::create_body(&self.collection, dimension))?;
                    milvus::data(&answer).map_err(anyhow::Error::msg).context("creating the Milvus collection")?;
                }
            }
        }
        Ok(())
    }

    pub fn write(&self, chunks: &[Chunk], vectors: &[Vec<f32>]) -> anyhow::Result<()> {
        match self.store {
            Store::Chroma => {
                let id = self.chroma_id.as_deref().context("collection not prepared")?;
                let path = format!("{}/upsert", chroma::collection_path(id));
                self.service.post_json(&path, &chroma::upsert_body(chunks, vectors))?;
            }
            Store::Milvus => {
                let ids: Vec<&str> = chunks.iter().map(|c| c.id.as_str()).collect();
                let deleted = self.service.post_json(milvus::DELETE, &milvus::delete_body(&self.collection, &ids))?;
                milvus::data(&deleted).map_err(anyhow::Error::msg).context("deleting old copies")?;
                let inserted =
                    self.service.post_json(milvus::INSERT, &milvus::insert_body(&self.collection, chunks, vectors))?;
                milvus::data(&inserted).map_err(anyhow::Error::msg).context("inserting")?;
            }
        }
        Ok(())
    }

    /// Removes chunks by id (those of changed and deleted files).
    pub fn delete(&mut self, ids: &[&str]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        match self.store {
            Store::Chroma => {
                if self.chroma_id.is_none() {
                    // Chroma's create is get-or-create; the dimension is
                    // set by the first write.
                    self.prepare(false, 0)?;
                }
                let id = self.chroma_id.as_deref().context("collection not prepared")?;
                self.service.post_json(&format!("{}/delete", chroma::collection_path(id)), &json!({ "ids": ids }))?;
            }
            Store::Milvus => {
                let deleted = self.service.post_json(milvus::DELETE, &milvus::delete_body(&self.collection, ids))?;
                milvus::data(&deleted).map_err(anyhow::Error::msg).context("deleting chunks")?;
            }
        }
        Ok(())
    }

    /// The number of vectors stored, where the store tells it cheaply.
    pub fn count(&self) -> anyhow::Result<Option<u64>> {
        Ok(match (self.store, &self.chroma_id) {
            (Store::Chroma, Some(id)) => {
                self.service.ok("GET", &format!("{}/count", chroma::collection_path(id)), None)?.as_u64()
            }
            _ => None,
        })
    }
}
