//! The chat page in a real browser: headless Chromium driven by
//! playwright-core. The screenshot is kept in `test-output/chat-page.png`.

mod common;

use common::spindle::{Options, Spindle, derived_manifest, repo_root};
use common::upstream::{Behaviour, Upstream};
use spindle_testkit::scripted::{Reply, Scripted};

#[tokio::test(flavor = "multi_thread")]
async fn chat_page_streams_shows_sources_and_stops() {
    let upstream = Upstream::start(Behaviour::tokens(30, 50, 60)).await;
    // API keys configured, page public: the page must ask for the key.
    let spindle = Spindle::start(Options {
        extra_args: ["--api-key", "page-key", "--public-pages"].map(String::from).to_vec(),
        ..Options::default().llm(&upstream.origin)
    });
    let out = repo_root().join("test-output");
    std::fs::create_dir_all(&out).unwrap();
    let base = spindle.base.clone();
    let dir = repo_root().join("tests/clients");
    let output = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            std::process::Command::new("node")
                .arg(dir.join("chat_page.mjs"))
                .arg(&base)
                .arg(&out)
                .arg("page-key")
                .current_dir(&dir)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["askedForKey"], true, "a refused request shows the key field and why: {seen}");
    assert_eq!(seen["policyErrors"], serde_json::json!([]), "the page's own security policy blocked it: {seen}");
    assert!(seen["growth"].as_u64().unwrap() >= 4, "the answer should grow in steps as tokens arrive: {seen}");
    assert_eq!(seen["answer"], (0..30).map(|i| format!("tok{i} ")).collect::<String>());
    let sources = seen["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 5, "{seen}");
    assert!(sources[0]["href"].as_str().unwrap().starts_with("https://www.debian.org/doc/manuals/debian-faq/"));
    assert_eq!(seen["grewAfterStop"], false, "the answer kept growing after Stop: {seen}");
    assert_eq!(seen["sendEnabled"], true);
    assert!(seen["error"].as_str().unwrap().contains("query_too_long"), "{seen}");
    assert!(out.join("chat-page.png").exists());
    // Stop closed the stream: the model was told to stop too.
    let log = upstream.log.lock().unwrap();
    assert!(log.disconnected.is_some(), "stopping in the page must drop the upstream request");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chat_page_resumes_a_dropped_answer() {
    let redis = common::redis::free_port();
    let _redis = common::redis::start_redis(redis);
    let upstream = Upstream::start(Behaviour::tokens(12, 50, 20)).await;
    let spindle = Spindle::start(
        Options::default()
            .llm(&upstream.origin)
            .var("cache_ttl_secs", "0")
            .var("stream_journal_url", format!("redis://127.0.0.1:{redis}")),
    );
    let (base, dir) = (spindle.base.clone(), repo_root().join("tests/clients"));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(dir.join("chat_page_resume.mjs"))
            .arg(&base)
            .current_dir(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let requests = seen["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "one cut request, one resume: {seen}");
    let resumed_from = requests[1]["lastEventId"].as_str().unwrap_or_default();
    assert!(resumed_from.ends_with(":4"), "resumed after the 4 events it had: {seen}");
    assert_eq!(seen["answer"], (0..12).map(|i| format!("tok{i} ")).collect::<String>(), "every token once: {seen}");
    assert_eq!(seen["error"], "", "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_web_urls_of_sources_become_links() {
    // An index that holds hostile URLs: the page must not make them clickable.
    let urls = ["javascript:alert(document.cookie)", "https://ok.example/faq", "data:text/html,<script>1</script>"];
    let hits: Vec<serde_json::Value> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            serde_json::json!({"_id": format!("d{i}#0"), "_score": 10.0 - i as f64, "_source": {
                "text": format!("Passage {i} about installing packages with apt."), "title": format!("Title {i}"),
                "url": url, "doc_id": format!("d{i}")}})
        })
        .collect();
    let peer = Scripted::start().await;
    peer.on("POST", "/spindle/_search", Reply::json(serde_json::json!({"hits": {"hits": hits}})));
    let manifest = derived_manifest(
        "hostile-urls",
        &[(r#"{ component = "retriever-bm25" }"#, r#"{ component = "retriever-opensearch" }"#)],
    );
    let spindle = Spindle::start(Options {
        manifest: Some(manifest),
        ..Options::default().var("opensearch_url", peer.origin.as_str())
    });
    let base = spindle.base.clone();
    let dir = repo_root().join("tests/clients");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(dir.join("chat_page_links.mjs"))
            .arg(&base)
            .current_dir(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "browser run failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), 3, "{shown:?}");
    let links: Vec<&serde_json::Value> = shown.iter().filter(|s| s["tag"] == "a").collect();
    assert_eq!(links.len(), 1, "only the https URL is a link: {shown:?}");
    assert_eq!(links[0]["href"], "https://ok.example/faq");
    assert!(shown.iter().all(|s| s["text"].as_str().unwrap().starts_with("Title")), "{shown:?}");
}
