//! What the host adds around every request: health and readiness, metrics,
//! CORS, API-key auth, access and query logs, graceful shutdown.

mod common;

use common::client;
use common::spindle::{Options, Spindle};
use common::upstream::{Behaviour, Upstream};
use std::time::Duration;

fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> http::Request<client::Body> {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(client::Body::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let upstream = Upstream::start(Behaviour::tokens(4, 10, 10)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    for path in ["/healthz", "/readyz"] {
        let s = client::get(&spindle.url(path)).await;
        assert_eq!(s.status, 200, "{path}");
    }
    client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    client::get(&spindle.url("/api/chat/stream")).await.json().await;
    // Metrics are recorded off the hot path: allow the writer a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = client::get(&spindle.url("/metrics")).await;
    assert_eq!(s.status, 200);
    assert!(s.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    s.events().await;
    let body = String::from_utf8(s.raw.clone()).unwrap();
    for needle in [
        r#"spindle_http_requests_total{component="gateway",status="200"} 1"#,
        r#"spindle_http_requests_total{component="gateway",status="400"} 1"#,
        "spindle_open_streams 0",
        "spindle_completion_tokens_total 4",
        r#"spindle_step_duration_seconds_count{step="retrieve"} 1"#,
        "spindle_time_to_first_event_seconds_count 2",
        r#"spindle_outbound_requests_total{outcome="ok"} 1"#,
        r#"spindle_answer_cache_total{outcome="miss"} 1"#,
        "spindle_log_records_dropped_total 0",
    ] {
        assert!(body.contains(needle), "missing {needle} in:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_configured_origins_only() {
    let spindle = Spindle::start(Options {
        extra_args: vec!["--cors-origin".into(), "https://app.example".into()],
        ..Default::default()
    });
    let preflight = |origin: &'static str| {
        request(
            "OPTIONS",
            &spindle.url("/api/chat/stream"),
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
        )
    };
    let ok = client::send(preflight("https://app.example")).await;
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(ok.header("access-control-allow-methods").unwrap().contains("POST"));
    let other = client::send(preflight("https://evil.example")).await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    let s =
        client::send(request("GET", &spindle.url("/api/chat/stream?query=apt"), &[("origin", "https://app.example")]))
            .await;
    assert_eq!(s.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(s.header("access-control-expose-headers").unwrap().contains("x-request-id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_required_when_configured() {
    let spindle =
        Spindle::start(Options { extra_args: vec!["--api-key".into(), "k1,k2".into()], ..Default::default() });
    let url = spindle.url("/api/chat/stream?query=apt");
    let s = client::send(request("GET", &url, &[])).await;
    assert_eq!(s.status, 401);
    assert_eq!(s.header("www-authenticate"), Some("Bearer"));
    assert_eq!(s.json().await["error"]["code"], "unauthorized");
    assert_eq!(client::send(request("GET", &url, &[("authorization", "Bearer k3")])).await.status, 401);
    assert_eq!(client::send(request("GET", &url, &[("authorization", "Bearer k2")])).await.status, 200);
    // The scheme is case-insensitive (RFC 9110).
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} k1");
        assert_eq!(client::send(request("GET", &url, &[("authorization", &auth)])).await.status, 200, "{scheme}");
    }
    assert_eq!(client::send(request("GET", &url, &[("authorization", "Basic k1")])).await.status, 401);
    assert_eq!(client::send(request("GET", &spindle.url("/metrics"), &[])).await.status, 401);
    assert_eq!(client::send(request("GET", &spindle.url("/healthz"), &[])).await.status, 200);
    // Probes that send HEAD are health checks too.
    assert_eq!(client::send(request("HEAD", &spindle.url("/healthz"), &[])).await.status, 200);
    assert_eq!(client::send(request("HEAD", &spindle.url("/readyz"), &[])).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_hardened_and_can_be_public_while_the_api_needs_a_key() {
    let keyed = |public: bool| {
        let mut args = vec!["--api-key".to_string(), "k1".to_string()];
        if public {
            args.push("--public-pages".into());
        }
        Spindle::start(Options { extra_args: args, ..Default::default() })
    };
    let closed = keyed(false);
    assert_eq!(client::send(request("GET", &closed.url("/"), &[])).await.status, 401);
    let open = keyed(true);
    for path in ["/", "/chat.js", "/docs", "/docs/init.js", "/openapi.json"] {
        let s = client::send(request("GET", &open.url(path), &[])).await;
        assert_eq!(s.status, 200, "{path}");
        let csp = s.header("content-security-policy").unwrap_or_default().to_string();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert_eq!(s.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    let api = open.url("/api/chat/stream?query=apt");
    assert_eq!(client::send(request("GET", &api, &[])).await.status, 401, "the API stays protected");
    assert_eq!(client::send(request("POST", &open.url("/"), &[])).await.status, 401, "only reading pages is open");
    assert_eq!(client::send(request("GET", &api, &[("authorization", "Bearer k1")])).await.status, 200);
}

/// Opens a raw connection and sends `bytes`; returns how long until the
/// server closed it (reading whatever it answered) and what it answered.
async fn held_open(spindle: &Spindle, bytes: &[u8]) -> (Duration, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = spindle.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes).await.unwrap();
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the connection was still open after 10 s: {}", String::from_utf8_lossy(&seen));
    (start.elapsed(), String::from_utf8_lossy(&seen).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_idle_and_oversized_request_heads_are_cut() {
    let spindle = Spindle::start(Options {
        extra_args: ["--header-read-timeout-secs", "1", "--max-header-kib", "16"].map(String::from).to_vec(),
        ..Default::default()
    });
    // Nothing at all, half a head (slowloris), and an idle keep-alive
    // connection after a complete request: each closed after about 1 s.
    for (what, bytes) in [
        ("silent", &b""[..]),
        ("half a head", &b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "[..]),
        ("idle keep-alive", &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
    ] {
        let (took, answer) = held_open(&spindle, bytes).await;
        assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "{what}: closed after {took:?}");
        if what == "idle keep-alive" {
            assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer}");
        }
    }
    // A head over the limit is refused with 431, not copied into wasm.
    let big = format!("GET /api/chat/stream?query=a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let (_, answer) = held_open(&spindle, big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A head within the limit is served.
    let fine =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: {}\r\n\r\n", "a".repeat(8 * 1024));
    let (_, answer) = held_open(&spindle, fine.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_random_and_never_shared_by_open_requests() {
    let upstream = Upstream::start(Behaviour::tokens(10, 300, 20)).await;
    let spindle = Spindle::start(Options::default().llm(&upstream.origin));
    let url = spindle.url("/api/chat/stream?query=what+is+debian");
    // Generated ids are UUIDs (random: nothing to guess from one another).
    let a = client::send(request("GET", &url, &[])).await;
    let id = a.header("x-request-id").unwrap().to_string();
    assert!(uuid_like(&id), "{id}");
    // Two open requests bringing the same id: the second gets its own, so
    // neither's calls can be cancelled by the other leaving.
    let mut first = client::send(request("GET", &url, &[("x-request-id", "same")])).await;
    let mut second = client::send(request("GET", &url, &[("x-request-id", "same")])).await;
    assert_eq!(first.header("x-request-id"), Some("same"));
    let other = second.header("x-request-id").unwrap().to_string();
    assert!(uuid_like(&other), "{other}");
    drop(a);
    let (first, second) = tokio::join!(first.events(), second.events());
    for events in [&first, &second] {
        assert_eq!(client::data(events, "done")["generator"], "openai");
    }
    assert_eq!(client::data(&second, "meta")["request_id"], other.as_str());
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36
        && id.chars().filter(|c| *c == '-').count() == 4
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread")]
async fn access_and_query_logs_are_json_lines() {
    let dir = std::env::temp_dir().join(format!("spindle-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spindle = Spindle::start(Options {
        extra_args: vec!["--log-dir".into(), dir.display().to_string()],
        ..Default::default()
    });
    let mut s = client::send(request(
        "GET",
        &spindle.url("/api/chat/stream?query=what+is+debian"),
        &[("x-request-id", "my-req-1")],
    ))
    .await;
    assert_eq!(s.header("x-request-id"), Some("my-req-1"));
    let events = s.events().await;
    assert_eq!(client::data(&events, "meta")["request_id"], "my-req-1");
    client::post_json(&spindle.url("/api/chat/stream"), r#"{"query":"如何安装软件包"}"#).await.events().await;
    let openai = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"  how to upgrade  "}]}"#;
    client::post_json(&spindle.url("/v1/chat/completions"), openai).await.events().await;
    let whole = r#"{"model":"m","messages":[{"role":"user","content":"what is a mirror"}]}"#;
    let s = client::post_json(&spindle.url("/v1/chat/completions"), whole).await;
    assert!(s.header("x-spindle-end").is_none() && s.header("x-spindle-query").is_none(), "internal headers leaked");
    assert_eq!(s.json().await["object"], "chat.completion");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let access = std::fs::read_to_string(dir.join("access.jsonl")).unwrap();
    let queries = std::fs::read_to_string(dir.join("queries.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = queries.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{queries}");
    assert_eq!(lines[0]["id"], "my-req-1");
    assert_eq!(lines[0]["query"], "what is debian");
    assert_eq!(lines[0]["outcome"], "done");
    assert!(lines[0]["timings_ms"]["retrieve"].is_number());
    assert_eq!(lines[1]["query"], "如何安装软件包");
    // OpenAI streams are logged too, with the question the app validated.
    assert_eq!(lines[2]["route"], "/v1/chat/completions");
    assert_eq!(lines[2]["query"], "how to upgrade");
    assert_eq!(lines[2]["outcome"], "done");
    assert_eq!(lines[2]["generator"], "extractive");
    assert!(lines[2]["timings_ms"]["retrieve"].is_number(), "{}", lines[2]);
    // And whole (non-streaming) OpenAI answers.
    assert_eq!(lines[3]["query"], "what is a mirror");
    assert_eq!(lines[3]["outcome"], "done");
    assert!(lines[3]["timings_ms"]["total"].is_number(), "{}", lines[3]);
    let access: Vec<serde_json::Value> = access.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(access.len(), 4);
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["complete"], true);
    assert!(access[0]["time"].as_str().unwrap().ends_with('Z'));
}

/// Answers `n` questions, `clients` at a time, each to its end.
async fn answer_many(spindle: &Spindle, n: usize, clients: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let base = spindle.url("/api/chat/stream?query=");
        tasks.spawn(async move {
            for i in (c..n).step_by(clients) {
                let mut s = client::get(&format!("{base}what+is+debian+{}", i % 50)).await;
                assert_eq!(s.status, 200);
                let names = client::names(&s.events().await);
                assert_eq!(names.last().map(String::as_str), Some("done"), "{names:?}");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

/// Every step call the gateway makes (retrieve, rerank, prompt, generator
/// info) finishes without awaiting anything. wasmtime 48 kept the record of
/// such a call in the instance until the instance was dropped, about 2 KB
/// per request (see `spindle_step::step`); instances that serve thousands
/// of requests must not grow with them.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_does_not_grow_with_the_requests_it_serves() {
    let upstream = Upstream::start(Behaviour::tokens(2, 0, 0)).await;
    let spindle = Spindle::start(Options {
        extra_args: ["--max-instance-reuse-count", "1000000", "--log-dir", "none"].map(String::from).to_vec(),
        ..Options::default().llm(&upstream.origin).var("cache_ttl_secs", "0")
    });
    // Warm-up: instances, caches and allocator arenas reach their size.
    answer_many(&spindle, 1500, 8).await;
    let warm = spindle.rss_bytes();
    const MEASURED: u64 = 6000;
    answer_many(&spindle, MEASURED as usize, 8).await;
    let after = spindle.rss_bytes();
    let per_request = after.saturating_sub(warm) / MEASURED;
    eprintln!("RSS {} -> {} KB over {MEASURED} requests: {per_request} bytes per request", warm / 1024, after / 1024);
    assert!(
        per_request < 500,
        "RSS grew {} KB over {MEASURED} requests ({per_request} bytes per request): {} -> {} KB",
        after.saturating_sub(warm) / 1024,
        warm / 1024,
        after / 1024
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_then_ends_streams_with_an_error_event() {
    let upstream = Upstream::start(Behaviour::tokens(100, 10, 100)).await;
    let spindle = Spindle::start(Options {
        extra_args: vec!["--drain-timeout-secs".into(), "1".into()],
        ..Options::default().llm(&upstream.origin)
    });
    let mut s = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await;
    let (first, _) = s.next_event().await.unwrap();
    assert_eq!(first.name.as_deref(), Some("meta"));
    let started = std::time::Instant::now();
    spindle.signal("TERM");
    let events = s.events().await;
    let took = started.elapsed();
    let names = client::names(&events);
    assert_eq!(names.last().map(String::as_str), Some("error"), "{names:?}");
    assert_eq!(client::data(&events, "error")["code"], "server_shutdown");
    assert!(names.iter().filter(|n| *n == "text").count() >= 5, "the stream went on during the drain: {names:?}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
}

/// The pool reserves 4 GiB of address space per linear memory (no bounds
/// checks). Capped below that (here 20 TiB, against about 63 TiB), spindle
/// must still start, say why it reserves less, and answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_address_space_cap_costs_speed_not_service() {
    let spindle = Spindle::start(Options { address_space: Some(20 << 40), ..Default::default() });
    let events = client::get(&spindle.url("/api/chat/stream?query=what+is+debian")).await.events().await;
    assert_eq!(client::data(&events, "done")["finish_reason"], "stop");
    let log = spindle.stderr.lock().unwrap().clone();
    assert!(log.contains("cannot reserve 4 GiB of address space per linear memory"), "{log}");
}
