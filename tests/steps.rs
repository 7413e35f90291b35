//! Steps in any language: `spindle check-step` passes every bundled step
//! (Rust, Python, JavaScript) and fails a broken one with what to fix; the
//! Python and JavaScript steps answer when swapped in by one dependency
//! line, and a swap to them under load fails no request.

mod common;

use common::client;
use common::spindle::{Options, Spindle, derived_manifest, ensure_components_built, repo_root, spindle_bin};
use common::upstream::{Behaviour, Upstream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const RERANKER: &str = r#""spindle:reranker/reranker@0.1.0" = { component = "reranker-lexical" }"#;
const PROMPT: &str = r#""spindle:prompt/prompt@0.1.0" = { component = "prompt-default" }"#;

fn wasm(name: &str) -> PathBuf {
    repo_root().join("target/wasm32-wasip2/release").join(format!("{name}.wasm"))
}

/// Runs `spindle check-step`; returns whether it passed and its table.
fn check_step(file: &PathBuf, kind: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new(spindle_bin())
        .arg("check-step")
        .arg(file)
        .args(["--kind", kind, "--calls", "300", "--cache-dir"])
        .arg(repo_root().join("target/spindle-cache"))
        .args(extra)
        .output()
        .expect("run spindle check-step");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn every_bundled_step_passes_the_conformance_check() {
    ensure_components_built();
    for (name, kind) in [
        ("retriever_bm25", "retriever"),
        ("reranker_lexical", "reranker"),
        ("reranker_none", "reranker"),
        ("reranker_python", "reranker"),
        ("prompt_default", "prompt"),
        ("prompt_js", "prompt"),
        ("generator_extractive", "generator"),
    ] {
        let (ok, table) = check_step(&wasm(name), kind, &[]);
        eprintln!("{table}");
        assert!(ok, "{name} fails its contract:\n{table}");
        assert!(table.contains("PASS  no growth"), "{name}: the growth check ran:\n{table}");
        assert!(!table.contains("FAIL"), "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_generator_passes_against_an_openai_upstream() {
    ensure_components_built();
    let upstream = Upstream::start(Behaviour::tokens(5, 1, 1)).await;
    let file = wasm("generator_openai");
    let origin = upstream.origin.clone();
    let (ok, table) = tokio::task::spawn_blocking(move || {
        check_step(&file, "generator", &["--var", &format!("llm_url={origin}/v1"), "--allow-outbound", &origin])
    })
    .await
    .unwrap();
    assert!(ok, "{table}");
    assert!(table.contains("5 text chunks, then finish \"stop\""), "{table}");
    // Without an upstream it says what to give it.
    let (ok, table) = check_step(&wasm("generator_openai"), "generator", &[]);
    assert!(!ok);
    assert!(table.contains("FAIL  stream ends") && table.contains("--var"), "{table}");
}

#[test]
fn a_broken_step_fails_with_what_to_fix() {
    ensure_components_built();
    // A JavaScript reranker that breaks the contract on purpose, built with
    // the toolchain the JavaScript prompt step installed.
    let dir = repo_root().join("tests/steps/broken-reranker");
    let out = std::env::temp_dir().join(format!("broken-reranker-{}.wasm", std::process::id()));
    let status = Command::new(repo_root().join("components/prompt-js/node_modules/.bin/componentize-qjs"))
        .args(["--wit", "wit", "--world", "step", "--js", "reranker.js", "-o"])
        .arg(&out)
        .current_dir(&dir)
        .status()
        .expect("run componentize-qjs");
    assert!(status.success());
    let (ok, table) = check_step(&out, "reranker", &[]);
    assert!(!ok, "a broken step must fail:\n{table}");
    for expected in [
        "FAIL  typed result           returned 9 passages for a limit of 3: cut the list to the limit",
        "FAIL  top-n respected        returned 9 passages for a limit of 1",
        "FAIL  no passages            trapped:",
        "(return a step-error instead)",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in:\n{table}");
    }
    // The wrong kind is named, not a crash.
    let (ok, table) = check_step(&out, "prompt", &[]);
    assert!(!ok);
    assert!(table.contains("does not export spindle:prompt/prompt@0.1.0"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_steps_answer_when_swapped_in() {
    let upstream = Upstream::start_with(Behaviour::tokens(3, 5, 5), true).await;
    let manifest = derived_manifest(
        "polyglot",
        &[
            (RERANKER, &RERANKER.replace("reranker-lexical", "reranker-python")),
            (PROMPT, &PROMPT.replace("prompt-default", "prompt-js")),
        ],
    );
    let spindle = Spindle::start(Options {
        manifest: Some(manifest),
        extra_args: vec!["--cache-dir".into(), repo_root().join("target/spindle-cache").display().to_string()],
        ..Options::default().llm(&upstream.origin)
    });
    let mut s = client::get(&spindle.url("/api/chat/stream?query=how+do+I+install+a+package&top_k=4")).await;
    let events = s.events().await;
    assert_eq!(client::names(&events).last().map(String::as_str), Some("done"), "{events:?}");
    // The Python reranker numbers its picks 4, 3, 2, 1.
    let sources = client::data(&events, "sources");
    let scores: Vec<f64> = sources.as_array().unwrap().iter().map(|s| s["score"].as_f64().unwrap()).collect();
    assert_eq!(scores, [4.0, 3.0, 2.0, 1.0], "{sources}");
    // The JavaScript prompt reached the LLM.
    let log = upstream.log.lock().unwrap();
    let system = log.requests[0]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(system.contains("at most five short bullet points") && system.contains("[1]"), "{system}");
    let last = &log.requests[0]["messages"].as_array().unwrap().last().unwrap()["content"];
    assert_eq!(last, "how do I install a package");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_steps_are_replaced_by_python_and_javascript_under_load_without_a_failed_request() {
    let upstream = Upstream::start(Behaviour::tokens(20, 50, 50)).await;
    let manifest = derived_manifest("polyglot-swap", &[]);
    let spindle = Arc::new(Spindle::start(Options {
        manifest: Some(manifest.clone()),
        extra_args: vec!["--cache-dir".into(), repo_root().join("target/spindle-cache").display().to_string()],
        ..Options::default().llm(&upstream.origin).var("cache_ttl_secs", "0")
    }));
    let ask = |i: usize| {
        let spindle = spindle.clone();
        tokio::spawn(async move {
            let mut s =
                client::get(&spindle.url(&format!("/api/chat/stream?query=how+do+I+install+a+package+{i}"))).await;
            let events = s.events().await;
            (s.status, client::names(&events).last().cloned(), client::data(&events, "meta")["revision"].clone())
        })
    };
    let before: Vec<_> = (0..150).map(ask).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&manifest).unwrap();
    let swapped = text
        .replace(RERANKER, &RERANKER.replace("reranker-lexical", "reranker-python"))
        .replace(PROMPT, &PROMPT.replace("prompt-default", "prompt-js"));
    std::fs::write(&manifest, swapped).unwrap();
    let res =
        client::send(http::Request::post(spindle.url("/admin/reload")).body(client::Body::default()).unwrap()).await;
    assert_eq!(res.status, 200);
    let report = res.json().await;
    let after: Vec<_> = (150..300).map(ask).collect();
    for (i, r) in futures::future::join_all(before.into_iter().chain(after)).await.into_iter().enumerate() {
        let (status, last, revision) = r.unwrap();
        assert_eq!((status, last.as_deref()), (200, Some("done")), "request {i}");
        if i >= 150 {
            assert_eq!(revision, report["revision"], "request {i} started after the swap");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelines_in_one_app_each_use_their_own_steps_and_variables() {
    ensure_components_built();
    let upstream = Upstream::start_with(Behaviour::tokens(3, 5, 5), true).await;
    // The knowledge base's keyword engine.
    let engine = spindle_testkit::scripted::Scripted::start().await;
    let hits: Vec<serde_json::Value> = ["kb-1", "kb-2", "kb-3"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({"_id": format!("{id}#0"), "_score": 10.0 - i as f64, "_source": {
                "text": format!("Knowledge base page {id}: how to request a laptop."), "title": format!("KB {id}"),
                "doc_id": id, "lang": "en"}})
        })
        .collect();
    engine.on(
        "POST",
        "/team-kb/_search",
        spindle_testkit::scripted::Reply::json(
            serde_json::json!({"took": 1, "hits": {"total": {"value": 3}, "hits": hits}}),
        ),
    );
    let spindle = Spindle::start(Options {
        manifest: Some(repo_root().join("examples/two-pipelines/spin.toml")),
        extra_args: vec![
            "--cache-dir".into(),
            repo_root().join("target/spindle-cache").display().to_string(),
            "--log-dir".into(),
            "none".into(),
        ],
        ..Options::default()
            .llm(&upstream.origin)
            .var("kb_opensearch_url", &engine.origin)
            .var("kb_opensearch_index", "team-kb")
    });
    let ask = |path: &'static str| {
        let url = spindle.url(path);
        async move {
            let mut s = client::get(&url).await;
            assert_eq!(s.status, 200, "{url}");
            s.events().await
        }
    };
    // The FAQ at `/`: the embedded Debian FAQ, the default prompt.
    let faq = ask("/api/chat/stream?query=how+do+I+install+a+package").await;
    let ids: Vec<String> =
        client::data(&faq, "sources").as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().into()).collect();
    assert!(ids.iter().all(|id| id.starts_with("en:")), "FAQ sources: {ids:?}");
    // The knowledge base at `/kb/`: its own engine and index, the Python
    // reranker (scores n, n-1, ...) and the JavaScript prompt.
    let kb = ask("/kb/api/chat/stream?query=how+do+I+request+a+laptop&top_k=3").await;
    let sources = client::data(&kb, "sources");
    let ids: Vec<&str> = sources.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| id.starts_with("kb-")), "KB sources: {sources}");
    let scores: Vec<f64> = sources.as_array().unwrap().iter().map(|s| s["score"].as_f64().unwrap()).collect();
    assert_eq!(scores, [3.0, 2.0, 1.0]);
    assert_eq!(engine.requests("/team-kb/_search").len(), 1, "only the KB pipeline called the engine");
    let systems: Vec<String> = upstream
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|r| r["messages"][0]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(systems.len(), 2);
    assert!(!systems[0].contains("bullet points") && systems[1].contains("bullet points"), "{systems:?}");
    // Each pipeline serves its own page and API under its route.
    let page = client::get(&spindle.url("/kb/")).await;
    assert_eq!(page.status, 200);
    let missing = client::get(&spindle.url("/kb/nothing-here")).await;
    assert_eq!(missing.status, 404);
}
