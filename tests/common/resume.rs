//! Reading, leaving and resuming answer streams by their event ids.

use super::client::{self, Body};
use spindle_wire::sse::Event;
use std::time::{Duration, Instant};

pub fn get(url: &str, last_event_id: Option<&str>) -> http::Request<Body> {
    let mut req = http::Request::get(url);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.body(Body::default()).unwrap()
}

/// Reads `url` until `texts` text events have arrived, then leaves.
pub async fn read_then_leave(url: &str, texts: usize) -> Vec<Event> {
    let mut s = client::send(get(url, None)).await;
    assert_eq!(s.status, 200);
    let mut got = Vec::new();
    while let Some((e, _)) = s.next_event().await {
        let is_text = e.name.is_none();
        got.push(e);
        if is_text && got.iter().filter(|e| e.name.is_none()).count() == texts {
            return got;
        }
    }
    panic!("the stream ended before {texts} text events: {got:?}");
}

/// Resumes from the last event of `seen` at `base`; the events, and when
/// the first arrived after asking.
pub async fn resume(base: &str, seen: &[Event]) -> (Vec<Event>, Duration) {
    let last = seen.last().and_then(|e| e.id.clone()).expect("every event has an id");
    let asked = Instant::now();
    let mut s = client::send(get(&format!("{base}/api/chat/stream"), Some(&last))).await;
    assert_eq!(s.status, 200, "resume from {last}");
    let mut got = Vec::new();
    let mut first = None;
    while let Some((e, at)) = s.next_event().await {
        first.get_or_insert(at - asked);
        got.push(e);
    }
    (got, first.unwrap_or_default())
}

/// The whole answer: meta, sources, every token, done; ids `<id>:1..n`.
pub fn assert_whole(events: &[Event], tokens: usize) {
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap_or("text")).collect();
    assert_eq!(names.first(), Some(&"meta"), "{names:?}");
    assert_eq!(names[1], "sources");
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "text").count(), tokens, "{names:?}");
    let request_id = client::data(events, "meta")["request_id"].as_str().unwrap().to_string();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.id.as_deref(), Some(format!("{request_id}:{}", n + 1).as_str()), "exactly once, in order");
    }
}
