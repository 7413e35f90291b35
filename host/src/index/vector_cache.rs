//! `spindle index --runtime-config-file`: the passage vectors computed for
//! the vector store also go into the app's Redis key-value store, under
//! the keys `reranker-embedding` looks them up by
//! (`spindle_clients::embeddings::cache_key`), so reranking reuses them
//! instead of embedding every candidate again. Best effort: a failing
//! Redis costs the warm cache, not the index.

use spindle_clients::embeddings::{cache_key, encode_vector};
use std::path::Path;

pub struct VectorCache {
    conn: redis::Connection,
    url: String,
    written: usize,
    error: Option<String>,
}

impl VectorCache {
    /// The cache of the runtime config's `default` store, if it is Redis.
    pub fn open(runtime_config: &Path) -> anyhow::Result<Option<VectorCache>> {
        let Some(url) = crate::kv::redis_url(runtime_config, "default")? else { return Ok(None) };
        let conn = redis::Client::open(url.as_str())?
            .get_connection_with_timeout(std::time::Duration::from_secs(2))
            .map_err(|e| anyhow::anyhow!("the key-value store at {url}: {e}"))?;
        Ok(Some(VectorCache { conn, url, written: 0, error: None }))
    }

    pub fn put(&mut self, model: &str, kind: &str, texts: &[&str], vectors: &[Vec<f32>]) {
        if self.error.is_some() {
            return;
        }
        let mut pipe = redis::pipe();
        for (text, v) in texts.iter().zip(vectors) {
            pipe.set(cache_key(model, kind, text), encode_vector(v)).ignore();
        }
        match pipe.query::<()>(&mut self.conn) {
            Ok(()) => self.written += texts.len(),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    pub fn summary(&self) -> String {
        match &self.error {
            None => format!("  cache    {}: {} passage vectors for reranker-embedding", self.url, self.written),
            Some(e) => format!("  cache    {}: {} passage vectors written, then: {e}", self.url, self.written),
        }
    }
}
