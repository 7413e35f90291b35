//! The foundation slice end to end: a real `spindle` serving the real
//! components, with a fake OpenAI upstream on loopback where an LLM is needed.

mod common;

use common::client::{self, data, names, text};
use common::spindle::{Options, Spindle};
use common::upstream::{Behaviour, End, HEAD_PADDING_MARKER, Upstream};
use std::time::Duration;

fn quote(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_default_streams_meta_sources_text_done() {
    let spindle = Spindle::start(Options::default());
    let mut s =
        client::get(&spindle.url(&format!("/api/chat/stream?query={}", quote("How do I install a package with apt?"))))
            .await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream; charset=utf-8"));
    assert_eq!(s.header("cache-control"), Some("no-cache"));
    assert_eq!(s.header("x-accel-buffering"), Some("no"));
    let id = s.header("x-request-id").expect("request id header").to_string();
    let events = s.events().await;
    let n = names(&events);
    assert_eq!(&n[..2], ["meta", "sources"], "{n:?}");
    assert_eq!(n.last().unwrap(), "done", "{n:?}");
    assert!(n[2..n.len() - 1].iter().all(|e| e == "text") && n.len() > 3, "{n:?}");
    assert_eq!(data(&events, "meta")["request_id"], id.as_str());
    let sources = data(&events, "sources");
    let ids: Vec<&str> = sources.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|id| id.starts_with("en:")), "{ids:?}");
    assert!(ids.contains(&"en:apt-get"), "apt section expected among {ids:?}");
    let done = data(&events, "done");
    assert_eq!(done["generator"], "extractive");
    assert!(text(&events).contains("[1]"), "answer cites its sources: {}", text(&events));
}

#[tokio::test(flavor = "multi_thread")]
async fn chinese_question_gets_chinese_sources() {
    let spindle = Spindle::start(Options::default());
    let mut s =
        client::get(&spindle.url(&format!("/api/chat/stream?query={}&top_k=3", quote("如何安装软件包？")))).await;
    let events = s.events().await;
    let sources = data(&events, "sources");
    let ids: Vec<&str> = sources.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id.starts_with("zh:")), "{ids:?}");
    assert!(text(&events).starts_with("（未使用语言模型"), "{}", text(&events));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_relayed_in_order_as_they_arrive() {
    let upstream = Upstream::start(Behaviour::tokens(20, 100, 100)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin).var("llm_model", "fake-model"));
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    assert_eq!(s.status, 200);
    let mut texts = Vec::new();
    let mut first_text_at = None;
    let mut all = Vec::new();
    while let Some((event, at)) = s.next_event().await {
        if event.name.is_none() {
            first_text_at.get_or_insert(at);
            texts.push(event.data.clone());
        }
        all.push(event);
    }
    let expected: Vec<String> = (0..20).map(|i| format!("tok{i} ")).collect();
    assert_eq!(texts, expected);
    let log = upstream.log.lock().unwrap();
    let first_sent = log.sent[0];
    let last_sent = *log.sent.last().unwrap();
    let first_text_at = first_text_at.unwrap();
    let lag = first_text_at.saturating_duration_since(first_sent);
    assert!(lag < Duration::from_millis(50), "first chunk reached the client {lag:?} after the upstream sent it");
    assert!(
        first_text_at + Duration::from_millis(1500) < last_sent,
        "first chunk must arrive long before the upstream finishes"
    );
    // The request carried the prompt and the options the upstream needs.
    let req = &log.requests[0];
    assert_eq!(req["stream"], true);
    assert_eq!(req["model"], "fake-model");
    let messages = req["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["content"], "what is debian");
    assert!(messages[0]["content"].as_str().unwrap().contains("[1]"), "system prompt carries numbered sources");
    assert_eq!(log.headers[0]["x-request-id"], s.header("x-request-id").unwrap());
    let done = data(&all, "done");
    assert_eq!(done["generator"], "openai");
    assert_eq!(done["model"], "fake-model");
    assert_eq!(done["usage"]["completion_tokens"], 20);
    assert_eq!(done["finish_reason"], "stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn post_json_with_history_and_top_k() {
    let upstream = Upstream::start(Behaviour::tokens(3, 10, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    let body = r#"{"query":"And how do I remove it?","top_k":2,"history":[{"role":"user","content":"How do I install a package?"},{"role":"assistant","content":"Use apt install."}]}"#;
    let mut s = client::post_json(&spindle.url("/api/chat/stream"), body).await;
    assert_eq!(s.status, 200);
    let events = s.events().await;
    assert_eq!(data(&events, "sources").as_array().unwrap().len(), 2);
    assert_eq!(text(&events), "tok0 tok1 tok2 ");
    let log = upstream.log.lock().unwrap();
    let roles: Vec<&str> =
        log.requests[0]["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_json_errors() {
    let spindle = Spindle::start(Options::default());
    let long = "a".repeat(2001);
    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        ("GET", "/api/chat/stream".into(), None, 400, "missing_query"),
        ("GET", "/api/chat/stream?query=%20%20".into(), None, 400, "missing_query"),
        ("GET", format!("/api/chat/stream?query={long}"), None, 400, "query_too_long"),
        ("GET", "/api/chat/stream?query=x&top_k=0".into(), None, 400, "invalid_top_k"),
        ("GET", "/api/chat/stream?query=x&top_k=21".into(), None, 400, "invalid_top_k"),
        ("GET", "/api/chat/stream?query=x&top_k=abc".into(), None, 400, "invalid_top_k"),
        ("POST", "/api/chat/stream".into(), Some("{not json"), 400, "invalid_json"),
        ("POST", "/api/chat/stream".into(), Some(r#"{"query":"x","top_k":99}"#), 400, "invalid_top_k"),
        ("POST", "/api/chat/stream".into(), Some(r#"{"query":"x","topk":3}"#), 400, "invalid_json"),
        ("POST", "/api/chat/stream".into(), Some(r#"{"top_k":3}"#), 400, "missing_query"),
        ("DELETE", "/api/chat/stream".into(), None, 405, "method_not_allowed"),
        ("GET", "/no/such/route".into(), None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let req = http::Request::builder()
            .method(method)
            .uri(spindle.url(&path))
            .header("content-type", "application/json")
            .body(client::Body::from(body.unwrap_or("").to_string()))
            .unwrap();
        let s = client::send(req).await;
        assert_eq!(s.status, status, "{method} {path}");
        assert_eq!(s.header("content-type"), Some("application/json"), "{method} {path}");
        let json = s.json().await;
        assert_eq!(json["error"]["code"], code, "{method} {path}: {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let big = format!(r#"{{"query":"{}"}}"#, "x".repeat(70 * 1024));
    let s = client::post_json(&spindle.url("/api/chat/stream"), &big).await;
    assert_eq!(s.status, 413);
    assert_eq!(s.json().await["error"]["code"], "body_too_large");
}

/// Runs one question against an upstream behaving as given.
async fn ask_with(behaviour: Behaviour, extra: &[(&str, &str)]) -> (Vec<spindle_wire::sse::Event>, Upstream) {
    let upstream = Upstream::start(behaviour).await;
    let mut opts = Options::default().llm(&upstream.origin);
    for (k, v) in extra {
        opts = opts.var(k, *v);
    }
    let spindle = Spindle::start(opts);
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    assert_eq!(s.status, 200);
    let events = s.events().await;
    (events, upstream)
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_before_the_first_token_fall_back_to_extractive() {
    for (behaviour, extra, expect) in [
        (Behaviour::Status(500, "model overloaded".into()), vec![], "HTTP 500: model overloaded"),
        (Behaviour::tokens(0, 0, 0).ending(End::Malformed), vec![], "malformed"),
        (Behaviour::tokens(0, 0, 0).ending(End::ErrorEvent("bad prompt".into())), vec![], "bad prompt"),
        (Behaviour::Hang, vec![("llm_timeout_ms", "500")], "within 500 ms"),
    ] {
        let (events, _up) = ask_with(behaviour.clone(), &extra).await;
        let n = names(&events);
        assert_eq!(n.last().unwrap(), "done", "{behaviour:?}: {n:?}");
        let done = data(&events, "done");
        assert_eq!(done["generator"], "extractive", "{behaviour:?}");
        assert!(done["fallback"].as_str().unwrap().contains(expect), "{behaviour:?}: {done}");
        assert!(text(&events).starts_with("(No language model"), "{behaviour:?}");
        // The fallback quotes the retrieved passages.
        assert!(text(&events).contains("[1]"), "{behaviour:?}: {}", text(&events));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_response_head_past_8_kib_is_refused_and_falls_back() {
    let upstream = Upstream::start(Behaviour::tokens(3, 10, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    let ask = |padding: usize| {
        let url = spindle.url(&format!("/api/chat/stream?query=what+is+debian+{HEAD_PADDING_MARKER}{padding}"));
        async move { client::get(&url).await.events().await }
    };
    // Within the outbound read buffer: the model's answer.
    let events = ask(6000).await;
    assert_eq!(data(&events, "done")["generator"], "openai", "{:?}", names(&events));
    assert_eq!(text(&events), "tok0 tok1 tok2 ");
    // Past it: a clear fallback, not a hang or a silently grown buffer.
    let events = ask(9000).await;
    let done = data(&events, "done");
    assert_eq!(done["generator"], "extractive", "{done}");
    assert!(done["fallback"].as_str().is_some_and(|f| !f.is_empty()), "{done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_falls_back() {
    let origin = Upstream::refused_origin().await;
    let spindle = Spindle::start(Options::default().llm(&origin));
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    let done = data(&events, "done");
    assert_eq!(done["generator"], "extractive");
    assert!(done["fallback"].as_str().unwrap().contains("cannot reach"), "{done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_after_the_first_token_end_with_an_error_event() {
    for (end, extra, code, expect) in [
        (End::ErrorEvent("GPU fell over".into()), vec![], "upstream_unavailable", "GPU fell over"),
        (End::Malformed, vec![], "upstream_error", "malformed"),
        (End::Drop, vec![], "upstream_unavailable", "ended before [DONE]"),
        (End::Stall, vec![("llm_idle_timeout_ms", "500")], "upstream_timeout", "nothing for 500 ms"),
    ] {
        let (events, _up) = ask_with(Behaviour::tokens(3, 10, 10).ending(end.clone()), &extra).await;
        let n = names(&events);
        assert_eq!(n.last().unwrap(), "error", "{end:?}: {n:?}");
        assert!(!n.contains(&"done".to_string()), "{end:?}: {n:?}");
        assert_eq!(text(&events), "tok0 tok1 tok2 ", "{end:?}");
        let err = data(&events, "error");
        assert_eq!(err["code"], code, "{end:?}: {err}");
        assert!(err["message"].as_str().unwrap().contains(expect), "{end:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_outside_the_allow_list_are_refused() {
    let upstream = Upstream::start(Behaviour::tokens(3, 10, 10)).await;
    // llm_url points at the upstream, but llm_origin (the allow-list) does not.
    let spindle = Spindle::start(
        Options::default().var("llm_url", format!("{}/v1", upstream.origin)).var("llm_origin", "http://127.0.0.1:1"),
    );
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    let done = data(&events, "done");
    assert_eq!(done["generator"], "extractive");
    assert!(done["fallback"].as_str().unwrap().contains("HttpRequestDenied"), "{done}");
    assert!(upstream.log.lock().unwrap().requests.is_empty(), "the upstream must never see the request");
}

#[test]
fn manifest_errors_name_the_file_and_key() {
    let dir = std::env::temp_dir().join(format!("spindle-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spin.toml");
    let text = std::fs::read_to_string(common::spindle::repo_root().join("spin.toml")).unwrap();
    std::fs::write(&path, text.replace("allowed_outbound_hosts =", "allowed_outbound_host =")).unwrap();
    let out = std::process::Command::new(common::spindle::spindle_bin())
        .args(["check", "--manifest"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spin.toml") && err.contains("allowed_outbound_host"), "{err}");
}
