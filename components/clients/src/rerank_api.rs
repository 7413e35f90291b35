//! The three rerank wire formats in use: Cohere `POST /v2/rerank`, Jina
//! `POST /v1/rerank` (both `{model, query, documents, top_n}` →
//! `results[{index, relevance_score}]`) and Hugging Face TEI
//! `POST /rerank` (`{query, texts}` → `[{index, score}]`).

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Cohere,
    Jina,
    Tei,
}

impl std::str::FromStr for Api {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cohere" => Ok(Api::Cohere),
            "jina" => Ok(Api::Jina),
            "tei" => Ok(Api::Tei),
            other => Err(format!("unknown rerank API `{other}` (expected `cohere`, `jina` or `tei`)")),
        }
    }
}

impl Api {
    /// The endpoint path used when `rerank_path` is not set.
    pub fn default_path(self) -> &'static str {
        match self {
            Api::Cohere => "/v2/rerank",
            Api::Jina => "/v1/rerank",
            Api::Tei => "/rerank",
        }
    }

    pub fn request(self, model: &str, query: &str, documents: &[&str]) -> Value {
        match self {
            Api::Cohere | Api::Jina => {
                json!({ "model": model, "query": query, "documents": documents, "top_n": documents.len() })
            }
            Api::Tei => json!({ "query": query, "texts": documents, "truncate": true }),
        }
    }

    /// One relevance score per document, in document order. Every document
    /// must be scored exactly once: a partial answer would silently drop
    /// passages.
    pub fn parse(self, body: &Value, documents: usize) -> Result<Vec<f32>, String> {
        let (list, score_key) = match self {
            Api::Cohere | Api::Jina => (body.get("results").and_then(Value::as_array), "relevance_score"),
            Api::Tei => (body.as_array(), "score"),
        };
        let list = list.ok_or_else(|| match body.get("message").or(body.get("error")).or(body.get("detail")) {
            Some(m) => format!("the reranker answered with an error: {}", m.as_str().unwrap_or(&m.to_string())),
            None => format!("unexpected response: {}", spindle_text::truncate(&body.to_string(), 200)),
        })?;
        let mut scores = vec![None; documents];
        for item in list {
            let index = item.get("index").and_then(Value::as_u64).ok_or("a result has no `index`")? as usize;
            let score = item.get(score_key).and_then(Value::as_f64).ok_or(format!("a result has no `{score_key}`"))?;
            let slot = scores.get_mut(index).ok_or(format!("result index {index} is out of range"))?;
            *slot = Some(score as f32);
        }
        scores
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("the reranker scored {} of {documents} documents", list.len().min(documents)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohere_and_jina_share_a_shape() {
        for api in [Api::Cohere, Api::Jina] {
            let req = api.request("m", "q", &["a", "b"]);
            assert_eq!(req["documents"], json!(["a", "b"]));
            assert_eq!(req["top_n"], 2);
            let body = json!({"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]});
            assert_eq!(api.parse(&body, 2).unwrap(), vec![0.1, 0.9]);
        }
    }

    #[test]
    fn tei_shape() {
        assert_eq!(Api::Tei.request("m", "q", &["a"])["texts"], json!(["a"]));
        let body = json!([{"index": 0, "score": 0.3}, {"index": 1, "score": 0.7}]);
        assert_eq!(Api::Tei.parse(&body, 2).unwrap(), vec![0.3, 0.7]);
    }

    #[test]
    fn partial_and_error_answers_are_rejected() {
        let partial = json!({"results": [{"index": 0, "relevance_score": 0.5}]});
        assert_eq!(Api::Cohere.parse(&partial, 2).unwrap_err(), "the reranker scored 1 of 2 documents");
        let err = json!({"message": "invalid api token"});
        assert!(Api::Cohere.parse(&err, 1).unwrap_err().contains("invalid api token"));
        assert!("bogus".parse::<Api>().is_err());
    }
}
