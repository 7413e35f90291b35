//! Sandbox limits and fairness: a component that loops forever or
//! allocates without bound is stopped, its stream ends with an `error`
//! event, and every other stream carries on at full speed.

mod common;

use common::client::{self, data, names, text};
use common::spindle::{Options, Spindle, derived_manifest};
use common::upstream::{Behaviour, Upstream};
use std::time::{Duration, Instant};

fn misbehaving() -> std::path::PathBuf {
    derived_manifest(
        "misbehaving",
        &[
            ("{ component = \"retriever-bm25\" }", "{ component = \"misbehaving-retriever\" }"),
            (
                "[component.retriever-bm25]\nsource = \"target/wasm32-wasip2/release/retriever_bm25.wasm\"",
                "[component.misbehaving-retriever]\nsource = \"target/wasm32-wasip2/release/misbehaving_retriever.wasm\"",
            ),
            ("-p retriever-bm25", "-p misbehaving-retriever"),
        ],
    )
}

fn options(upstream: &Upstream, manifest: std::path::PathBuf) -> Options {
    Options {
        manifest: Some(manifest),
        extra_args: ["--cpu-limit-ms", "1000", "--max-memory-mb", "64", "--max-instance-concurrent-reuse-count", "1"]
            .map(String::from)
            .to_vec(),
        ..Options::default().llm(&upstream.origin).var("retrieve_timeout_ms", "60000")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_loop_is_stopped_while_other_streams_flow_on_time() {
    let upstream = Upstream::start(Behaviour::tokens(40, 20, 50)).await;
    let spindle = Spindle::start(options(&upstream, misbehaving()));
    // The loop burns a core for a second; meanwhile a normal answer streams.
    let looping = tokio::spawn({
        let url = spindle.url("/api/chat/stream?query=spin-forever");
        async move {
            let started = Instant::now();
            let events = client::get(&url).await.events().await;
            (events, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut normal = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    let mut gaps = Vec::new();
    let mut last = None;
    let mut events = Vec::new();
    while let Some((e, at)) = normal.next_event().await {
        if e.name.is_none() {
            if let Some(prev) = last {
                gaps.push(at - prev);
            }
            last = Some(at);
        }
        events.push(e);
    }
    assert_eq!(names(&events).last().unwrap(), "done");
    assert_eq!(text(&events).split_whitespace().count(), 40);
    let worst = gaps.iter().max().unwrap();
    // The upstream sends a token every 50 ms; allow 100 ms of scheduling noise.
    assert!(*worst < Duration::from_millis(150), "a chunk waited {worst:?} behind the loop");

    let (events, took) = looping.await.unwrap();
    let n = names(&events);
    assert_eq!(n.last().map(String::as_str), Some("error"), "{n:?}");
    assert_eq!(data(&events, "error")["code"], "stream_aborted");
    assert!(took < Duration::from_secs(10), "the loop was stopped after {took:?}");
    // The host goes on serving.
    let after = client::get(&spindle.url("/api/chat/stream?query=after")).await.events().await;
    assert_eq!(names(&after).last().unwrap(), "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_steady_stream_longer_than_the_cpu_limit_is_not_cut() {
    // 2.5 s of tokens, one every 10 ms: the instance runs a little wasm at
    // nearly every epoch tick for longer than the 1 s CPU limit, but never
    // for long without pausing. A healthy answer must not be taken for a
    // runaway (a long LLM answer, or any instance under sustained load).
    let upstream = Upstream::start(Behaviour::tokens(250, 20, 10)).await;
    let spindle = Spindle::start(Options { manifest: None, ..options(&upstream, misbehaving()) });
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    let n = names(&events);
    assert_eq!(n.last().map(String::as_str), Some("done"), "{:?}", events.last());
    assert_eq!(text(&events).split_whitespace().count(), 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_allocation_hits_the_memory_limit() {
    let upstream = Upstream::start(Behaviour::tokens(3, 10, 10)).await;
    let spindle = Spindle::start(options(&upstream, misbehaving()));
    let events = client::get(&spindle.url("/api/chat/stream?query=allocate-forever")).await.events().await;
    assert_eq!(names(&events).last().map(String::as_str), Some("error"), "{:?}", names(&events));
    assert_eq!(data(&events, "error")["code"], "stream_aborted");
    let after = client::get(&spindle.url("/api/chat/stream?query=after")).await.events().await;
    assert_eq!(text(&after), "tok0 tok1 tok2 ");
    assert!(spindle.stderr.lock().unwrap().contains("instance ended with an error"));
}
