//! Resumable streams: every event of `/api/chat/stream` has an `id:`; with
//! a stream journal (Redis) configured, a client that drops mid-answer and
//! reconnects with `Last-Event-ID`, to the same replica or another, gets
//! every event exactly once and in order; if the replica producing the
//! answer dies, it gets what was journaled and then `origin_lost`; after
//! the journal's TTL, a clear 410.

mod common;

use common::client;
use common::redis::{free_port, start_redis};
use common::resume::{assert_whole, get, read_then_leave, resume};
use common::spindle::{Options, Spindle};
use spindle_testkit::upstream::{Behaviour, Upstream};
use std::time::{Duration, Instant};

fn replica(upstream: &str, redis: u16, ttl_secs: u64) -> Spindle {
    Spindle::start(
        Options::default()
            .llm(upstream)
            .var("cache_ttl_secs", "0")
            .var("stream_journal_url", format!("redis://127.0.0.1:{redis}"))
            .var("stream_journal_ttl_secs", ttl_secs.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_resumes_on_the_same_and_on_another_replica() {
    let redis = free_port();
    let _redis = start_redis(redis);
    let upstream = Upstream::start(Behaviour::tokens(20, 50, 100)).await;
    let a = replica(&upstream.origin, redis, 600);
    let b = replica(&upstream.origin, redis, 600);

    let mut firsts = Vec::new();
    for (n, to) in [&a, &b].into_iter().enumerate() {
        let mut seen = read_then_leave(&a.url(&format!("/api/chat/stream?query=resume+me+{n}")), 5).await;
        // Gone for a moment, while tokens keep coming.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (rest, first) = resume(&to.base, &seen).await;
        firsts.push(first);
        seen.extend(rest);
        assert_whole(&seen, 20);
    }
    eprintln!("first missed event after reconnecting: same replica {:?}, other replica {:?}", firsts[0], firsts[1]);

    // Resuming a finished answer replays its end.
    let whole = client::send(get(&a.url("/api/chat/stream?query=finished"), None)).await.events().await;
    assert_whole(&whole, 20);
    let (rest, _) = resume(&b.base, &whole[..3]).await;
    assert_eq!(rest.len(), whole.len() - 3);
    assert_eq!(rest.last(), whole.last());
    // From its last event: 204, which tells an EventSource to stop.
    let s = client::send(get(&b.url("/api/chat/stream"), whole.last().unwrap().id.as_deref())).await;
    assert_eq!(s.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_replica_died_ends_with_origin_lost() {
    let redis = free_port();
    let _redis = start_redis(redis);
    // 60 tokens 100 ms apart: still going when its replica is killed.
    let upstream = Upstream::start(Behaviour::tokens(60, 50, 100)).await;
    let a = replica(&upstream.origin, redis, 600);
    let b = replica(&upstream.origin, redis, 600);
    let seen = read_then_leave(&a.url("/api/chat/stream?query=doomed"), 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.signal("KILL");
    let started = Instant::now();
    let (rest, _) = resume(&b.base, &seen).await;
    let took = started.elapsed();
    let last = rest.last().expect("events after the kill");
    assert_eq!(last.name.as_deref(), Some("error"), "{rest:?}");
    let error: serde_json::Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(error["code"], "origin_lost", "{error}");
    assert!(rest.iter().filter(|e| e.name.is_none()).count() >= 2, "what was journaled before the kill: {rest:?}");
    // The replica's lease lapses within 3 s: no hang.
    assert!(took < Duration::from_secs(6), "origin_lost after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_needs_a_journal_and_a_valid_unexpired_id() {
    let redis = free_port();
    let _redis = start_redis(redis);
    let upstream = Upstream::start(Behaviour::tokens(3, 10, 10)).await;
    let a = replica(&upstream.origin, redis, 1);
    let whole = client::send(get(&a.url("/api/chat/stream?query=short"), None)).await.events().await;
    assert_whole(&whole, 3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let last = whole[1].id.clone().unwrap();
    let s = client::send(get(&a.url("/api/chat/stream"), Some(&last))).await;
    assert_eq!(s.status, 410);
    assert_eq!(s.json().await["error"]["code"], "stream_expired");
    let s = client::send(get(&a.url("/api/chat/stream"), Some("no-number"))).await;
    assert_eq!(s.status, 400);
    assert_eq!(s.json().await["error"]["code"], "invalid_last_event_id");

    // Without a journal, events still have ids, and resuming is refused.
    let plain = Spindle::start(Options::default().llm(&upstream.origin).var("cache_ttl_secs", "0"));
    let events = client::send(get(&plain.url("/api/chat/stream?query=plain"), None)).await.events().await;
    assert_whole(&events, 3);
    let s = client::send(get(&plain.url("/api/chat/stream"), events[2].id.as_deref())).await;
    assert_eq!(s.status, 410);
    assert_eq!(s.json().await["error"]["code"], "stream_not_resumable");
}
