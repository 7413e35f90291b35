//! `GET|POST /api/chat/stream`: the answer as Server-Sent Events.

use crate::api;
use crate::events::Event;
use crate::pipeline::{self, Gone, Sink};
use futures::SinkExt;
use futures::channel::mpsc::Sender;
use spin_sdk::http::{BoxBody, Request, Response, body, box_body};

struct SseSink(Sender<String>);

impl Sink for SseSink {
    async fn send(&mut self, event: Event) -> Result<(), Gone> {
        // A failed send means the host dropped the body: the client is gone.
        self.0.send(event.to_sse()).await.map_err(|_| Gone)
    }
}

pub async fn handle(req: Request) -> Response<BoxBody> {
    let chat = match api::parse(req).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let request_id = chat.request_id.clone();
    let (tx, body) = body::stream::<String>();
    spin_sdk::wasip3::spawn(async move {
        let _ = pipeline::run(chat, &mut SseSink(tx)).await;
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .header("x-request-id", request_id)
        .body(box_body(body))
        .expect("static headers are valid")
}
