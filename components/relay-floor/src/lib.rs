//! `relay-floor`: the benchmark's floor for wasm on the token path.
//!
//! It does exactly the native relay's work (`bench/src/relay.rs`): call the
//! upstream, decode its OpenAI chunk stream and re-encode each token as an
//! SSE event, ending with `done`, in one component with one stream hop
//! (upstream body → this guest → response body). `spindle-bench --floor`
//! runs it on the same host as the app. What it costs over the native relay
//! is what wasmtime and the host charge for having wasm on the stream at
//! all; what the app costs over it is the pipeline's own (steps, the
//! generator → gateway hop, SSE bookkeeping). Not a product component: no
//! limits, no fallbacks, no heartbeats.

use spin_sdk::http::{HeaderMap, HeaderValue, IntoResponse, Request};
use spin_sdk::wasip3::http::types::{self, ErrorCode, Fields};
use spin_sdk::wasip3::http_compat::BodyWriter;
use spindle_clients::body::BodyReader;
use spindle_clients::openai::{StreamItem, chat_request, parse_event};
use spindle_step::config::variable_or;
use spindle_wire::Encoding;
use spindle_wire::headers::ENCODING;
use spindle_wire::sse::{Decoder, event};

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let query = req.uri().query().unwrap_or("").to_string();
    let url = variable_or("llm_url", "").await;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/event-stream"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    // Read back by the host like the app's answers, so the floor pays the
    // same per-stream bookkeeping.
    headers.insert(ENCODING, HeaderValue::from_static(Encoding::Spindle.header_value()));
    let fields = Fields::try_from(headers).map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let (mut writer, contents, trailers) = BodyWriter::new();
    let (response, _transmitted) = types::Response::new(fields, Some(contents), trailers);
    spin_sdk::wasip3::spawn(async move {
        let mut send = async |s: String| writer.stream_writer.write_all(s.into_bytes()).await.is_empty();
        if !send(event(Some("meta"), r#"{"model":"bench"}"#)).await {
            return;
        }
        let body = chat_request("bench", &[("user", &query)], None, None);
        let req = spin_sdk::http::Request::post(format!("{url}/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .expect("a static request is valid");
        let Some(mut upstream) = spin_sdk::http::send(req).await.ok().and_then(|r| BodyReader::new(r).ok()) else {
            send(event(Some("error"), r#"{"code":"upstream_unavailable"}"#)).await;
            return;
        };
        let mut decoder = Decoder::default();
        while let Some(Ok(bytes)) = upstream.next().await {
            // One write per upstream read, as the app's generator does.
            let mut out = String::new();
            let Ok(events) = decoder.feed(bytes) else { return };
            for e in events {
                for item in parse_event(&e.data).unwrap_or_default() {
                    match item {
                        StreamItem::Text(t) => out.push_str(&event(None, &t)),
                        StreamItem::Done => out.push_str(&event(Some("done"), "{}")),
                        _ => {}
                    }
                }
            }
            if !out.is_empty() && !send(out).await {
                return;
            }
        }
        let BodyWriter { stream_writer, result_writer, .. } = writer;
        drop(stream_writer);
        let _ = result_writer.write(Ok(None)).await;
    });
    Ok::<_, ErrorCode>(response)
}
