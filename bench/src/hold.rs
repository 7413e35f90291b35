//! Memory per open stream: C streams held open at once (the upstream's
//! tokens slowed so none ends while the others start), the target's memory
//! sampled once every stream has its first text, against the same process
//! idle. Each open stream is one live instance of the app, so this is the
//! memory an instance costs, and with a big embedded index in the app it
//! shows whether instances share the index or copy it.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use spindle_testkit::procstat;
use spindle_wire::sse::Decoder;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub struct Held {
    pub streams: usize,
    /// Streams that reached their first text before the sample.
    pub open: usize,
    pub idle: procstat::Memory,
    pub held: procstat::Memory,
    pub errors: usize,
}

/// Opens `c` streams to `url`, samples process `pid` once all have their
/// first text (or after a minute), then lets them finish.
pub async fn hold(url: &str, pid: u32, c: usize) -> Held {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(c).build(HttpConnector::new());
    // Warm: compiled code, pools, the index pages a query touches.
    for _ in 0..3 {
        let _ = stream(&client, url, &AtomicUsize::new(0)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let idle = procstat::memory(pid);
    let open = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..c)
        .map(|_| {
            let (client, url, open) = (client.clone(), url.to_string(), open.clone());
            tokio::spawn(async move { stream(&client, &url, &open).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while open.load(Ordering::Relaxed) < c && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = procstat::memory(pid);
    let opened = open.load(Ordering::Relaxed);
    let mut errors = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            errors += 1;
        }
    }
    Held { streams: c, open: opened, idle, held, errors }
}

/// One stream to its end; counts itself in `open` at its first text.
async fn stream(client: &Client<HttpConnector, Empty<Bytes>>, url: &str, open: &AtomicUsize) -> Result<(), String> {
    let req = http::Request::get(format!("{url}?query=how+do+I+install+a+package")).body(Empty::new()).unwrap();
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    if res.status() != 200 {
        return Err(format!("status {}", res.status()));
    }
    let mut body = res.into_body();
    let mut decoder = Decoder::default();
    let mut counted = false;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(120), body.frame()).await.map_err(|_| "stalled")? {
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(data) = frame.data_ref() else { continue };
        for e in decoder.feed(data).map_err(|e| e.to_string())? {
            match e.name.as_deref() {
                None if !counted => {
                    counted = true;
                    open.fetch_add(1, Ordering::Relaxed);
                }
                Some("error") => return Err(e.data),
                Some("done") => return Ok(()),
                _ => {}
            }
        }
    }
    Err("stream ended without done".into())
}
