//! The answer cache: the embedded in-memory store, and a real Redis
//! (`redis-server` started by the test) through a Spin runtime config file.

mod common;

use common::client::{self, data, text};
use common::redis::{free_port, runtime_config, start_redis};
use common::spindle::{Options, Spindle};
use common::upstream::{Behaviour, Upstream};
use std::time::{Duration, Instant};

async fn ask(spindle: &Spindle, q: &str) -> Vec<spindle_wire::sse::Event> {
    client::get(&spindle.url(&format!("/api/chat/stream?query={q}"))).await.events().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_question_is_replayed_from_the_cache() {
    let upstream = Upstream::start(Behaviour::tokens(5, 10, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    let first = ask(&spindle, "what+is+debian").await;
    assert_eq!(data(&first, "done")["cache"], "miss");
    let second = ask(&spindle, "What+is+Debian").await;
    let done = data(&second, "done");
    assert_eq!(done["cache"], "hit");
    assert_eq!(done["generator"], "openai");
    assert_eq!(text(&second), text(&first));
    assert_eq!(data(&second, "sources"), data(&first, "sources"));
    assert_eq!(client::names(&second).iter().filter(|n| *n == "text").count(), 5, "replayed as a stream");
    assert_eq!(upstream.log.lock().unwrap().requests.len(), 1, "the LLM was asked once");
    // Other questions, and questions with history, are not served from it.
    assert_eq!(data(&ask(&spindle, "what+is+apt").await, "done")["cache"], "miss");
    let with_history = client::post_json(
        &spindle.url("/api/chat/stream"),
        r#"{"query":"what is debian","history":[{"role":"user","content":"hi"}]}"#,
    )
    .await
    .events()
    .await;
    assert_eq!(data(&with_history, "done")["cache"], "off");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_keeps_answers_across_processes_and_its_absence_is_no_error() {
    let port = free_port();
    let redis = start_redis(port);
    let rc = runtime_config(port);
    let upstream = Upstream::start(Behaviour::tokens(4, 10, 10)).await;
    let opts = || Options {
        extra_args: vec!["--runtime-config-file".into(), rc.display().to_string()],
        ..Options::default().llm(&upstream.origin)
    };
    {
        let spindle = Spindle::start(opts());
        assert_eq!(data(&ask(&spindle, "what+is+debian").await, "done")["cache"], "miss");
    }
    // A new process has an empty memory: the hit comes from Redis.
    let spindle = Spindle::start(opts());
    let events = ask(&spindle, "what+is+debian").await;
    assert_eq!(data(&events, "done")["cache"], "hit");
    assert_eq!(text(&events), "tok0 tok1 tok2 tok3 ");
    assert_eq!(upstream.log.lock().unwrap().requests.len(), 1);
    // Redis goes away: answers go on, uncached, without delay.
    drop(redis);
    let started = Instant::now();
    let events = ask(&spindle, "what+is+apt").await;
    assert_eq!(data(&events, "done")["cache"], "unavailable");
    assert_eq!(text(&events), "tok0 tok1 tok2 tok3 ");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}
