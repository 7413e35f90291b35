//! The Elasticsearch 8 / OpenSearch 2 REST features Spindle relies on, and
//! nothing else, so any engine speaking them works (osmem-server here):
//! `PUT /<index>` with explicit mappings, `POST /_bulk` with `index`
//! actions and explicit `_id`s, `POST /<index>/_refresh`, and
//! `POST /<index>/_search` with a `bool` query (`match`/`multi_match` in
//! `must`, `term` filters) reading `hits.hits[]._id/_score/_source`.

use serde_json::{Map, Value, json};
use spindle_text::chunk::{self, Chunk};
use spindle_text::hit::Hit;

/// The `_search` body: BM25 over `fields`, each filter a `term` on the field
/// of that name (keyword-mapped by [`mapping`]).
pub fn search_body(text: &str, fields: &[&str], filters: &[(String, String)], size: u32) -> Value {
    let must = match fields {
        [one] => json!({ "match": { *one: { "query": text } } }),
        many => json!({ "multi_match": { "query": text, "fields": many } }),
    };
    let filter: Vec<Value> = filters.iter().map(|(k, v)| json!({ "term": { k: v } })).collect();
    json!({ "size": size, "query": { "bool": { "must": [must], "filter": filter } } })
}

/// The hits of a `_search` response, best first.
pub fn parse_hits(body: &Value) -> Result<Vec<Hit>, String> {
    if let Some(err) = body.get("error") {
        return Err(error_message(err));
    }
    let hits = body
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| "the response has no `hits.hits` list".to_string())?;
    hits.iter()
        .map(|h| {
            let id = h.get("_id").and_then(Value::as_str).ok_or("a hit has no `_id`")?;
            let score = h.get("_score").and_then(Value::as_f64).unwrap_or(0.0) as f32;
            let source = h.get("_source").and_then(Value::as_object).ok_or("a hit has no `_source`")?;
            Ok(hit_from_fields(id, score, source))
        })
        .collect::<Result<_, &str>>()
        .map_err(str::to_string)
}

/// Builds a [`Hit`] from stored fields in the [`chunk`] schema: string
/// fields other than text, title and url become metadata.
pub fn hit_from_fields(id: &str, score: f32, fields: &Map<String, Value>) -> Hit {
    let text_of = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    Hit {
        id: id.to_string(),
        text: text_of(chunk::TEXT).unwrap_or_default(),
        title: text_of(chunk::TITLE),
        url: text_of(chunk::URL),
        score,
        metadata: fields
            .iter()
            .filter(|(k, _)| ![chunk::TEXT, chunk::TITLE, chunk::URL].contains(&k.as_str()))
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
    }
}

/// The message of an Elasticsearch-style `error` value (object or string).
pub fn error_message(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        _ => {
            let reason = err.get("reason").and_then(Value::as_str);
            let kind = err.get("type").and_then(Value::as_str);
            match (kind, reason) {
                (Some(k), Some(r)) => format!("{k}: {r}"),
                (None, Some(r)) => r.to_string(),
                _ => err.to_string(),
            }
        }
    }
}

/// The stored fields of a chunk.
pub fn document(c: &Chunk) -> Value {
    let mut doc = Map::new();
    doc.insert(chunk::TEXT.into(), json!(c.text));
    if let Some(t) = &c.title {
        doc.insert(chunk::TITLE.into(), json!(t));
    }
    if let Some(u) = &c.url {
        doc.insert(chunk::URL.into(), json!(u));
    }
    doc.insert(chunk::DOC_ID.into(), json!(c.doc_id));
    for (k, v) in &c.metadata {
        doc.entry(k.clone()).or_insert_with(|| json!(v));
    }
    Value::Object(doc)
}

/// How an index analyses text: `default` for the `text` field and, for a
/// chunk whose `lang` metadata has an entry in `per_language`, a copy in
/// `text_<lang>` analysed for that language (stemming for English, bigrams
/// for Chinese ...). One analyzer cannot serve both: `cjk` does not stem
/// English, `english` splits Chinese into single characters. Search them
/// with `opensearch_fields = "text_en,text_zh"`.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub default: String,
    pub per_language: Vec<(String, String)>,
}

impl Analysis {
    fn field_for(&self, c: &Chunk) -> Option<String> {
        let lang = c.metadata.iter().find(|(k, _)| k == "lang").map(|(_, v)| v)?;
        self.per_language.iter().any(|(l, _)| l == lang).then(|| format!("{}_{lang}", chunk::TEXT))
    }
}

/// Index mappings: the text fields analysed per [`Analysis`], everything
/// else exact (`keyword`), so filters are `term` matches.
pub fn mapping(analysis: &Analysis, metadata_keys: &[&str]) -> Value {
    let analyzer = analysis.default.as_str();
    let mut props = Map::new();
    props.insert(chunk::TEXT.into(), json!({ "type": "text", "analyzer": analyzer }));
    for (lang, language_analyzer) in &analysis.per_language {
        props.insert(format!("{}_{lang}", chunk::TEXT), json!({ "type": "text", "analyzer": language_analyzer }));
    }
    props.insert(chunk::TITLE.into(), json!({ "type": "text", "analyzer": analyzer }));
    props.insert(chunk::URL.into(), json!({ "type": "keyword" }));
    props.insert(chunk::DOC_ID.into(), json!({ "type": "keyword" }));
    for k in metadata_keys {
        props.entry(k.to_string()).or_insert_with(|| json!({ "type": "keyword" }));
    }
    json!({ "mappings": { "properties": props } })
}

/// An NDJSON `_bulk` body indexing `chunks` under their ids.
pub fn bulk_body(index: &str, chunks: &[Chunk], analysis: &Analysis) -> String {
    let mut out = String::new();
    for c in chunks {
        out.push_str(&json!({ "index": { "_index": index, "_id": c.id } }).to_string());
        out.push('\n');
        let mut doc = document(c);
        if let (Some(field), Some(fields)) = (analysis.field_for(c), doc.as_object_mut()) {
            fields.insert(field, json!(c.text));
        }
        out.push_str(&doc.to_string());
        out.push('\n');
    }
    out
}

/// The per-item failures of a `_bulk` response.
pub fn bulk_failures(body: &Value) -> Vec<String> {
    if body.get("errors").and_then(Value::as_bool) != Some(true) {
        return Vec::new();
    }
    body.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.as_object()?.values().next().cloned())
        .filter_map(|action| {
            let err = action.get("error")?;
            let id = action.get("_id").and_then(Value::as_str).unwrap_or("?");
            Some(format!("{id}: {}", error_message(err)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_body_uses_match_for_one_field_and_term_filters() {
        let body = search_body("apt", &["text"], &[("lang".into(), "en".into())], 7);
        assert_eq!(body["size"], 7);
        assert_eq!(body["query"]["bool"]["must"][0]["match"]["text"]["query"], "apt");
        assert_eq!(body["query"]["bool"]["filter"][0]["term"]["lang"], "en");
        let multi = search_body("apt", &["text", "title"], &[], 3);
        assert_eq!(multi["query"]["bool"]["must"][0]["multi_match"]["fields"], json!(["text", "title"]));
    }

    #[test]
    fn hits_are_parsed_with_metadata() {
        let body = json!({"hits": {"hits": [
            {"_id": "d#0", "_score": 2.5, "_source": {"text": "t", "title": "T", "doc_id": "d", "lang": "en", "n": 3}}
        ]}});
        let hits = parse_hits(&body).unwrap();
        assert_eq!(hits[0].id, "d#0");
        assert_eq!(hits[0].score, 2.5);
        assert_eq!(hits[0].title.as_deref(), Some("T"));
        assert_eq!(hits[0].doc_id(), "d");
        assert!(hits[0].metadata.contains(&("lang".into(), "en".into())));
    }

    #[test]
    fn errors_and_malformed_responses_are_described() {
        let err = json!({"error": {"type": "index_not_found_exception", "reason": "no such index [x]"}, "status": 404});
        assert_eq!(parse_hits(&err).unwrap_err(), "index_not_found_exception: no such index [x]");
        assert!(parse_hits(&json!({"took": 1})).unwrap_err().contains("hits.hits"));
    }

    #[test]
    fn bulk_body_and_failures() {
        let c = Chunk {
            id: "d#0".into(),
            doc_id: "d".into(),
            text: "x".into(),
            title: None,
            url: None,
            metadata: vec![("lang".into(), "en".into())],
        };
        let analysis = Analysis { default: "cjk".into(), per_language: vec![("en".into(), "english".into())] };
        let body = bulk_body("idx", &[c], &analysis);
        let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["index"]["_id"], "d#0");
        assert_eq!(lines[1]["lang"], "en");
        assert_eq!(lines[1]["text_en"], "x", "an English chunk gets its English-analysed copy");
        let props = &mapping(&analysis, &["lang"])["mappings"]["properties"];
        assert_eq!(props["text_en"]["analyzer"], "english");
        assert_eq!(props["text"]["analyzer"], "cjk");
        assert_eq!(props["lang"]["type"], "keyword");
        let resp = json!({"errors": true, "items": [{"index": {"_id": "d#0", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad"}}}]});
        assert_eq!(bulk_failures(&resp), ["d#0: mapper_parsing_exception: bad"]);
    }
}
