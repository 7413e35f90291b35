//! The native baseline: a minimal hyper relay doing spindle's relay work
//! without wasm. It calls the upstream with a pooled client, decodes the
//! OpenAI chunk stream and re-encodes each token as an SSE event, as the
//! gateway does, ending with a `done` event.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use spindle_clients::openai::{StreamItem, parse_event};
use spindle_wire::sse::{Decoder, event};
use std::convert::Infallible;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

pub async fn serve(listener: TcpListener, upstream: String) -> anyhow::Result<()> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        // As spindle does: out of file descriptors (thousands of pooled
        // upstream connections) is a reason to wait, not to exit. Returning
        // the error ended the relay process mid-run at C = 9000.
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let client = client.clone();
                let upstream = upstream.clone();
                async move { Ok::<_, Infallible>(relay(req, client, upstream).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn relay(
    req: http::Request<hyper::body::Incoming>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
) -> http::Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    let body = serde_json::json!({
        "model": "bench", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": query}],
    });
    let up = http::Request::post(format!("{upstream}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        let send = |s: String| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(Bytes::from(s)))).await.is_ok() }
        };
        if !send(event(Some("meta"), r#"{"model":"bench"}"#)).await {
            return;
        }
        let Ok(res) = client.request(up).await else {
            send(event(Some("error"), r#"{"code":"upstream_unavailable"}"#)).await;
            return;
        };
        let mut body = res.into_body();
        let mut decoder = Decoder::default();
        while let Some(Ok(frame)) = body.frame().await {
            let Some(data) = frame.data_ref() else { continue };
            let Ok(events) = decoder.feed(data) else { return };
            for e in events {
                for item in parse_event(&e.data).unwrap_or_default() {
                    let out = match item {
                        StreamItem::Text(t) => event(None, &t),
                        StreamItem::Done => event(Some("done"), "{}"),
                        _ => continue,
                    };
                    if !send(out).await {
                        return;
                    }
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    http::Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}
