//! Several `spindle up` replicas behind a real load balancer (Debian's
//! HAProxy, health-checking `/readyz`) sharing one Redis: nothing but the
//! answer cache is shared, so a rolling restart under load fails no stream
//! and refuses no request, a replica killed outright ends its own streams
//! at once (the client can tell) and leaves the others' alone (its clients
//! resume through the balancer and are told the answer was lost), and an
//! answer cached through one replica is a hit through another.

mod common;

use bytes::Bytes;
use common::redis::{free_port, runtime_config, start_redis};
use common::spindle::{Options, Spindle};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use spindle_testkit::upstream::{Behaviour, Upstream};
use spindle_wire::sse::Decoder;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;
/// Concurrent clients, each asking one question after another.
const CLIENTS: usize = 300;

struct Haproxy {
    child: Child,
    port: u16,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in front of `backends` (loopback ports): a server is taken out
/// after one failed `/readyz` check (every 200 ms) and back after one good
/// one; a request whose connection fails is sent to another server.
fn start_haproxy(backends: &[u16]) -> Option<Haproxy> {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("SKIP: haproxy is not installed (apt-get install haproxy; scripts/test.sh installs it)");
        return None;
    }
    let port = free_port();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server r{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 1\n"))
        .collect();
    let config = format!(
        "global\n    maxconn 4000\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n    \
         retries 3\n    option redispatch 1\n    retry-on conn-failure empty-response\n    \
         option http-server-close\n\
         frontend web\n    bind 127.0.0.1:{port}\n    default_backend spindle\n\
         backend spindle\n    balance roundrobin\n    option httpchk GET /readyz\n    \
         http-check expect status 200\n    http-response set-header x-served-by %s\n{servers}"
    );
    let path = std::env::temp_dir().join(format!("spindle-haproxy-{}-{port}.cfg", std::process::id()));
    std::fs::write(&path, config).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Haproxy { child, port })
}

fn replica(port: u16, upstream: &str, redis: u16) -> Spindle {
    Spindle::start(Options {
        extra_args: vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--runtime-config-file".into(),
            runtime_config(redis).display().to_string(),
            "--log-dir".into(),
            "none".into(),
        ],
        ..Options::default()
            .llm(upstream)
            .var("heartbeat_ms", "1000")
            .var("stream_journal_url", format!("redis://127.0.0.1:{redis}"))
    })
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = common::client::try_get(&format!("http://127.0.0.1:{port}/readyz")).await.is_some_and(|s| s == 200);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "replica on {port} never turned ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How one stream ended.
#[derive(Debug, Clone)]
struct Ended {
    served_by: String,
    /// `done` arrived.
    complete: bool,
    /// Why not, if not.
    error: Option<String>,
    at: Instant,
    /// The id of the last event received.
    last_id: Option<String>,
}

/// One question through the balancer, read to its end.
async fn ask(client: &Client<HttpConnector, Empty<Bytes>>, url: &str) -> Ended {
    let fail = |served_by: String, e: String, last_id: Option<String>| Ended {
        served_by,
        complete: false,
        error: Some(e),
        at: Instant::now(),
        last_id,
    };
    let req = http::Request::get(url).body(Empty::new()).unwrap();
    let res = match client.request(req).await {
        Ok(r) => r,
        Err(e) => return fail(String::new(), format!("request: {e}"), None),
    };
    let served_by = res.headers().get("x-served-by").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if res.status() != 200 {
        return fail(served_by, format!("status {}", res.status()), None);
    }
    let mut body = res.into_body();
    let mut decoder = Decoder::default();
    let mut last_id = None;
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(30), body.frame()).await {
            Err(_) => return fail(served_by, "stalled 30 s".into(), last_id),
            Ok(None) => return fail(served_by, "ended without done".into(), last_id),
            Ok(Some(Err(e))) => return fail(served_by, format!("body: {e}"), last_id),
            Ok(Some(Ok(f))) => f,
        };
        let Some(data) = frame.data_ref() else { continue };
        for e in decoder.feed(data).unwrap_or_default() {
            last_id = e.id.clone().or(last_id);
            match e.name.as_deref() {
                Some("done") => {
                    return Ended { served_by, complete: true, error: None, at: Instant::now(), last_id };
                }
                Some("error") => return fail(served_by, e.data, last_id),
                _ => {}
            }
        }
    }
}

/// `CLIENTS` clients asking distinct questions (cache misses) through the
/// balancer until `stop`; every stream's end.
fn load(port: u16, stop: Arc<AtomicBool>) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Mutex<Vec<Ended>>>) {
    let ended = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::new(AtomicUsize::new(0));
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let tasks = (0..CLIENTS)
        .map(|_| {
            let (client, stop, ended, n) = (client.clone(), stop.clone(), ended.clone(), n.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let q = n.fetch_add(1, Ordering::Relaxed);
                    let url = format!("http://127.0.0.1:{port}/api/chat/stream?query=how+do+I+install+package+{q}");
                    let e = ask(&client, &url).await;
                    ended.lock().unwrap().push(e);
                }
            })
        })
        .collect();
    (tasks, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_behind_haproxy_restart_one_by_one_under_load_without_a_failed_stream() {
    let redis_port = free_port();
    let _redis = start_redis(redis_port);
    // Answers of 30 tokens 100 ms apart: about 3 s each.
    let upstream = Upstream::start(Behaviour::tokens(30, 50, 100)).await;
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let mut replicas: Vec<Spindle> = ports.iter().map(|&p| replica(p, &upstream.origin, redis_port)).collect();
    let Some(lb) = start_haproxy(&ports) else { return };
    for &p in &ports {
        wait_ready(p).await;
    }

    // An answer cached through one replica is a hit through another.
    let q = "/api/chat/stream?query=what+is+a+shared+cache";
    let first = common::client::get(&format!("http://127.0.0.1:{}{q}", ports[0])).await.events().await;
    assert_eq!(common::client::data(&first, "done")["cache"], "miss");
    let again = common::client::get(&format!("http://127.0.0.1:{}{q}", ports[1])).await.events().await;
    assert_eq!(common::client::data(&again, "done")["cache"], "hit", "the cache is shared through Redis");
    assert_eq!(common::client::text(&again), common::client::text(&first));

    // Rolling restart: each replica in turn is told to stop, drains, and
    // a new one takes its port once the old has exited.
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, ended) = load(lb.port, stop.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started = Instant::now();
    for (i, &port) in ports.iter().enumerate() {
        replicas[i].signal("TERM");
        // Blocking waits, off the clients' async workers.
        let drained = tokio::task::block_in_place(|| replicas[i].wait_exit(Duration::from_secs(40)));
        assert!(drained.is_some_and(|s| s.success()), "replica {i} did not drain and exit cleanly: {drained:?}");
        replicas[i] = tokio::task::block_in_place(|| replica(port, &upstream.origin, redis_port));
        wait_ready(port).await;
        // One health check interval for the balancer to see it.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let restart = started.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let all = ended.lock().unwrap().clone();
    let failed: Vec<&Ended> = all.iter().filter(|e| !e.complete).collect();
    eprintln!(
        "rolling restart of {REPLICAS} replicas in {:.1} s under {CLIENTS} clients: {} streams, {} failed",
        restart.as_secs_f64(),
        all.len(),
        failed.len()
    );
    assert!(all.len() >= 2 * CLIENTS, "the load ran: {} streams", all.len());
    assert!(
        failed.is_empty(),
        "{} of {} streams failed, e.g. {:?}",
        failed.len(),
        all.len(),
        &failed[..failed.len().min(3)]
    );
    for i in 0..REPLICAS {
        assert!(all.iter().any(|e| e.served_by == format!("r{i}")), "replica r{i} served streams");
    }

    // kill -9: that replica's open streams end at once, in a way the client
    // sees (no `done`), and the others' finish.
    let stop = Arc::new(AtomicBool::new(false));
    let (tasks, ended) = load(lb.port, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    replicas[0].signal("KILL");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let all = ended.lock().unwrap().clone();
    let cut: Vec<&Ended> = all.iter().filter(|e| !e.complete).collect();
    assert!(!cut.is_empty(), "the killed replica had open streams");
    for e in &cut {
        assert_eq!(e.served_by, "r0", "only the killed replica's streams fail: {e:?}");
        assert!(e.error.is_some(), "a cut stream says why: {e:?}");
        let after = e.at.saturating_duration_since(killed_at);
        assert!(after < Duration::from_secs(1), "a cut stream ended {after:?} after the kill: {e:?}");
    }
    let others = all.iter().filter(|e| e.served_by != "r0").count();
    assert!(others > CLIENTS, "the other replicas kept serving: {others}");
    // The cut clients reconnect through the balancer with their last id:
    // they get what the dead replica journaled, then `origin_lost`.
    let resumed_at = Instant::now();
    // (A stream cut before its first event has nothing to resume: its
    // client asks again.)
    let resumable: Vec<&&Ended> = cut.iter().filter(|e| e.last_id.is_some()).take(20).collect();
    assert!(!resumable.is_empty(), "cut streams had events");
    for e in &resumable {
        let id = e.last_id.clone().unwrap();
        let req = http::Request::get(format!("http://127.0.0.1:{}/api/chat/stream", lb.port))
            .header("last-event-id", &id)
            .body(common::client::Body::default())
            .unwrap();
        let events = tokio::time::timeout(Duration::from_secs(10), common::client::send(req).await.events())
            .await
            .expect("a resumed stream of a dead replica ends, it does not hang");
        let last = events.last().expect("an event");
        assert_eq!(last.name.as_deref(), Some("error"), "{events:?}");
        assert!(last.data.contains("origin_lost"), "{}", last.data);
    }
    eprintln!(
        "kill -9 of one replica: {} of its streams cut, {others} on the others all complete; {} cut streams resumed to origin_lost in {:.1} s",
        cut.len(),
        resumable.len(),
        resumed_at.elapsed().as_secs_f64()
    );
}
