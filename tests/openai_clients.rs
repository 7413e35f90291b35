//! The OpenAI-compatible facade, driven by the real `openai` SDKs for
//! Python (PyPI) and JavaScript (npm), against a fake OpenAI upstream.

mod common;

use common::client;
use common::spindle::{Options, Spindle};
use common::upstream::{Behaviour, Upstream};

fn check(seen: &serde_json::Value, who: &str) {
    assert_eq!(seen["models"], serde_json::json!(["fake-model"]), "{who}: {seen}");
    assert_eq!(seen["stream_text"], "tok0 tok1 tok2 tok3 ", "{who}: {seen}");
    assert_eq!(seen["stream_finish"], "stop", "{who}");
    assert_eq!(seen["stream_usage"], 4, "{who}: usage from stream_options.include_usage");
    assert_eq!(seen["text"], "tok0 tok1 tok2 tok3 ", "{who}");
    for key in ["stream_sources", "sources"] {
        let sources = seen[key].as_array().unwrap_or_else(|| panic!("{who}: no {key}: {seen}"));
        assert_eq!(sources.len(), 5, "{who}");
        assert_eq!(sources[0]["n"], 1);
        assert!(sources.iter().any(|s| s["id"] == "en:apt-get"), "{who}: {key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_node_sdks_stream_answers_with_sources() {
    let upstream = Upstream::start(Behaviour::tokens(4, 10, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin).var("llm_model", "fake-model"));
    let base = spindle.url("/v1");
    let py = tokio::task::spawn_blocking({
        let base = base.clone();
        move || client::run_sdk_client("python3", "openai_client.py", &base)
    });
    let node = tokio::task::spawn_blocking(move || client::run_sdk_client("node", "openai_client.mjs", &base));
    check(&py.await.unwrap(), "python openai");
    check(&node.await.unwrap(), "npm openai");
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_errors_use_the_openai_shape() {
    let spindle = Spindle::start(Options::default());
    for (body, code) in [
        (r#"{"model":"x","messages":[]}"#, "missing_query"),
        (r#"{"model":"x","messages":[{"role":"tool","content":"x"}]}"#, "invalid_history"),
        (r#"{"model":"x"}"#, "invalid_json"),
    ] {
        let s = client::post_json(&spindle.url("/v1/chat/completions"), body).await;
        assert_eq!(s.status, 400, "{body}");
        let json = s.json().await;
        assert_eq!(json["error"]["code"], code, "{body}: {json}");
        assert_eq!(json["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_server_ends_raises_in_the_python_sdk() {
    // About 3 s of answer against a 1 s whole-request deadline: the host
    // ends the stream, and the SDK must raise, not end quietly.
    let upstream = Upstream::start(Behaviour::tokens(60, 10, 50)).await;
    let spindle = Spindle::start(Options {
        extra_args: ["--request-timeout-secs", "1"].map(String::from).to_vec(),
        ..Options::default().llm(&upstream.origin).var("llm_model", "fake-model")
    });
    let base = spindle.url("/v1");
    let seen = tokio::task::spawn_blocking(move || client::run_sdk_client("python3", "openai_stream_error.py", &base))
        .await
        .unwrap();
    assert_eq!(seen["raised"], "APIError", "{seen}");
    assert!(seen["message"].as_str().unwrap_or("").contains("deadline"), "{seen}");
    assert_eq!(seen["code"], "request_timeout", "{seen}");
    assert!(seen["text"].as_str().unwrap().starts_with("tok0 "), "{seen}");
}
