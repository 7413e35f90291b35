//! Reading an answer stream back as it passes: where its events end, and
//! how it ended (`done` or `error`). The host keeps one [`Tracker`] per
//! streamed response to add a final error frame only where the stream is
//! unfinished and only between events, and to record the typed `done`.
//!
//! End markers count only as whole events, never as bytes inside one: an
//! answer whose text says `event: done` or `data: [DONE]` is still open.

use crate::encoding::Encoding;
use crate::events::{Done, End, ErrorBody, ErrorCode};
use crate::sse::Decoder;
use serde::Deserialize;

/// Follows one response stream.
#[derive(Debug)]
pub struct Tracker {
    encoding: Encoding,
    decoder: Decoder,
    /// The stream's last event has passed.
    finished: bool,
    end: Option<End>,
    /// A line broke the decoder's limit: skipping to the next blank line,
    /// where the next event starts.
    resyncing: bool,
}

impl Tracker {
    pub fn new(encoding: Encoding) -> Self {
        Tracker { encoding, decoder: Decoder::default(), finished: false, end: None, resyncing: false }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8]) {
        // Where decoding starts: past a blank line after an over-long line.
        let mut from = 0;
        loop {
            if self.resyncing {
                // The over-long event ends at the next blank line; what
                // follows is read as usual. Each pass moves past one, so
                // this ends.
                match memchr::memmem::find(&data[from..], b"\n\n") {
                    Some(i) => {
                        from += i + 2;
                        self.resyncing = false;
                    }
                    None => return,
                }
            }
            if self.decode(&data[from..]).is_ok() {
                return;
            }
            // A line over the limit (a huge passage, say) is not read, but
            // the events after it are: the stream's end is still found.
            self.decoder = Decoder::default();
            self.resyncing = true;
        }
    }

    fn decode(&mut self, data: &[u8]) -> Result<(), crate::sse::LineTooLong> {
        if data.is_empty() {
            return Ok(());
        }
        // A frame of whole events with no marker of a last event cannot end
        // the stream: skipping its decoding (an allocation per token) is
        // exact, and most frames are such runs of text events.
        if self.decoder.between_events() && data.ends_with(b"\n\n") && !self.may_end(data) {
            return Ok(());
        }
        let (encoding, finished, end) = (self.encoding, &mut self.finished, &mut self.end);
        self.decoder.feed_with(data, |event| match encoding {
            Encoding::Spindle => match event.name.as_deref() {
                Some("done") => {
                    *finished = true;
                    *end = serde_json::from_str::<Done>(&event.data).ok().map(|d| End::Done(Box::new(d)));
                }
                Some("error") => {
                    *finished = true;
                    *end = serde_json::from_str::<ErrorBody>(&event.data).ok().map(End::Error);
                }
                _ => {}
            },
            Encoding::OpenAi => {
                if event.data == "[DONE]" {
                    *finished = true;
                } else if let Ok(last) = serde_json::from_str::<LastChunk>(&event.data) {
                    if let Some(e) = last.error {
                        *finished = true;
                        *end = Some(End::Error(ErrorBody {
                            code: e.code.unwrap_or(ErrorCode::UpstreamError),
                            message: e.message,
                        }));
                    } else if let Some(done) = last.spindle {
                        *end = Some(End::Done(done));
                    }
                }
            }
        })
    }

    fn may_end(&self, data: &[u8]) -> bool {
        let markers: &[&[u8]] = match self.encoding {
            Encoding::Spindle => &[b"event"],
            Encoding::OpenAi => &[b"[DONE]", b"\"error\"", b"\"spindle\""],
        };
        markers.iter().any(|m| memchr::memmem::find(data, m).is_some())
    }

    /// Whether everything read so far ends between events, where a frame
    /// may be added.
    pub fn at_boundary(&self) -> bool {
        !self.resyncing && self.decoder.between_events()
    }

    /// Whether the stream's last event (`done`, `error`, `[DONE]`) passed.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// What ends an unfinished stream with `code`: the error frame, after a
    /// blank line if an event is open. `None` once the stream finished.
    pub fn closing_frame(&self, code: ErrorCode) -> Option<String> {
        if self.finished {
            return None;
        }
        let frame = self.encoding.error_frame(code, code.host_message());
        Some(if self.at_boundary() { frame } else { format!("\n\n{frame}") })
    }

    /// Records that the stream was ended with `code` by its carrier.
    pub fn close(&mut self, code: ErrorCode) {
        if !self.finished {
            self.finished = true;
            self.end = Some(End::Error(ErrorBody { code, message: code.host_message().to_string() }));
        }
    }

    /// How the stream ended, if it did and said so.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    pub fn into_end(self) -> Option<End> {
        self.end
    }
}

/// The parts of an OpenAI chunk that end a stream.
#[derive(Deserialize)]
struct LastChunk {
    #[serde(default)]
    error: Option<ChunkError>,
    #[serde(default)]
    spindle: Option<Box<Done>>,
}

#[derive(Deserialize)]
struct ChunkError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<ErrorCode>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoder, OpenAiEncoder, SpindleEncoder};
    use crate::events::{CacheOutcome, Event, Meta, Timings};

    fn done() -> Done {
        Done {
            finish_reason: "stop".into(),
            usage: None,
            timings_ms: Timings { retrieve: 1.5, ..Timings::default() },
            generator: "openai".into(),
            model: "m".into(),
            fallback: None,
            degraded: vec![],
            cache: CacheOutcome::Miss,
        }
    }

    fn answer(encoder: &mut impl Encoder, text: &str, last: Event) -> Vec<String> {
        let meta =
            Event::Meta(Meta { request_id: "r".into(), model: "m".into(), generator: "openai".into(), revision: None });
        [meta, Event::Sources(vec![]), Event::Text(text.into()), last]
            .iter()
            .map(|e| {
                let mut out = String::new();
                encoder.encode(e, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn a_done_is_read_back_typed_in_both_encodings() {
        for (encoding, frames) in [
            (Encoding::Spindle, answer(&mut SpindleEncoder, "hi", Event::Done(done()))),
            (Encoding::OpenAi, answer(&mut OpenAiEncoder::new("c".into(), 0, true), "hi", Event::Done(done()))),
        ] {
            let mut t = Tracker::new(encoding);
            for f in &frames[..3] {
                t.feed(f.as_bytes());
                assert!(!t.finished(), "{encoding:?}: finished before its end: {f}");
                assert!(t.at_boundary());
            }
            t.feed(frames[3].as_bytes());
            assert!(t.finished(), "{encoding:?}");
            assert_eq!(t.end(), Some(&End::Done(Box::new(done()))), "{encoding:?}");
            assert_eq!(t.closing_frame(ErrorCode::ServerShutdown), None);
        }
    }

    #[test]
    fn end_markers_inside_the_text_do_not_end_the_stream() {
        let text = "see:\nevent: done\ndata: {}\n\ndata: [DONE]\n\ndata: {\"error\": 1}";
        for (encoding, frames) in [
            (Encoding::Spindle, answer(&mut SpindleEncoder, text, Event::Done(done()))),
            (Encoding::OpenAi, answer(&mut OpenAiEncoder::new("c".into(), 0, false), text, Event::Done(done()))),
        ] {
            let mut t = Tracker::new(encoding);
            for f in &frames[..3] {
                t.feed(f.as_bytes());
            }
            assert!(!t.finished(), "{encoding:?}: the model's text ended the stream");
            let frame = t.closing_frame(ErrorCode::RequestTimeout).expect("an unfinished stream gets a frame");
            let mut check = Tracker::new(encoding);
            check.feed(frame.as_bytes());
            assert!(check.finished(), "{encoding:?}: {frame}");
            assert!(matches!(check.end(), Some(End::Error(e)) if e.code == ErrorCode::RequestTimeout), "{frame}");
        }
    }

    #[test]
    fn an_event_past_the_line_limit_does_not_hide_the_end() {
        for encoding in [Encoding::Spindle, Encoding::OpenAi] {
            let mut t = Tracker::new(encoding);
            let huge = crate::sse::event(Some("sources"), &"x".repeat(crate::sse::MAX_LINE_BYTES + 10));
            for piece in huge.as_bytes().chunks(64 * 1024) {
                t.feed(piece);
            }
            assert!(t.at_boundary(), "{encoding:?}: found the next event start");
            assert!(!t.finished());
            let mut last = String::new();
            match encoding {
                Encoding::Spindle => SpindleEncoder.encode(&Event::Done(done()), &mut last),
                Encoding::OpenAi => OpenAiEncoder::new("c".into(), 0, false).encode(&Event::Done(done()), &mut last),
            }
            t.feed(last.as_bytes());
            assert!(t.finished(), "{encoding:?}");
            assert_eq!(t.end(), Some(&End::Done(Box::new(done()))), "{encoding:?}");
        }
    }

    #[test]
    fn an_error_frame_after_a_partial_event_starts_on_a_boundary() {
        let mut t = Tracker::new(Encoding::Spindle);
        t.feed(b"data: half a tok");
        assert!(!t.at_boundary());
        let frame = t.closing_frame(ErrorCode::StreamAborted).unwrap();
        assert!(frame.starts_with("\n\nevent: error\n"), "{frame}");
        t.feed(frame.as_bytes());
        assert!(t.finished());
    }

    #[test]
    fn the_openai_error_frame_is_what_openai_clients_raise_on() {
        let frame = Encoding::OpenAi.error_frame(ErrorCode::UpstreamError, "boom");
        let mut d = crate::sse::Decoder::default();
        let events = d.feed(frame.as_bytes()).unwrap();
        assert_eq!(events.len(), 2, "{frame}");
        assert_eq!(events[0].name, None, "openai clients raise only on unnamed events");
        let v: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(v["error"]["message"], "boom");
        assert_eq!(v["error"]["code"], "upstream_error");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(events[1].data, "[DONE]");
    }

    /// Property tests: bounded so that the set runs in seconds.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text a model could send, leaning on what looks like an end marker.
        fn text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("event: done\n".to_string()),
                Just("event: error\r\n".to_string()),
                Just("event:done\r".to_string()),
                Just("data: [DONE]\n\n".to_string()),
                Just("[DONE]".to_string()),
                Just("\"error\": {\"message\": \"x\"}".to_string()),
                Just("{\"spindle\": {}}".to_string()),
                Just("\n\n".to_string()),
                Just("\r".to_string()),
                any::<String>(),
            ];
            prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
        }

        fn encoder(encoding: Encoding) -> Box<dyn Encoder> {
            match encoding {
                Encoding::Spindle => Box::new(SpindleEncoder),
                Encoding::OpenAi => Box::new(OpenAiEncoder::new("c".into(), 0, true)),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn text_events_never_finish_a_stream(
                openai in any::<bool>(),
                texts in prop::collection::vec(text(), 0..8),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let encoding = if openai { Encoding::OpenAi } else { Encoding::Spindle };
                let mut encoder = encoder(encoding);
                let meta = Event::Meta(Meta { request_id: "r".into(), model: "m".into(), generator: "g".into(), revision: None });
                let frames: Vec<String> = std::iter::once(meta)
                    .chain(texts.into_iter().map(Event::Text))
                    .map(|e| {
                        let mut out = String::new();
                        encoder.encode(&e, &mut out);
                        out
                    })
                    .collect();

                // Frame by frame, as the gateway writes them.
                let mut t = Tracker::new(encoding);
                for f in &frames {
                    t.feed(f.as_bytes());
                    prop_assert!(!t.finished(), "{:?}: finished by {:?}", encoding, f);
                    prop_assert!(t.at_boundary(), "{:?}: not at a boundary after {:?}", encoding, f);
                }
                prop_assert_eq!(t.end(), None);

                // The same bytes cut anywhere, as a proxy may pass them on.
                let wire = frames.concat();
                let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
                at.extend([0, wire.len()]);
                at.sort_unstable();
                let mut t = Tracker::new(encoding);
                for w in at.windows(2) {
                    t.feed(&wire.as_bytes()[w[0]..w[1]]);
                    prop_assert!(!t.finished(), "{:?}: finished at byte {}", encoding, w[1]);
                }
                prop_assert!(t.at_boundary());
                prop_assert_eq!(t.end(), None);

                // And a real end still ends it.
                let mut last = String::new();
                encoder.encode(&Event::Done(done()), &mut last);
                t.feed(last.as_bytes());
                prop_assert!(t.finished(), "{:?}", encoding);
                prop_assert_eq!(t.end(), Some(&End::Done(Box::new(done()))));
            }
        }
    }
}
