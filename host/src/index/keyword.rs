//! Loads chunks into an Elasticsearch/OpenSearch index with `_bulk`, under
//! their chunk ids, so a re-run overwrites instead of duplicating.

use super::http::Service;
use anyhow::bail;
use spindle_clients::opensearch;
use spindle_text::chunk::Chunk;

pub struct KeywordIndex {
    pub service: Service,
    pub index: String,
    pub analysis: opensearch::Analysis,
}

impl KeywordIndex {
    /// Creates the index with Spindle's mappings if it does not exist
    /// (deleting it first when `recreate`).
    pub fn prepare(&self, recreate: bool, metadata_keys: &[&str]) -> anyhow::Result<()> {
        let path = format!("/{}", self.index);
        if recreate {
            let (status, body) = self.service.call("DELETE", &path, None)?;
            if status != 404 && !(200..300).contains(&status) {
                bail!("cannot delete index {}: HTTP {status}: {body}", self.index);
            }
        }
        let (status, _) = self.service.call("HEAD", &path, None)?;
        if status == 404 {
            let mapping = opensearch::mapping(&self.analysis, metadata_keys);
            self.service.ok("PUT", &path, Some(("application/json", mapping.to_string())))?;
        }
        Ok(())
    }

    /// Indexes one batch; returns the per-chunk failures.
    pub fn write(&self, chunks: &[Chunk]) -> anyhow::Result<Vec<String>> {
        let body = opensearch::bulk_body(&self.index, chunks, &self.analysis);
        let answer = self.service.ok("POST", "/_bulk", Some(("application/x-ndjson", body)))?;
        Ok(opensearch::bulk_failures(&answer))
    }

    /// Removes chunks by id (those of changed and deleted files); a chunk
    /// already gone is no failure.
    pub fn delete(&self, ids: &[&str]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let body: String = ids
            .iter()
            .map(|id| format!("{}\n", serde_json::json!({"delete": {"_index": self.index, "_id": id}})))
            .collect();
        let answer = self.service.ok("POST", "/_bulk", Some(("application/x-ndjson", body)))?;
        let failed: Vec<String> =
            opensearch::bulk_failures(&answer).into_iter().filter(|f| !f.contains("not_found")).collect();
        if !failed.is_empty() {
            bail!("deleting {} chunk(s) failed: {}", failed.len(), failed[0]);
        }
        Ok(())
    }

    /// Makes the writes searchable and returns the index's document count.
    pub fn finish(&self) -> anyhow::Result<u64> {
        self.service.ok("POST", &format!("/{}/_refresh", self.index), None)?;
        let count = self.service.ok("GET", &format!("/{}/_count", self.index), None)?;
        Ok(count.get("count").and_then(serde_json::Value::as_u64).unwrap_or(0))
    }
}
