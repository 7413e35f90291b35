//! Milvus's REST API v1 (Milvus 2.3+, verified on 2.3.5): the quick
//! `collections/create` call makes an auto-id int64 key `id`, a float vector
//! `vector` and a dynamic field, where the chunk's fields are stored (the
//! chunk id as `pid`). Explicit keys are refused on such a collection, so
//! re-indexing deletes the chunks by a `pid in [...]` filter, then inserts
//! them. Errors come back as HTTP 200 with a non-200 `code`.

use serde_json::{Map, Value, json};
use spindle_text::chunk::{self, Chunk};
use spindle_text::hit::Hit;

pub const CREATE: &str = "/v1/vector/collections/create";
pub const DESCRIBE: &str = "/v1/vector/collections/describe";
pub const INSERT: &str = "/v1/vector/insert";
pub const DELETE: &str = "/v1/vector/delete";
pub const SEARCH: &str = "/v1/vector/search";

/// The chunk id, stored beside the numeric key.
pub const PASSAGE_ID: &str = "pid";
/// Metadata keys are stored as one JSON-encoded field: dynamic fields must
/// be named in `outputFields`, and a corpus's metadata keys are open-ended.
pub const METADATA: &str = "metadata";

pub fn create_body(collection: &str, dimension: usize) -> Value {
    json!({ "collectionName": collection, "dimension": dimension, "metricType": "COSINE",
            "primaryField": "id", "vectorField": "vector" })
}

/// A filter expression: `key == "value"` per filter, `and`-ed. Keys must be
/// plain identifiers and values are escaped, so a filter cannot inject
/// expression syntax.
pub fn filter_expr(filters: &[(String, String)]) -> Result<String, String> {
    filters
        .iter()
        .map(|(k, v)| {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("filter key `{k}` is not a plain field name"));
            }
            Ok(format!("{k} == {}", json!(v)))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|terms| terms.join(" and "))
}

pub fn search_body(
    collection: &str,
    vector: &[f32],
    filters: &[(String, String)],
    limit: u32,
) -> Result<Value, String> {
    let mut body = json!({
        "collectionName": collection,
        "vector": vector,
        "limit": limit,
        "outputFields": [PASSAGE_ID, chunk::TEXT, chunk::TITLE, chunk::URL, chunk::DOC_ID, METADATA],
    });
    let filter = filter_expr(filters)?;
    if !filter.is_empty() {
        body["filter"] = json!(filter);
    }
    Ok(body)
}

/// Checks the v1 envelope and returns its `data`.
pub fn data(body: &Value) -> Result<&Value, String> {
    match body.get("code").and_then(Value::as_i64) {
        Some(200) | Some(0) => Ok(body.get("data").unwrap_or(&Value::Null)),
        Some(code) => Err(format!(
            "Milvus error {code}: {}",
            body.get("message").and_then(Value::as_str).unwrap_or("(no message)")
        )),
        None => Err(format!("unexpected response: {}", spindle_text::truncate(&body.to_string(), 200))),
    }
}

/// Search hits, best first. With COSINE, `distance` is the similarity.
pub fn parse_search(body: &Value) -> Result<Vec<Hit>, String> {
    let rows = data(body)?.as_array().ok_or("the search response has no `data` list")?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let row = row.as_object()?;
            let id = row.get(PASSAGE_ID).and_then(Value::as_str)?;
            let score = row.get("distance").and_then(Value::as_f64).unwrap_or(0.0) as f32;
            let mut fields: Map<String, Value> =
                row.iter().filter(|(k, _)| k.as_str() != METADATA).map(|(k, v)| (k.clone(), v.clone())).collect();
            let extra = row
                .get(METADATA)
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok());
            for (k, v) in extra.into_iter().flatten() {
                fields.entry(k).or_insert(v);
            }
            fields.remove(PASSAGE_ID);
            Some(crate::opensearch::hit_from_fields(id, score, &fields))
        })
        .collect())
}

pub fn delete_body(collection: &str, ids: &[&str]) -> Value {
    json!({ "collectionName": collection, "filter": format!("{PASSAGE_ID} in {}", json!(ids)) })
}

pub fn insert_body(collection: &str, chunks: &[Chunk], vectors: &[Vec<f32>]) -> Value {
    let rows: Vec<Value> = chunks
        .iter()
        .zip(vectors)
        .map(|(c, v)| {
            let meta: Map<String, Value> = c.metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let mut row = json!({
                "vector": v, PASSAGE_ID: c.id, chunk::TEXT: c.text,
                chunk::TITLE: c.title.clone().unwrap_or_default(), chunk::URL: c.url.clone().unwrap_or_default(),
                chunk::DOC_ID: c.doc_id, METADATA: Value::Object(meta).to_string(),
            });
            // Top-level copies make metadata filterable (`lang == "en"`).
            for (k, v) in &c.metadata {
                row.as_object_mut().expect("object").entry(k.clone()).or_insert(json!(v));
            }
            row
        })
        .collect();
    json!({ "collectionName": collection, "data": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_filters_by_chunk_id_with_quoting() {
        assert_eq!(delete_body("c", &["en:a\"b#0"])["filter"], r#"pid in ["en:a\"b#0"]"#);
    }

    #[test]
    fn filters_are_escaped_and_keys_checked() {
        let f = filter_expr(&[("lang".into(), "en\" or 1==1".into())]).unwrap();
        assert_eq!(f, r#"lang == "en\" or 1==1""#);
        assert!(filter_expr(&[("la ng".into(), "x".into())]).is_err());
    }

    #[test]
    fn search_rows_and_errors() {
        let body = json!({"code": 200, "data": [
            {"id": 7, "distance": 0.8, "pid": "d#0", "text": "t", "title": "T", "url": "", "doc_id": "d", "metadata": "{\"lang\":\"en\"}"}
        ]});
        let hits = parse_search(&body).unwrap();
        assert_eq!(hits[0].id, "d#0");
        assert_eq!(hits[0].score, 0.8);
        assert!(hits[0].metadata.contains(&("lang".into(), "en".into())));
        let err = json!({"code": 1100, "message": "collection not found"});
        assert_eq!(parse_search(&err).unwrap_err(), "Milvus error 1100: collection not found");
    }
}
