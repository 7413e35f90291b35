//! Remote retrieval through the real components, against scripted peers
//! that can be made to fail on demand: hybrid fusion, each way an engine,
//! vector store or embeddings endpoint can fail (down, slow, HTTP error,
//! malformed JSON, wrong dimension, empty index) and the rerank APIs.
//! The same components against the real servers: tests/end_to_end.rs.

mod common;

use common::client::{self, data, names};
use common::spindle::{Options, Spindle, derived_manifest};
use common::upstream::Upstream;
use serde_json::{Value, json};
use spindle_testkit::scripted::{Reply, Scripted, Seen};
use spindle_wire::sse::Event;
use std::time::Duration;

const DIM: usize = 4;
const COLLECTIONS: &str = "/api/v2/tenants/default_tenant/databases/default_database/collections";

fn manifest(retriever: &str, reranker: &str) -> std::path::PathBuf {
    derived_manifest(
        &format!("{retriever}-{reranker}"),
        &[
            (r#"{ component = "retriever-bm25" }"#, &format!(r#"{{ component = "{retriever}" }}"#)),
            (r#"{ component = "reranker-lexical" }"#, &format!(r#"{{ component = "{reranker}" }}"#)),
        ],
    )
}

/// An OpenSearch `_search` answer holding `ids` (documents `<id>`).
fn keyword_hits(ids: &[&str]) -> Value {
    let hits: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"_id": format!("{id}#0"), "_score": 10.0 - i as f64, "_source": {
                "text": format!("Keyword passage {id} about installing packages with apt."),
                "title": format!("Title {id}"), "doc_id": id, "lang": "en"}})
        })
        .collect();
    json!({"took": 1, "hits": {"total": {"value": hits.len()}, "hits": hits}})
}

/// A Chroma query answer holding `ids`.
fn vector_hits(ids: &[&str]) -> Value {
    json!({
        "ids": [ids.iter().map(|id| format!("{id}#0")).collect::<Vec<_>>()],
        "documents": [ids.iter().map(|id| format!("Vector passage {id} about installing packages.")).collect::<Vec<_>>()],
        "metadatas": [ids.iter().map(|id| json!({"title": format!("Title {id}"), "doc_id": id, "lang": "en"})).collect::<Vec<_>>()],
        "distances": [ids.iter().enumerate().map(|(i, _)| 0.1 * (i + 1) as f64).collect::<Vec<_>>()],
    })
}

/// One vector of `dim` per input, as an embeddings endpoint answers.
fn embeddings(seen: &Seen, dim: usize) -> Reply {
    let n = seen.json()["input"].as_array().map_or(0, Vec::len);
    let data: Vec<Value> =
        (0..n).map(|i| json!({"object": "embedding", "index": i, "embedding": vec![0.5; dim]})).collect();
    Reply::json(json!({"object": "list", "data": data, "model": "e5"}))
}

/// OpenSearch, Chroma and an embeddings endpoint, all healthy, in one peer.
async fn engines(keyword: &[&str], vector: &[&str]) -> Scripted {
    let peer = Scripted::start().await;
    peer.on("POST", "/spindle/_search", Reply::json(keyword_hits(keyword)))
        .on("GET", "/spindle/_count", Reply::json(json!({"count": 42})))
        .on("GET", &format!("{COLLECTIONS}/spindle"), Reply::json(json!({"id": "c-1", "name": "spindle"})))
        .on("POST", &format!("{COLLECTIONS}/c-1/query"), Reply::json(vector_hits(vector)))
        .on("GET", &format!("{COLLECTIONS}/c-1/count"), Reply::json(json!(42)))
        .on_fn("POST", "/v1/embeddings", |s| embeddings(s, DIM));
    peer
}

fn remote(opts: Options, keyword: &str, vector: &str) -> Options {
    opts.var("opensearch_url", keyword)
        .var("vector_url", vector)
        .var("embeddings_url", vector)
        .var("embeddings_dimension", DIM.to_string())
        .var("keyword_timeout_ms", "400")
        .var("vector_timeout_ms", "400")
        .var("embeddings_timeout_ms", "400")
}

async fn ask(spindle: &Spindle, query: &str) -> Vec<Event> {
    let body = json!({"query": query, "top_k": 3, "filters": {"lang": "en"}}).to_string();
    client::post_json(&spindle.url("/api/chat/stream"), &body).await.events().await
}

fn source_ids(events: &[Event]) -> Vec<String> {
    data(events, "sources").as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

fn degraded(events: &[Event]) -> String {
    data(events, "done")["degraded"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn hybrid_fuses_keyword_and_vector_results_with_rrf() {
    let peer = engines(&["k1", "shared", "k3"], &["shared", "v1"]).await;
    let spindle = Spindle::start(remote(
        Options { manifest: Some(manifest("retriever-hybrid", "reranker-none")), ..Options::default() },
        &peer.origin,
        &peer.origin,
    ));
    let events = ask(&spindle, "how do I install packages?").await;
    assert_eq!(names(&events)[..2], ["meta", "sources"], "{events:?}");
    // shared: 1/62 + 1/61; k1: 1/61; v1: 1/62 (first-seen keeps ties); k3: 1/63.
    assert_eq!(source_ids(&events), ["shared#0", "k1#0", "v1#0"]);
    let done = data(&events, "done");
    assert_eq!(done["degraded"], json!([]), "{done}");
    let score = data(&events, "sources")[0]["score"].as_f64().unwrap();
    assert!((score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-5, "{score}");
    // What the engines were asked: BM25 with the filter as a term query,
    // twice the candidates the gateway wants (chunks collapse to documents);
    // the query embedded as a query.
    let search = peer.requests("/spindle/_search").pop().unwrap().json();
    assert_eq!(search["query"]["bool"]["filter"][0]["term"]["lang"], "en");
    assert_eq!(search["query"]["bool"]["must"][0]["match"]["text"]["query"], "how do I install packages?");
    assert_eq!(search["size"], 24);
    let embed = peer.requests("/v1/embeddings").pop().unwrap().json();
    assert_eq!(embed["input_type"], "query");
    let query = peer.requests(&format!("{COLLECTIONS}/c-1/query")).pop().unwrap().json();
    assert_eq!(query["where"], json!({"lang": {"$eq": "en"}}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_side_degrades_the_hybrid_answer_with_a_specific_reason() {
    let keyword = engines(&["k1", "k2"], &[]).await;
    let vector = engines(&[], &["v1"]).await;
    let spindle = Spindle::start(remote(
        Options { manifest: Some(manifest("retriever-hybrid", "reranker-none")), ..Options::default() },
        &keyword.origin,
        &vector.origin,
    ));
    let query_path = format!("{COLLECTIONS}/c-1/query");
    let cases: Vec<(&str, &Scripted, &str, Reply, &str)> = vec![
        (
            "vector store slow",
            &vector,
            &query_path,
            Reply::json(vector_hits(&["v1"])).after(Duration::from_secs(3)),
            "did not answer within 400 ms",
        ),
        (
            "vector store HTTP 500",
            &vector,
            &query_path,
            Reply::status(500, r#"{"error":"InternalError","message":"disk full"}"#),
            "answered HTTP 500: InternalError: disk full",
        ),
        (
            "vector store malformed JSON",
            &vector,
            &query_path,
            Reply::status(200, "{\"ids\": [[\"v1#0\""),
            "sent an unusable response: not JSON",
        ),
        (
            "embeddings wrong dimension",
            &vector,
            "/v1/embeddings",
            Reply::json(json!({"data": [{"index": 0, "embedding": [0.1, 0.2, 0.3]}]})),
            "expected embeddings of dimension 4, got 3",
        ),
        (
            "embeddings HTTP 429",
            &vector,
            "/v1/embeddings",
            Reply::status(429, r#"{"error":{"message":"rate limited","type":"rate_limit"}}"#),
            "answered HTTP 429",
        ),
        (
            "keyword index missing",
            &keyword,
            "/spindle/_search",
            Reply::status(
                404,
                r#"{"error":{"type":"index_not_found_exception","reason":"no such index [spindle]"},"status":404}"#,
            ),
            "index_not_found_exception: no such index [spindle]",
        ),
        (
            "keyword index empty",
            &keyword,
            "/spindle/_count",
            Reply::json(json!({"count": 0})),
            "the index `spindle` holds no documents",
        ),
    ];
    for (name, peer, path, reply, reason) in cases {
        let healthy = if name == "keyword index empty" {
            // An empty index answers no hits; the count says why.
            peer.on("POST", "/spindle/_search", Reply::json(keyword_hits(&[])));
            Some(("POST", "/spindle/_search", Reply::json(keyword_hits(&["k1", "k2"]))))
        } else {
            None
        };
        let restore = Reply::json(match (path, name.starts_with("keyword")) {
            (_, true) if path.ends_with("_count") => json!({"count": 42}),
            (_, true) => keyword_hits(&["k1", "k2"]),
            (p, false) if p.ends_with("/query") => vector_hits(&["v1"]),
            _ => Value::Null,
        });
        peer.on(if path.ends_with("_count") { "GET" } else { "POST" }, path, reply);
        let t = std::time::Instant::now();
        let events = ask(&spindle, "how do I install packages?").await;
        assert!(t.elapsed() < Duration::from_secs(3), "{name}: took {:?}", t.elapsed());
        assert_eq!(names(&events).last().map(String::as_str), Some("done"), "{name}: {events:?}");
        let ids = source_ids(&events);
        let side = if name.starts_with("keyword") { "keyword" } else { "vector" };
        let expected: &[&str] = if side == "keyword" { &["v1#0"] } else { &["k1#0", "k2#0"] };
        assert_eq!(ids, expected, "{name}: the healthy side still answers");
        let why = degraded(&events);
        assert!(why.contains(&format!("retriever: {side}: ")) && why.contains(reason), "{name}: degraded = {why}");
        assert_eq!(data(&events, "done")["cache"], "miss", "{name}");
        // Heal the side for the next case.
        if path == "/v1/embeddings" {
            peer.on_fn("POST", "/v1/embeddings", |s| embeddings(s, DIM));
        } else {
            peer.on(if path.ends_with("_count") { "GET" } else { "POST" }, path, restore);
        }
        if let Some((m, p, r)) = healthy {
            peer.on(m, p, r);
        }
    }
    // Degraded answers are not cached: the same question, healed, is whole.
    let events = ask(&spindle, "how do I install packages?").await;
    assert_eq!(degraded(&events), "[]");
}

#[tokio::test(flavor = "multi_thread")]
async fn retrieval_fails_with_an_error_event_only_when_every_source_failed() {
    let refused = Upstream::refused_origin().await;
    let slow = engines(&["k1"], &["v1"]).await;
    slow.on("POST", "/spindle/_search", Reply::json(keyword_hits(&["k1"])).after(Duration::from_secs(3)));
    slow.on(
        "POST",
        &format!("{COLLECTIONS}/c-1/query"),
        Reply::json(vector_hits(&["v1"])).after(Duration::from_secs(3)),
    );
    let hybrid = manifest("retriever-hybrid", "reranker-none");

    let down =
        Spindle::start(remote(Options { manifest: Some(hybrid.clone()), ..Options::default() }, &refused, &refused));
    let events = ask(&down, "apt").await;
    assert_eq!(names(&events), ["meta", "error"], "{events:?}");
    let err = data(&events, "error");
    assert_eq!(err["code"], "retriever_unavailable");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("keyword: cannot reach OpenSearch at"), "{message}");
    assert!(message.contains("vector: cannot reach the embeddings endpoint at"), "{message}");

    let timing_out =
        Spindle::start(remote(Options { manifest: Some(hybrid), ..Options::default() }, &slow.origin, &slow.origin));
    let t = std::time::Instant::now();
    let events = ask(&timing_out, "apt").await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(data(&events, "error")["code"], "retriever_timeout", "{events:?}");

    // A single retriever: its own failure is the answer's error.
    let single = Spindle::start(remote(
        Options { manifest: Some(manifest("retriever-opensearch", "reranker-none")), ..Options::default() },
        &refused,
        &refused,
    ));
    let events = ask(&single, "apt").await;
    assert_eq!(data(&events, "error")["code"], "retriever_unavailable");
    let unconfigured =
        Spindle::start(Options { manifest: Some(manifest("retriever-vector", "reranker-none")), ..Options::default() });
    let events = ask(&unconfigured, "apt").await;
    let err = data(&events, "error");
    assert_eq!(err["code"], "retriever_unavailable", "{err}");
    assert!(err["message"].as_str().unwrap().contains("variable `vector_url` is empty"), "{err}");
}

/// A rerank peer for `api` that prefers later documents, so the order it
/// returns is the reverse of the order it was given.
fn rerank_reply(api: &str, seen: &Seen) -> Reply {
    let body = seen.json();
    let docs = body[if api == "tei" { "texts" } else { "documents" }].as_array().unwrap().len();
    let scored: Vec<(usize, f64)> = (0..docs).rev().map(|i| (i, i as f64 / docs as f64)).collect();
    Reply::json(match api {
        "tei" => json!(scored.iter().map(|(i, s)| json!({"index": i, "score": s})).collect::<Vec<_>>()),
        _ => {
            json!({"id": "r", "results": scored.iter().map(|(i, s)| json!({"index": i, "relevance_score": s})).collect::<Vec<_>>()})
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn reranker_http_speaks_the_cohere_jina_and_tei_apis() {
    let reranker = manifest("retriever-bm25", "reranker-http");
    for (api, path) in [("cohere", "/v2/rerank"), ("jina", "/v1/rerank"), ("tei", "/rerank")] {
        let peer = Scripted::start().await;
        peer.on_fn("POST", path, move |s| rerank_reply(api, s));
        let spindle = Spindle::start(
            Options { manifest: Some(reranker.clone()), ..Options::default() }
                .var("rerank_api", api)
                .var("rerank_url", &peer.origin)
                .var("rerank_model", "bge-reranker")
                .var("rerank_api_key", "sk-test"),
        );
        let events = ask(&spindle, "how do I install a package").await;
        assert_eq!(degraded(&events), "[]", "{api}: {events:?}");
        let seen = peer.requests(path);
        assert_eq!(seen.len(), 1, "{api}");
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer sk-test"), "{api}");
        let body = seen[0].json();
        let docs: Vec<String> = body[if api == "tei" { "texts" } else { "documents" }]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        assert!(docs.len() > 3, "{api}: candidates sent: {}", docs.len());
        assert_eq!(body["query"], "how do I install a package", "{api}");
        if api != "tei" {
            assert_eq!(body["model"], "bge-reranker");
        }
        // The reranker's order wins: the last candidate sent comes first.
        let sources = data(&events, "sources");
        let first = sources[0]["snippet"].as_str().unwrap().trim_end_matches('…');
        assert!(docs.last().unwrap().starts_with(first), "{api}: {first:?}");
        assert_eq!(sources.as_array().unwrap().len(), 3, "{api}: top_k kept");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_reranker_is_skipped_and_reported() {
    let peer = Scripted::start().await;
    peer.on("POST", "/v2/rerank", Reply::status(200, r#"{"results": [{"index": 0, "relevance_score": 0.5}]}"#));
    let spindle = Spindle::start(
        Options { manifest: Some(manifest("retriever-bm25", "reranker-http")), ..Options::default() }
            .var("rerank_url", &peer.origin),
    );
    let events = ask(&spindle, "how do I install a package").await;
    assert_eq!(data(&events, "sources").as_array().unwrap().len(), 3, "retrieval order still answers");
    let why = degraded(&events);
    assert!(why.contains("reranker: the reranker at") && why.contains("scored 1 of"), "{why}");

    peer.on("POST", "/v2/rerank", Reply::status(503, r#"{"message":"model loading"}"#));
    let why = degraded(&ask(&spindle, "how do I remove a package").await);
    assert!(why.contains("answered HTTP 503: model loading"), "{why}");
}
