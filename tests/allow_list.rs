//! The outbound allow-list holds for every spelling of an address: with a
//! wildcard rule (`http://*:PORT`), no other way of writing loopback, and
//! no name that resolves to it, reaches the model on 127.0.0.1; a rule
//! naming the host does.

mod common;

use common::client::{self, data};
use common::spindle::{Options, Spindle};
use common::upstream::{Behaviour, Upstream};

async fn answer(spindle: &Spindle) -> serde_json::Value {
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    data(&events, "done")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wildcard_reaches_loopback_by_no_spelling_and_an_exact_rule_does() {
    let upstream = Upstream::start(Behaviour::tokens(3, 10, 10)).await;
    let port = upstream.origin.rsplit(':').next().unwrap().to_string();
    let wildcard = format!("http://*:{port}");
    for host in [
        "127.0.0.1",
        "localhost",
        "localhost.",
        "2130706433",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "0",
        "[::ffff:127.0.0.1]",
    ] {
        let spindle = Spindle::start(
            Options::default().var("llm_url", format!("http://{host}:{port}/v1")).var("llm_origin", wildcard.as_str()),
        );
        let done = answer(&spindle).await;
        assert_eq!(done["generator"], "extractive", "{host}: {done}");
        let why = done["fallback"].as_str().unwrap_or_default();
        // `localhost.` does not resolve on every machine (then it fails
        // as a DNS error); where it does, it is refused like `localhost`,
        // which resolves through the hosts file.
        let refused = why.contains("Denied") || why.contains("Prohibited");
        assert!(refused || (host == "localhost." && why.contains("ConnectionRefused")), "{host}: {why}");
        assert!(upstream.log.lock().unwrap().requests.is_empty(), "{host} reached the upstream");
    }
    // The same upstream, named exactly, answers: the refusals above were
    // the allow-list, not a broken upstream.
    for rule in [upstream.origin.clone(), format!("http://localhost:{port}")] {
        let host = rule.trim_start_matches("http://").to_string();
        let spindle = Spindle::start(
            Options::default().var("llm_url", format!("http://{host}/v1")).var("llm_origin", rule.as_str()),
        );
        let done = answer(&spindle).await;
        assert_eq!(done["generator"], "openai", "{rule}: {done}");
    }
}
