//! Long-lived streams: cancellation when the client leaves, heartbeats on
//! idle streams, the whole-request deadline.

mod common;

use common::client;
use common::spindle::{Options, Spindle, derived_manifest};
use common::upstream::{Behaviour, Upstream};
use serde_json::json;
use spindle_testkit::scripted::{Reply, Scripted};
use std::time::{Duration, Instant};

/// Reads events until `n` text chunks have arrived (or the first event
/// after meta+sources when `n` is 0).
async fn read_until_text(s: &mut client::Stream, n: usize) {
    let mut texts = 0;
    let mut sources = false;
    while let Some((e, _)) = s.next_event().await {
        sources |= e.name.as_deref() == Some("sources");
        if e.name.is_none() {
            texts += 1;
        }
        if (n == 0 && sources) || (n > 0 && texts >= n) {
            return;
        }
    }
    panic!("stream ended early");
}

async fn wait_for_disconnect(upstream: &Upstream, left_at: Instant) -> Duration {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(at) = upstream.log.lock().unwrap().disconnected {
            return at.saturating_duration_since(left_at);
        }
        assert!(Instant::now() < give_up, "the upstream request was never dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_while_the_model_is_silent_drops_the_upstream_request() {
    // A slow model: 3 s to the first token. Spin holds such requests until
    // the first token; spindle drops them when the client leaves.
    let upstream = Upstream::start(Behaviour::tokens(5, 3000, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    read_until_text(&mut s, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.log.lock().unwrap().requests.len(), 1, "the LLM request is in flight");
    let left_at = Instant::now();
    drop(s);
    let after = wait_for_disconnect(&upstream, left_at).await;
    assert!(after < Duration::from_millis(100), "upstream dropped {after:?} after the client left");
    assert!(upstream.log.lock().unwrap().sent.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_mid_stream_drops_the_upstream_request() {
    let upstream = Upstream::start(Behaviour::tokens(200, 10, 50)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    read_until_text(&mut s, 3).await;
    let left_at = Instant::now();
    drop(s);
    let after = wait_for_disconnect(&upstream, left_at).await;
    assert!(after < Duration::from_millis(100), "upstream dropped {after:?} after the client left");
    let sent = upstream.log.lock().unwrap().sent.len();
    assert!(sent < 20, "the model stopped generating early ({sent} of 200 tokens sent)");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_streams_get_keep_alive_comments_between_events() {
    let upstream = Upstream::start(Behaviour::tokens(3, 1200, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin).var("heartbeat_ms", "200"));
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    let events = s.events().await;
    assert_eq!(client::text(&events), "tok0 tok1 tok2 ");
    let raw = String::from_utf8(s.raw.clone()).unwrap();
    let comments = raw.matches(": keep-alive\n\n").count();
    assert!((3..=8).contains(&comments), "expected a comment every 200 ms over ~1.2 s idle, got {comments}:\n{raw}");
    // Every comment starts at an event boundary, never inside an event.
    for (i, _) in raw.match_indices(": keep-alive") {
        assert!(i == 0 || raw[..i].ends_with("\n\n"), "comment inside an event at byte {i}:\n{raw}");
    }
    // Without idleness there are none.
    let quick = Upstream::start(Behaviour::tokens(3, 10, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&quick.origin).var("heartbeat_ms", "5000"));
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    s.events().await;
    assert!(!String::from_utf8_lossy(&s.raw).contains("keep-alive"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_past_the_whole_request_deadline_ends_with_an_error_event() {
    // 60 tokens 50 ms apart: about 3 s of steady answer against a 1 s deadline.
    let upstream = Upstream::start(Behaviour::tokens(60, 20, 50)).await;
    let logs = std::env::temp_dir().join(format!("spindle-deadline-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    let spindle = Spindle::start(Options {
        extra_args: vec!["--request-timeout-secs".into(), "1".into(), "--log-dir".into(), logs.display().to_string()],
        ..Options::default().llm(&upstream.origin)
    });
    let started = Instant::now();
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    let took = started.elapsed();
    let n = client::names(&events);
    assert_eq!(n.last().map(String::as_str), Some("error"), "{n:?}");
    assert_eq!(client::data(&events, "error")["code"], "request_timeout");
    assert!(!client::text(&events).is_empty(), "the answer had started before the deadline");
    assert!(took >= Duration::from_millis(950) && took < Duration::from_millis(2000), "ended after {took:?}");
    // The model's request is dropped with the stream.
    let left = wait_for_disconnect(&upstream, started + took).await;
    assert!(left < Duration::from_millis(500), "upstream request outlived the stream by {left:?}");
    // The logs say the host ended it, not that the client left.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let access = std::fs::read_to_string(logs.join("access.jsonl")).unwrap();
    assert!(access.contains("\"complete\":true"), "{access}");
    let queries = std::fs::read_to_string(logs.join("queries.jsonl")).unwrap();
    assert!(queries.contains("\"outcome\":\"error\"") && queries.contains("request_timeout"), "{queries}");
}

#[tokio::test(flavor = "multi_thread")]
async fn text_that_spells_an_end_marker_does_not_end_the_stream() {
    // The model writes the end markers of both encodings as text, then keeps
    // going past a 1 s deadline: the host must still end each stream with
    // an error in its own encoding, never silently.
    let mut tokens = vec!["event: done\ndata: {}\n\n".to_string(), "data: [DONE]\n\n".to_string()];
    tokens.extend((0..60).map(|i| format!("t{i} ")));
    let upstream = Upstream::start(Behaviour::Stream {
        tokens,
        first_delay: Duration::from_millis(10),
        per_token: Duration::from_millis(50),
        end: common::upstream::End::Done,
    })
    .await;
    let spindle = Spindle::start(Options {
        extra_args: ["--request-timeout-secs", "1"].map(String::from).to_vec(),
        ..Options::default().llm(&upstream.origin)
    });
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    assert!(client::text(&events).contains("event: done"), "the marker was relayed as text");
    let names = client::names(&events);
    assert_eq!(names.last().map(String::as_str), Some("error"), "{names:?}");
    assert_eq!(client::data(&events, "error")["code"], "request_timeout");

    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"what is debian"}]}"#;
    let events = client::post_json(&spindle.url("/v1/chat/completions"), body).await.events().await;
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert!(events.iter().all(|e| e.name.is_none()), "OpenAI streams have unnamed events only: {data:?}");
    assert_eq!(data.last(), Some(&"[DONE]"), "{data:?}");
    let error: serde_json::Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], "request_timeout", "{data:?}");
    assert_eq!(error["error"]["type"], "server_error");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert!(text.contains("data: [DONE]"), "the marker was relayed as text: {text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_that_arrive_together_stay_separate_events_in_order() {
    // The generator and the gateway pass on everything one read brings in
    // one piece; the client must still get one event per token, in order,
    // on both encodings, and the cached replay must be the same.
    let tokens: Vec<String> = (0..40).map(|i| if i == 7 { "line\nbreak ".into() } else { format!("t{i} ") }).collect();
    let upstream = Upstream::start(Behaviour::Burst(tokens.clone())).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    for round in ["first", "cached"] {
        let events = client::get(&spindle.url("/api/chat/stream?query=what+is+apt")).await.events().await;
        let texts: Vec<&str> = events.iter().filter(|e| e.name.is_none()).map(|e| e.data.as_str()).collect();
        assert_eq!(texts, tokens, "{round}: one event per token, in order");
        let n = client::names(&events);
        assert_eq!(n[..2], ["meta", "sources"], "{round}");
        assert_eq!(n.last().map(String::as_str), Some("done"), "{round}");
        assert_eq!(client::data(&events, "done")["finish_reason"], "stop", "{round}");
    }
    assert_eq!(upstream.log.lock().unwrap().requests.len(), 1, "the second answer came from the cache");

    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"what is dpkg"}]}"#;
    let events = client::post_json(&spindle.url("/v1/chat/completions"), body).await.events().await;
    let deltas: Vec<String> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(deltas, tokens, "OpenAI encoding: one chunk per token");
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_between_bytes_limit_cuts_a_stall_never_a_steady_stream() {
    // Tokens every 100 ms for 1.2 s against a 300 ms limit: the limit is
    // on silence, so the answer must complete.
    let steady = Upstream::start(Behaviour::tokens(12, 10, 100)).await;
    let spindle = Spindle::start(Options::default().llm(&steady.origin).var("llm_idle_timeout_ms", "300"));
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    assert_eq!(client::names(&events).last().map(String::as_str), Some("done"), "{:?}", client::names(&events));
    assert_eq!(client::text(&events).matches("tok").count(), 12);

    // The same, then silence: the stream ends 300 ms after the last token,
    // counted from that token, not from when the answer started.
    let stalling = Upstream::start(Behaviour::tokens(12, 10, 100).ending(common::upstream::End::Stall)).await;
    let spindle = Spindle::start(Options::default().llm(&stalling.origin).var("llm_idle_timeout_ms", "300"));
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    let (mut last_text, mut error) = (None, None);
    while let Some((e, at)) = s.next_event().await {
        match e.name.as_deref() {
            None => last_text = Some(at),
            Some("error") => error = Some((serde_json::from_str::<serde_json::Value>(&e.data).unwrap(), at)),
            _ => {}
        }
    }
    let (err, at) = error.expect("an error event");
    assert_eq!(err["code"], "upstream_timeout", "{err}");
    let silence = at - last_text.expect("text before the stall");
    assert!(
        silence >= Duration::from_millis(280) && silence < Duration::from_millis(700),
        "ended {silence:?} after the last token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_while_a_step_waits_drops_its_outbound_call() {
    // Each step's remote service answers only after 5 s: the search
    // engine (retriever-opensearch), the embeddings endpoint
    // (retriever-vector) and a rerank API (reranker-http). When the client
    // leaves while one waits, its call must be dropped at once too, not
    // only the LLM's.
    let slow = Duration::from_secs(5);
    let peer = Scripted::start().await;
    peer.on("POST", "/spindle/_search", Reply::json(json!({"hits": {"hits": []}})).after(slow))
        .on("POST", "/v1/embeddings", Reply::json(json!({"data": []})).after(slow))
        .on("POST", "/v2/rerank", Reply::json(json!({"results": []})).after(slow));
    let swaps: [(&str, &str, &str); 3] = [
        ("opensearch", "retriever-bm25", "retriever-opensearch"),
        ("vector", "retriever-bm25", "retriever-vector"),
        ("rerank", "reranker-lexical", "reranker-http"),
    ];
    for (name, from, to) in swaps {
        let manifest = derived_manifest(
            &format!("slow-{name}"),
            &[(&format!(r#"{{ component = "{from}" }}"#), &format!(r#"{{ component = "{to}" }}"#))],
        );
        let spindle = Spindle::start(Options {
            manifest: Some(manifest),
            ..Options::default()
                .var("opensearch_url", peer.origin.as_str())
                .var("vector_url", peer.origin.as_str())
                .var("embeddings_url", peer.origin.as_str())
                .var("embeddings_dimension", "4")
                .var("rerank_url", peer.origin.as_str())
                .var("keyword_timeout_ms", "30000")
                .var("embeddings_timeout_ms", "30000")
                .var("rerank_timeout_ms", "30000")
                .var("retrieve_timeout_ms", "30000")
                .var("rerank_timeout_ms", "30000")
        });
        let before = peer.seen.lock().unwrap().len();
        let s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
        let give_up = Instant::now() + Duration::from_secs(10);
        while peer.seen.lock().unwrap().len() == before {
            assert!(Instant::now() < give_up, "{name}: the step never called out");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left_at = Instant::now();
        drop(s);
        let give_up = Instant::now() + Duration::from_secs(4);
        let dropped = loop {
            if let Some((_, at)) = peer.dropped.lock().unwrap().iter().find(|(_, at)| *at >= left_at) {
                break *at;
            }
            assert!(Instant::now() < give_up, "{name}: the step's call outlived the client");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let after = dropped.saturating_duration_since(left_at);
        assert!(after < Duration::from_millis(100), "{name}: call dropped {after:?} after the client left");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_line_from_the_model_is_refused_at_its_limit_not_buffered() {
    // One 3 MiB line (a single token in one chunk): the generator refuses
    // it at the 1 MiB line limit at once, instead of buffering it and
    // rescanning it on every read until the CPU limit stops the instance.
    let upstream = Upstream::start(Behaviour::Burst(vec!["x".repeat(3 << 20)])).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    let started = Instant::now();
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    // The line is the first thing the model sent, so the answer falls
    // back to the extractive one, saying why.
    let done = client::data(&events, "done");
    assert_eq!(done["generator"], "extractive", "{done}");
    assert!(done["fallback"].as_str().unwrap().contains("longer than 1048576 bytes"), "{done}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // The instance is fine: the next answer is served too.
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    assert!(client::names(&events).contains(&"sources".to_string()), "{:?}", client::names(&events));
}
