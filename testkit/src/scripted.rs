//! A scriptable JSON HTTP peer standing in for a search engine, vector
//! store, embeddings or rerank endpoint in fault tests: each route (method
//! and path prefix) answers with a chosen status, body and delay, which a
//! test may change while it runs. Every request is recorded.
//!
//! Real engines are used wherever they run (tests/end_to_end.rs); this is
//! for what they cannot be made to do on demand: stall, fail, send garbage.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(value: serde_json::Value) -> Reply {
        Reply { status: 200, body: value.to_string(), delay: Duration::ZERO }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply { status, body: body.to_string(), delay: Duration::ZERO }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request as received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Computes a reply from the request (e.g. one embedding per input).
pub type Responder = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

type Routes = Arc<Mutex<Vec<(String, String, Responder)>>>;

pub struct Scripted {
    /// `http://127.0.0.1:<port>`
    pub origin: String,
    routes: Routes,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests whose client closed the connection before the reply was
    /// sent: the path, and when.
    pub dropped: Arc<Mutex<Vec<(String, Instant)>>>,
}

/// Notes a request as dropped unless it was answered.
struct Pending {
    path: String,
    answered: bool,
    dropped: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.dropped.lock().unwrap().push((std::mem::take(&mut self.path), Instant::now()));
        }
    }
}

impl Scripted {
    pub async fn start() -> Scripted {
        let listener = crate::listen::loopback().expect("bind");
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let routes: Routes = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let dropped: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let (r, s, d) = (routes.clone(), seen.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (r, s, d) = (r.clone(), s.clone(), d.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (r, s, d) = (r.clone(), s.clone(), d.clone());
                        async move {
                            let method = req.method().to_string();
                            let authorization =
                                req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            let seen = Seen { method: method.clone(), path: path.clone(), authorization, body };
                            s.lock().unwrap().push(seen.clone());
                            let responder = r
                                .lock()
                                .unwrap()
                                .iter()
                                .rev()
                                .find(|(m, p, _)| m == &method && path.starts_with(p.as_str()))
                                .map(|(_, _, f)| f.clone());
                            let reply = match responder {
                                Some(f) => f(&seen),
                                None => Reply::status(404, r#"{"error":"no such route"}"#),
                            };
                            // hyper drops this future when the client closes
                            // the connection while it waits.
                            let mut pending = Pending { path: path.clone(), answered: false, dropped: d };
                            tokio::time::sleep(reply.delay).await;
                            pending.answered = true;
                            let resp = hyper::Response::builder()
                                .status(reply.status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(reply.body)))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Scripted { origin, routes, seen, dropped }
    }

    /// Answers `method` requests whose path starts with `prefix`; a later
    /// rule for the same route wins.
    pub fn on(&self, method: &str, prefix: &str, reply: Reply) -> &Self {
        self.on_fn(method, prefix, move |_| reply.clone())
    }

    /// Like [`Scripted::on`], computing each reply from the request.
    pub fn on_fn(&self, method: &str, prefix: &str, f: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> &Self {
        self.routes.lock().unwrap().push((method.to_string(), prefix.to_string(), Arc::new(f)));
        self
    }

    /// The requests received on paths starting with `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.path.starts_with(prefix)).cloned().collect()
    }
}
