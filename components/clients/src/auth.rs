//! The authentication headers of each remote service, in one place for the
//! retrievers (guest) and `spindle index` (host), which must agree.

use crate::stores::Store;
use base64::Engine;

pub type Headers = Vec<(String, String)>;

/// `Authorization: Bearer <key>`, or nothing for an empty key.
pub fn bearer(key: &str) -> Headers {
    if key.is_empty() { Vec::new() } else { vec![("authorization".into(), format!("Bearer {key}"))] }
}

/// Elasticsearch/OpenSearch: an API key (`ApiKey`) wins over basic auth.
pub fn opensearch(username: &str, password: &str, api_key: &str) -> Headers {
    if !api_key.is_empty() {
        vec![("authorization".into(), format!("ApiKey {api_key}"))]
    } else if !username.is_empty() {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        vec![("authorization".into(), format!("Basic {token}"))]
    } else {
        Vec::new()
    }
}

/// The vector store's token header: Chroma's `x-chroma-token`, Milvus's bearer.
pub fn vector_store(store: Store, key: &str) -> Headers {
    match (store, key.is_empty()) {
        (_, true) => Vec::new(),
        (Store::Chroma, false) => vec![("x-chroma-token".into(), key.into())],
        (Store::Milvus, false) => bearer(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_per_service() {
        assert_eq!(opensearch("elastic", "pw", ""), [("authorization".into(), "Basic ZWxhc3RpYzpwdw==".into())]);
        assert_eq!(opensearch("elastic", "pw", "k"), [("authorization".into(), "ApiKey k".into())]);
        assert!(opensearch("", "", "").is_empty());
        assert_eq!(vector_store(Store::Chroma, "t"), [("x-chroma-token".into(), "t".into())]);
        assert_eq!(vector_store(Store::Milvus, "t"), bearer("t"));
        assert!(bearer("").is_empty());
    }
}
