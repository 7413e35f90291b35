//! Chroma's v2 REST API (Chroma 1.x): collections are addressed by id, so a
//! name is looked up first (`GET .../collections/<name>`); chunks are
//! upserted with their own embeddings (Chroma computes none here); queries
//! use cosine distance, turned into a similarity (`1 - distance`).

use serde_json::{Map, Value, json};
use spindle_text::chunk::{self, Chunk};
use spindle_text::hit::Hit;

/// Path of the collections of the default tenant and database.
pub const COLLECTIONS: &str = "/api/v2/tenants/default_tenant/databases/default_database/collections";

pub fn collection_path(name_or_id: &str) -> String {
    format!("{COLLECTIONS}/{name_or_id}")
}

/// The id in a collection description.
pub fn collection_id(body: &Value) -> Result<String, String> {
    body.get("id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| error_message(body))
}

/// Create-if-missing body, with cosine distance.
pub fn create_body(name: &str) -> Value {
    json!({ "name": name, "get_or_create": true, "metadata": { "hnsw:space": "cosine" } })
}

/// A `where` clause: one equality per filter, `$and`-ed when several.
pub fn where_clause(filters: &[(String, String)]) -> Option<Value> {
    let mut terms: Vec<Value> = filters.iter().map(|(k, v)| json!({ k: { "$eq": v } })).collect();
    match terms.len() {
        0 => None,
        1 => terms.pop(),
        _ => Some(json!({ "$and": terms })),
    }
}

pub fn query_body(vector: &[f32], filters: &[(String, String)], n: u32) -> Value {
    let mut body = json!({
        "query_embeddings": [vector],
        "n_results": n,
        "include": ["documents", "metadatas", "distances"],
    });
    if let Some(w) = where_clause(filters) {
        body["where"] = w;
    }
    body
}

/// The hits of a query response (first and only query), best first.
pub fn parse_query(body: &Value) -> Result<Vec<Hit>, String> {
    let first = |key: &str| body.get(key).and_then(|v| v.get(0)).and_then(Value::as_array);
    let ids = first("ids").ok_or_else(|| error_message(body))?;
    let docs = first("documents");
    let metas = first("metadatas");
    let dists = first("distances");
    let empty = Map::new();
    Ok(ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let id = id.as_str()?;
            let mut fields = metas.and_then(|m| m.get(i)).and_then(Value::as_object).unwrap_or(&empty).clone();
            if let Some(text) = docs.and_then(|d| d.get(i)).and_then(Value::as_str) {
                fields.insert(chunk::TEXT.into(), json!(text));
            }
            let distance = dists.and_then(|d| d.get(i)).and_then(Value::as_f64).unwrap_or(1.0) as f32;
            Some(crate::opensearch::hit_from_fields(id, 1.0 - distance, &fields))
        })
        .collect())
}

/// An upsert of `chunks` with their `vectors`; text goes in `documents`,
/// the other fields in `metadatas`.
pub fn upsert_body(chunks: &[Chunk], vectors: &[Vec<f32>]) -> Value {
    let metadatas: Vec<Value> = chunks
        .iter()
        .map(|c| {
            let mut m = crate::opensearch::document(c);
            m.as_object_mut().map(|o| o.remove(chunk::TEXT));
            m
        })
        .collect();
    json!({
        "ids": chunks.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        "embeddings": vectors,
        "documents": chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
        "metadatas": metadatas,
    })
}

/// Chroma's error body: `{"error": "...", "message": "..."}`.
pub fn error_message(body: &Value) -> String {
    let part = |k: &str| body.get(k).and_then(Value::as_str);
    match (part("error"), part("message")) {
        (Some(e), Some(m)) => format!("{e}: {m}"),
        (Some(e), None) | (None, Some(e)) => e.to_string(),
        _ => format!("unexpected response: {}", spindle_text::truncate(&body.to_string(), 200)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clause_forms() {
        assert_eq!(where_clause(&[]), None);
        assert_eq!(where_clause(&[("lang".into(), "en".into())]).unwrap(), json!({"lang": {"$eq": "en"}}));
        let two = where_clause(&[("a".into(), "1".into()), ("b".into(), "2".into())]).unwrap();
        assert_eq!(two["$and"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn query_response_becomes_hits_with_similarity() {
        let body = json!({
            "ids": [["d#0", "e#1"]],
            "documents": [["text d", "text e"]],
            "metadatas": [[{"title": "D", "doc_id": "d", "lang": "en"}, {"doc_id": "e"}]],
            "distances": [[0.25, 0.5]]
        });
        let hits = parse_query(&body).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].text, "text d");
        assert_eq!(hits[0].title.as_deref(), Some("D"));
        assert!((hits[0].score - 0.75).abs() < 1e-6);
        assert_eq!(hits[1].doc_id(), "e");
    }

    #[test]
    fn error_bodies_are_described() {
        let body = json!({"error": "InvalidArgumentError", "message": "Collection expecting embedding with dimension of 384, got 3"});
        assert!(parse_query(&body).unwrap_err().contains("dimension of 384"));
    }
}
