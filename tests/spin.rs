//! The same app under a real Spin (`spin up`, its path in `$SPIN`): the
//! scenarios users depend on, on free ports, and the differences from
//! `spindle` asserted, so the compatibility table in docs/host.md stays
//! true. Without `$SPIN` every test says so and passes.

mod common;

use common::client;
use common::redis::{runtime_config, start_redis};
use common::spindle::{Options, Spindle, derived_manifest, repo_root};
use common::upstream::{Behaviour, Upstream};
use spindle_testkit::scripted::{Reply, Scripted};
use std::time::{Duration, Instant};

/// `spin up` with `opts`, or `None` (the test then returns) without Spin.
fn spin_up(opts: Options) -> Option<Spindle> {
    Spindle::start_spin(opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sse_stream_relays_tokens_as_they_arrive() {
    // Five tokens 300 ms apart.
    let upstream = Upstream::start(Behaviour::tokens(5, 50, 300)).await;
    let Some(spin) = spin_up(Options::default().llm(&upstream.origin)) else { return };
    let mut s = client::get(&spin.url("/api/chat/stream?query=how+do+I+install+a+package")).await;
    assert_eq!(s.status, 200);
    assert!(s.header("content-type").unwrap().starts_with("text/event-stream"));
    let mut events = Vec::new();
    while let Some((e, at)) = s.next_event().await {
        events.push((e, at));
    }
    let names: Vec<String> = events.iter().map(|(e, _)| e.name.clone().unwrap_or_else(|| "text".into())).collect();
    assert_eq!(names.first().map(String::as_str), Some("meta"));
    assert_eq!(names[1], "sources");
    assert_eq!(names.last().map(String::as_str), Some("done"), "{names:?}");
    let texts: Vec<Instant> = events.iter().filter(|(e, _)| e.name.is_none()).map(|(_, at)| *at).collect();
    assert_eq!(texts.len(), 5);
    // Relayed one by one: the first token is seen long before the last is sent.
    let spread = texts[4] - texts[0];
    assert!(spread >= Duration::from_millis(900), "tokens arrived together ({spread:?}): buffered");
    let all: Vec<_> = events.into_iter().map(|(e, _)| e).collect();
    assert_eq!(client::text(&all), "tok0 tok1 tok2 tok3 tok4 ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_with_a_json_body() {
    let Some(spin) = spin_up(Options::default()) else { return };
    for (url, code) in [
        ("/api/chat/stream", "missing_query"),
        ("/api/chat/stream?query=x&top_k=0", "invalid_top_k"),
        ("/api/chat/stream?query=x&top_k=abc", "invalid_top_k"),
    ] {
        let s = client::get(&spin.url(url)).await;
        assert_eq!(s.status, 400, "{url}");
        assert_eq!(s.json().await["error"]["code"], code, "{url}");
    }
    let s = client::post_json(&spin.url("/api/chat/stream"), "{not json").await;
    assert_eq!(s.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_streams_answers() {
    let upstream = Upstream::start(Behaviour::tokens(4, 10, 10)).await;
    let Some(spin) = spin_up(Options::default().llm(&upstream.origin).var("llm_model", "fake-model")) else { return };
    let base = spin.url("/v1");
    let seen = tokio::task::spawn_blocking(move || client::run_sdk_client("python3", "openai_client.py", &base))
        .await
        .unwrap();
    assert_eq!(seen["stream_text"], "tok0 tok1 tok2 tok3 ", "{seen}");
    assert_eq!(seen["stream_finish"], "stop");
    assert_eq!(seen["text"], "tok0 tok1 tok2 tok3 ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_dependencies_run_the_other_steps() {
    // The extractive generator: no LLM call at all.
    let upstream = Upstream::start(Behaviour::tokens(4, 10, 10)).await;
    let manifest = derived_manifest(
        "spin-extractive",
        &[(r#"{ component = "generator-openai" }"#, r#"{ component = "generator-extractive" }"#)],
    );
    let Some(spin) = spin_up(Options { manifest: Some(manifest), ..Options::default().llm(&upstream.origin) }) else {
        return;
    };
    let events = client::get(&spin.url("/api/chat/stream?query=what+is+apt")).await.events().await;
    assert_eq!(client::data(&events, "meta")["generator"], "extractive");
    assert!(upstream.log.lock().unwrap().requests.is_empty());
    drop(spin);

    // A remote retriever against a scripted keyword engine.
    let engine = Scripted::start().await;
    engine.on(
        "POST",
        "/spindle/_search",
        Reply::json(serde_json::json!({"took": 1, "hits": {"total": {"value": 1}, "hits": [
            {"_id": "remote-1#0", "_score": 3.0, "_source": {"text": "Remote passage about apt.", "title": "Remote", "doc_id": "remote-1"}}
        ]}})),
    );
    let manifest = derived_manifest(
        "spin-opensearch",
        &[(r#"{ component = "retriever-bm25" }"#, r#"{ component = "retriever-opensearch" }"#)],
    );
    let Some(spin) =
        spin_up(Options { manifest: Some(manifest), ..Options::default().var("opensearch_url", &engine.origin) })
    else {
        return;
    };
    let events = client::get(&spin.url("/api/chat/stream?query=what+is+apt")).await.events().await;
    assert_eq!(client::data(&events, "sources")[0]["id"], "remote-1#0", "variables reach the dependency");
    assert_eq!(engine.requests("/spindle/_search").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_cache_uses_redis_from_the_runtime_config() {
    let port = common::redis::free_port();
    let _redis = start_redis(port);
    let rc = runtime_config(port);
    let Some(spin) = spin_up(Options {
        extra_args: vec!["--runtime-config-file".into(), rc.display().to_string()],
        ..Options::default()
    }) else {
        return;
    };
    let ask = || async { client::get(&spin.url("/api/chat/stream?query=what+is+debian")).await.events().await };
    assert_eq!(client::data(&ask().await, "done")["cache"], "miss");
    assert_eq!(client::data(&ask().await, "done")["cache"], "hit");
    let keys = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--scan", "--pattern", "spindle:answer:*"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&keys.stdout).lines().count(), 1, "one answer in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_while_tokens_flow_drops_the_upstream_request() {
    let upstream = Upstream::start(Behaviour::tokens(200, 10, 50)).await;
    let Some(spin) = spin_up(Options::default().llm(&upstream.origin)) else { return };
    let mut s = client::get(&spin.url("/api/chat/stream?query=what+is+apt")).await;
    while let Some((e, _)) = s.next_event().await {
        if e.name.is_none() {
            break;
        }
    }
    let left = Instant::now();
    drop(s);
    let deadline = left + Duration::from_secs(5);
    loop {
        if let Some(at) = upstream.log.lock().unwrap().disconnected {
            assert!(at - left < Duration::from_secs(2), "dropped {:?} after the client left", at - left);
            break;
        }
        assert!(Instant::now() < deadline, "the upstream request ran on after the client left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Differences from `spindle`, asserted so the table in docs/host.md is
/// corrected when Spin changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_spin_differs_from_spindle() {
    // Before the first token, Spin does not notice a client leaving
    // (spin#3541): the LLM request runs on until its first token.
    let upstream = Upstream::start(Behaviour::tokens(3, 3000, 10)).await;
    let Some(spin) = spin_up(Options::default().llm(&upstream.origin)) else { return };
    let mut s = client::get(&spin.url("/api/chat/stream?query=what+is+apt")).await;
    let (meta, _) = s.next_event().await.unwrap();
    assert_eq!(meta.name.as_deref(), Some("meta"));
    assert!(
        meta.data.contains("request_id") && !meta.data.contains("revision"),
        "no revision under Spin: {}",
        meta.data
    );
    let left = Instant::now();
    drop(s);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dropped = upstream.log.lock().unwrap().disconnected.map(|at| at - left);
    assert!(
        dropped.is_none_or(|d| d > Duration::from_millis(1000)),
        "Spin now drops the LLM request at once ({dropped:?}): update the table in docs/host.md"
    );
    // The host's own routes exist only under spindle.
    for path in ["/metrics", "/readyz"] {
        assert_eq!(client::get(&spin.url(path)).await.status, 404, "{path}");
    }
    assert_eq!(
        client::send(http::Request::post(spin.url("/admin/reload")).body(client::Body::default()).unwrap())
            .await
            .status,
        404
    );
    // The gateway's own liveness route answers under both.
    assert_eq!(client::get(&spin.url("/healthz")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelines_serve_their_own_routes() {
    let Some(spin) =
        spin_up(Options { manifest: Some(repo_root().join("examples/two-pipelines/spin.toml")), ..Options::default() })
    else {
        return;
    };
    let faq = client::get(&spin.url("/api/chat/stream?query=how+do+I+install+a+package")).await.events().await;
    assert!(client::data(&faq, "sources")[0]["id"].as_str().unwrap().starts_with("en:"));
    // The knowledge-base pipeline has its own retriever, not configured here.
    let kb = client::get(&spin.url("/kb/api/chat/stream?query=laptop")).await.events().await;
    assert_eq!(client::data(&kb, "error")["code"], "retriever_unavailable");
    assert_eq!(client::get(&spin.url("/kb/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_copy_of_the_embedded_retriever_serves_a_teams_files() {
    let dir = std::env::temp_dir().join(format!("spindle-spin-indexed-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(
        dir.join("docs/runbook.md"),
        "# Runbook\n\n## Rotating the keys\n\nSigning keys are rotated on the first Monday of every quarter.\n",
    )
    .unwrap();
    let copy = dir.join("retriever-docs.wasm");
    let (ok, out, err) = common::spindle::index_in(&dir, &[], &["--embedded", copy.to_str().unwrap(), "docs"]);
    assert!(ok, "{out}\n{err}");
    let manifest = derived_manifest(
        "spin-indexed",
        &[
            (r#"{ component = "retriever-bm25" }"#, r#"{ component = "retriever-docs" }"#),
            (r#"{ component = "generator-openai" }"#, r#"{ component = "generator-extractive" }"#),
            (
                "[component.retriever-bm25]\n",
                &format!("[component.retriever-docs]\nsource = \"{}\"\n\n[component.retriever-bm25]\n", copy.display()),
            ),
        ],
    );
    let Some(spin) = spin_up(Options { manifest: Some(manifest), ..Options::default() }) else { return };
    let events =
        client::get(&spin.url("/api/chat/stream?query=when+are+the+signing+keys+rotated")).await.events().await;
    let sources = client::data(&events, "sources");
    assert_eq!(sources[0]["id"], "docs/runbook.md#rotating-the-keys#0", "{sources}");
    assert!(client::text(&events).contains("first Monday of every quarter"), "{events:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_resumes_through_spins_outbound_redis() {
    let redis = common::redis::free_port();
    let _redis = start_redis(redis);
    let upstream = Upstream::start(Behaviour::tokens(12, 50, 100)).await;
    let opts = Options::default()
        .llm(&upstream.origin)
        .var("cache_ttl_secs", "0")
        .var("stream_journal_url", format!("redis://127.0.0.1:{redis}"));
    let Some(spin) = spin_up(opts) else { return };
    let mut seen = common::resume::read_then_leave(&spin.url("/api/chat/stream?query=resume+under+spin"), 4).await;
    let (rest, _) = common::resume::resume(&spin.base, &seen).await;
    seen.extend(rest);
    common::resume::assert_whole(&seen, 12);
}
