//! Swapping a step while the app serves: a reload (`POST /admin/reload`,
//! SIGHUP, `--watch`) switches new requests to the new app in one step,
//! open streams finish on the app they started on, a broken reload changes
//! nothing, and the replaced app's memory is returned.

mod common;

use common::client;
use common::spindle::{Options, Spindle, derived_manifest};
use common::upstream::{Behaviour, Upstream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const OPENAI: &str = r#""spindle:generator/generator@0.1.0" = { component = "generator-openai" }"#;
const EXTRACTIVE: &str = r#""spindle:generator/generator@0.1.0" = { component = "generator-extractive" }"#;

/// A manifest of our own to edit, as a team would edit `spin.toml`.
fn own_manifest(name: &str) -> PathBuf {
    derived_manifest(name, &[])
}

fn edit(manifest: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(manifest).unwrap();
    assert!(text.contains(from), "the manifest has no {from:?}");
    std::fs::write(manifest, text.replace(from, to)).unwrap();
}

async fn reload(spindle: &Spindle, key: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = http::Request::post(spindle.url("/admin/reload"));
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let res = client::send(req.body(client::Body::default()).unwrap()).await;
    (res.status, res.json().await)
}

async fn metric(spindle: &Spindle, line_start: &str) -> f64 {
    let res = reqwest_text(&spindle.url("/metrics")).await;
    res.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn reqwest_text(url: &str) -> String {
    let res = client::get(url).await;
    String::from_utf8_lossy(&collect(res).await).to_string()
}

async fn collect(mut s: client::Stream) -> Vec<u8> {
    while s.next_event().await.is_some() {}
    s.raw
}

/// One answer's facts: the app revision and generator it reported, its
/// text, and how it ended.
#[derive(Debug)]
struct Answer {
    status: u16,
    revision: String,
    generator: String,
    text: String,
    ended: String,
    /// When its `meta` arrived.
    meta_at: Instant,
}

async fn ask(spindle: &Spindle, query: &str) -> Answer {
    ask_counting(spindle, query, None).await
}

/// Asks; `metas`, when given, counts the answers whose `meta` has come.
async fn ask_counting(spindle: &Spindle, query: &str, metas: Option<Arc<AtomicUsize>>) -> Answer {
    let url = spindle.url(&format!("/api/chat/stream?query={query}"));
    let mut s = client::get(&url).await;
    let status = s.status;
    let (meta, meta_at) = s.next_event_within(Duration::from_secs(60)).await.expect("a first event");
    if let Some(metas) = metas {
        metas.fetch_add(1, Ordering::SeqCst);
    }
    assert_eq!(meta.name.as_deref(), Some("meta"), "{}", meta.data);
    let meta: serde_json::Value = serde_json::from_str(&meta.data).unwrap();
    let mut events = Vec::new();
    while let Some((e, _)) = s.next_event_within(Duration::from_secs(60)).await {
        events.push(e);
    }
    Answer {
        status,
        revision: meta["revision"].as_str().unwrap_or_default().to_string(),
        generator: meta["generator"].as_str().unwrap_or_default().to_string(),
        text: client::text(&events),
        ended: client::names(&events).last().cloned().unwrap_or_default(),
        meta_at,
    }
}

/// The process's RSS at its lowest over 3 s: one sample can catch a
/// passing allocation (a metrics scrape, a connection closing).
async fn rss_mb(spindle: &Spindle) -> f64 {
    let mut low = f64::MAX;
    for _ in 0..10 {
        low = low.min(spindle.rss_bytes() as f64 / (1 << 20) as f64);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    low
}

/// Waits until only the serving app is loaded and its idle instances are
/// gone (they expire after 5 s without requests).
async fn settle(spindle: &Spindle) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(spindle, "spindle_apps_loaded ").await != 1.0 {
        assert!(Instant::now() < deadline, "the replaced app was never released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while metric(spindle, "spindle_instances ").await != 0.0 {
        assert!(Instant::now() < deadline, "idle instances were never dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The host hands freed heap back a second after the last instance goes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

async fn wave(spindle: &Arc<Spindle>, n: usize, tag: &str) -> Vec<tokio::task::JoinHandle<Answer>> {
    counted_wave(spindle, n, tag, Arc::default()).await
}

async fn counted_wave(
    spindle: &Arc<Spindle>,
    n: usize,
    tag: &str,
    metas: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Answer>> {
    (0..n)
        .map(|i| {
            let (spindle, metas) = (spindle.clone(), metas.clone());
            let query = format!("how+do+I+install+a+package+{tag}{i}");
            tokio::spawn(async move { ask_counting(&spindle, &query, Some(metas)).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_swapped_under_500_streams_fails_no_request() {
    // 3 s answers: 30 tokens, 100 ms apart.
    let upstream = Upstream::start(Behaviour::tokens(30, 100, 100)).await;
    let manifest = own_manifest("swap");
    let spindle = Arc::new(Spindle::start(Options {
        manifest: Some(manifest.clone()),
        ..Options::default().llm(&upstream.origin).var("cache_ttl_secs", "0")
    }));
    // Warm up to the load's high-water mark, so the memory after the swap
    // compares with a process that has served the same load.
    for a in futures::future::join_all(wave(&spindle, 500, "warm").await).await {
        assert_eq!(a.unwrap().ended, "done");
    }
    settle(&spindle).await;
    let before_mb = rss_mb(&spindle).await;

    let metas = Arc::new(AtomicUsize::new(0));
    let old = counted_wave(&spindle, 250, "old", metas.clone()).await;
    // Once every old answer has begun, mid-way through them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metas.load(Ordering::SeqCst) < 250 {
        assert!(Instant::now() < deadline, "the old answers did not all begin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edit(&manifest, OPENAI, EXTRACTIVE);
    let asked = Instant::now();
    let (status, report) = reload(&spindle, None).await;
    let switched = Instant::now();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["changed"], true);
    let (old_rev, new_rev) = (report["previous"].as_str().unwrap(), report["revision"].as_str().unwrap());
    let new = wave(&spindle, 250, "new").await;

    let mut before_switch = 0;
    for a in futures::future::join_all(old).await {
        let a = a.unwrap();
        assert_eq!((a.status, a.ended.as_str()), (200, "done"), "{a:?}");
        if a.meta_at < asked {
            before_switch += 1;
            assert_eq!((a.revision.as_str(), a.generator.as_str()), (old_rev, "openai"), "{a:?}");
            assert!(
                a.text.starts_with("tok0 tok1") && a.text.contains("tok29"),
                "the old generator's whole answer: {a:?}"
            );
        }
    }
    assert_eq!(before_switch, 250, "every old stream had started before the reload");
    for a in futures::future::join_all(new).await {
        let a = a.unwrap();
        assert_eq!((a.status, a.ended.as_str()), (200, "done"), "{a:?}");
        assert!(a.meta_at > switched);
        assert_eq!((a.revision.as_str(), a.generator.as_str()), (new_rev, "extractive"), "{a:?}");
        assert!(!a.text.contains("tok0"), "{a:?}");
    }
    assert_eq!(metric(&spindle, "spindle_reloads_total{outcome=\"ok\"}").await, 1.0);

    settle(&spindle).await;
    let after_mb = rss_mb(&spindle).await;
    eprintln!("RSS: {before_mb:.0} MiB before the swap, {after_mb:.0} MiB after the old app drained");
    // Measured: +5% to +18% (two apps' instances at once leave the heap
    // more fragmented than one app's load). An old app kept alive would hold
    // its compiled code and its 250 instances' memories (about 130 KB
    // each): over 40% of this process.
    assert!(after_mb <= before_mb * 1.30, "the old app's memory was not returned: {before_mb:.0} → {after_mb:.0} MiB");
}

/// The broken manifests a reload must survive, each with the text of the
/// error it must report.
fn breakages(root: &str) -> Vec<(&'static str, String, String, &'static str)> {
    vec![
        ("not TOML", "[component.gateway]".into(), "[component.gateway".into(), "spin.toml"),
        ("an undefined step", OPENAI.into(), OPENAI.replace("generator-openai", "generator-missing"), "is not defined"),
        (
            "a file that is not wasm",
            r#"source = "PATH/target/wasm32-wasip2/release/gateway.wasm""#.replace("PATH", root),
            r#"source = "PATH/spin.toml""#.replace("PATH", root),
            "not a valid component",
        ),
        (
            "a step in the gateway's place",
            r#"source = "PATH/target/wasm32-wasip2/release/gateway.wasm""#.replace("PATH", root),
            r#"source = "PATH/target/wasm32-wasip2/release/retriever_bm25.wasm""#.replace("PATH", root),
            "has no import named",
        ),
        (
            "an unknown variable",
            r#"llm_model = "{{ llm_model }}""#.into(),
            r#"llm_model = "{{ no_such_variable }}""#.into(),
            "no_such_variable",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_some_broken_fail_no_request_and_grow_nothing() {
    let upstream = Upstream::start(Behaviour::tokens(10, 50, 50)).await;
    let manifest = own_manifest("twenty");
    let good = std::fs::read_to_string(&manifest).unwrap();
    let spindle = Arc::new(Spindle::start(Options {
        manifest: Some(manifest.clone()),
        ..Options::default().llm(&upstream.origin).var("cache_ttl_secs", "0")
    }));
    let root = common::spindle::repo_root().display().to_string();

    let breakages = breakages(&root);
    let mut revisions = std::collections::BTreeSet::new();
    let mut served = 0;
    // Settled memory after 4 reloads and after 20, each phase under load.
    let mut rss = Vec::new();
    for rounds in [0..4, 4..20] {
        let load = Load::start(&spindle, 60);
        for round in rounds {
            if round % 4 == 3 {
                let (what, from, to, says) = &breakages[(round / 4) % breakages.len()];
                std::fs::write(&manifest, good.replacen(from.as_str(), to, 1)).unwrap();
                let (status, body) = reload(&spindle, None).await;
                assert_eq!(status, 422, "{what}: {body}");
                assert_eq!(body["error"]["code"], "reload_failed");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains(says), "{what}: the error should say {says:?}: {message}");
                let ready = client::get(&spindle.url("/readyz")).await;
                assert_eq!(ready.status, 200, "{what}: still ready");
            } else {
                // Alternate the generator, so every good reload changes the app.
                let text = if round % 2 == 0 { good.replace(OPENAI, EXTRACTIVE) } else { good.clone() };
                std::fs::write(&manifest, text).unwrap();
                let (status, body) = reload(&spindle, None).await;
                assert_eq!(status, 200, "round {round}: {body}");
                revisions.insert(body["revision"].as_str().unwrap().to_string());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        served += load.stop().await;
        settle(&spindle).await;
        rss.push(rss_mb(&spindle).await);
    }
    assert!(served > 100, "the load ran: {served} answers");
    assert_eq!(revisions.len(), 2, "the two good manifests have one revision each: {revisions:?}");
    assert_eq!(metric(&spindle, "spindle_reloads_total{outcome=\"ok\"}").await, 15.0);
    assert_eq!(metric(&spindle, "spindle_reloads_total{outcome=\"failed\"}").await, 5.0);
    eprintln!(
        "RSS settled after 4 reloads under load: {:.0} MiB, after 20: {:.0} MiB ({served} answers)",
        rss[0], rss[1]
    );
    // Measured between reload 4 and 20: either +3% to +8% or about +18 MiB
    // (+28% to +30%), run to run; the second mode is not explained yet.
    // Keeping every replaced app (compiled code and instances) would add
    // 16 of them, several times this bound.
    assert!(rss[1] <= rss[0] * 1.40, "memory grew over the reloads: {rss:?}");
}

/// Clients asking one question after another until stopped; every answer
/// must be complete.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<String>>>,
    served: Arc<AtomicUsize>,
}

impl Load {
    fn start(spindle: &Arc<Spindle>, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|c| {
                let (spindle, stop, served) = (spindle.clone(), stop.clone(), served.clone());
                tokio::spawn(async move {
                    let mut failed = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let a = ask(&spindle, &format!("what+is+apt+{c}+{i}")).await;
                        if a.status != 200 || a.ended != "done" {
                            failed.push(format!("{a:?}"));
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    failed
                })
            })
            .collect();
        Load { stop, clients, served }
    }

    /// Stops the clients; panics if any answer failed. Returns how many
    /// were served.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut failed = Vec::new();
        for c in self.clients {
            failed.extend(c.await.unwrap());
        }
        let served = self.served.load(Ordering::Relaxed);
        assert!(
            failed.is_empty(),
            "{} of {served} requests failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(3)]
        );
        served
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_the_log_names_the_revision() {
    let manifest = own_manifest("hup");
    let logs = manifest.parent().unwrap().join("logs");
    let spindle = Spindle::start(Options {
        manifest: Some(manifest.clone()),
        extra_args: vec!["--log-dir".into(), logs.display().to_string()],
        ..Options::default()
    });
    let first = ask(&spindle, "what+is+apt").await;
    edit(&manifest, r#"llm_model = { default = "default" }"#, r#"llm_model = { default = "other" }"#);
    spindle.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        let a = ask(&spindle, "what+is+dpkg").await;
        if a.revision != first.revision {
            break a;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second.revision.len(), 12);
    // queries.jsonl names the app that answered each question.
    // A question asked once, after the reload.
    let third = ask(&spindle, "what+is+aptitude").await;
    assert_eq!(third.revision, second.revision);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(logs.join("queries.jsonl")).unwrap_or_default();
        let revision_of = |query: &str| {
            log.lines()
                .rev()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|v| v["query"] == query)
                .map(|v| v["revision"].as_str().unwrap().to_string())
        };
        if let (Some(a), Some(b)) = (revision_of("what is apt"), revision_of("what is aptitude")) {
            assert_eq!((a, b), (first.revision.clone(), second.revision.clone()));
            break;
        }
        assert!(Instant::now() < deadline, "queries.jsonl lacks the answers: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_route_needs_a_key_when_keys_are_configured() {
    let spindle = Spindle::start(Options { extra_args: vec!["--api-key".into(), "k1".into()], ..Options::default() });
    let (status, body) = reload(&spindle, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = reload(&spindle, Some("k1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], false, "nothing changed on disk: {body}");
    // GET is not a reload: the request goes to the app, which has no such
    // route.
    let with_key = |method: http::Method, path: &str, headers: &[(&str, &str)]| {
        let mut req =
            http::Request::builder().method(method).uri(spindle.url(path)).header("authorization", "Bearer k1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        client::send(req.body(client::Body::default()).unwrap())
    };
    assert_eq!(with_key(http::Method::GET, "/admin/reload", &[]).await.status, 404);
    // A web page cannot make a local browser reload it.
    let from_page = with_key(http::Method::POST, "/admin/reload", &[("origin", "https://evil.example")]).await;
    assert_eq!(from_page.status, 403);
    let metrics = with_key(http::Method::GET, "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&collect(metrics).await).to_string();
    assert!(text.contains("spindle_reloads_total{outcome=\"ok\"} 1\n"), "one reload only:\n{text}");
}

/// The machine's own non-loopback address, if it has one.
fn own_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.255.255.255:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_machine_itself_may_reload() {
    let Some(ip) = own_address() else {
        eprintln!("SKIP: this machine has no non-loopback address to call from");
        return;
    };
    let spindle =
        Spindle::start(Options { extra_args: vec!["--listen".into(), "0.0.0.0:0".into()], ..Options::default() });
    let port = spindle.base.rsplit(':').next().unwrap();
    let remote = client::send(
        http::Request::post(format!("http://{ip}:{port}/admin/reload")).body(client::Body::default()).unwrap(),
    )
    .await;
    assert_eq!(remote.status, 403);
    let local = client::send(
        http::Request::post(format!("http://127.0.0.1:{port}/admin/reload")).body(client::Body::default()).unwrap(),
    )
    .await;
    assert_eq!(local.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rebuilds_what_changed_and_reloads() {
    let manifest = own_manifest("watch");
    let dir = manifest.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    let builds = dir.join("builds.log");
    // The gateway's build becomes a command that records its runs, and
    // watches the notes folder.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let start = text.find("[component.gateway.build]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let build = format!(
        "[component.gateway.build]\nworkdir = \"{}\"\ncommand = \"echo built >> builds.log\"\nwatch = [\"notes/*.md\"]",
        dir.display()
    );
    std::fs::write(&manifest, format!("{}{build}{}", &text[..start], &text[end..])).unwrap();
    let spindle = Spindle::start(Options {
        manifest: Some(manifest.clone()),
        extra_args: vec!["--watch".into()],
        ..Options::default()
    });
    let runs = || std::fs::read_to_string(&builds).unwrap_or_default().lines().count();
    assert_eq!(runs(), 1, "--watch builds first");
    let first = ask(&spindle, "what+is+apt").await;

    // A watched file: rebuilt and reloaded (same app, so same revision).
    std::fs::write(dir.join("notes/a.md"), "hello").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&spindle, "spindle_reloads_total{outcome=\"ok\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "a watched file's change did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runs(), 2, "the change ran the build once");
    // An unwatched file: nothing.
    std::fs::write(dir.join("notes/a.txt"), "hello").unwrap();
    // The manifest: reloaded without a build, as a new revision.
    edit(&manifest, OPENAI, EXTRACTIVE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = ask(&spindle, "what+is+dpkg").await;
        if a.revision != first.revision {
            break;
        }
        assert!(Instant::now() < deadline, "the manifest's change did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runs(), 2, "a manifest change needs no build");
    // A build that fails keeps the app serving.
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("echo built >> builds.log", "echo built >> builds.log; exit 3")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&spindle, "spindle_reloads_total{outcome=\"ok\"}").await < 3.0 {
        assert!(Instant::now() < deadline, "the manifest's change did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(dir.join("notes/b.md"), "hello").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&spindle, "spindle_reloads_total{outcome=\"failed\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "the failing build was not reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = ask(&spindle, "what+is+apt+again").await;
    assert_eq!(a.ended, "done", "still serving after a failed build");
}
