//! Server-Sent Events framing (WHATWG HTML §9.2), both directions: encoding
//! the events Spindle sends and incrementally decoding a stream.
//!
//! Hand-written because the framing is a few lines, the guests must stay
//! free of the async runtimes SSE crates pull in, and the decoder needs two
//! properties those crates do not promise: every byte is scanned once, and
//! a line is bounded ([`MAX_LINE_BYTES`]).

/// Longest line the decoder accepts, in bytes. An upstream that sends more
/// without a newline is broken or hostile; buffering it would grow without
/// bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Appends one event to `out`. Each line of `data` gets its own `data:`
/// field, so a chunk containing newlines arrives intact; `\r\n` and `\r`
/// count as newlines.
pub fn write_event(out: &mut String, name: Option<&str>, data: &str) {
    out.reserve(data.len() + 32);
    if let Some(name) = name {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    // One `data:` line per line of `data`, whichever newline it uses, without
    // building a normalised copy first (this runs once per token).
    let mut lines = data.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\r').filter(|_| lines.peek().is_some()).unwrap_or(line);
        for line in line.split('\r') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
}

/// One event, encoded.
pub fn event(name: Option<&str>, data: &str) -> String {
    let mut out = String::new();
    write_event(&mut out, name, data);
    out
}

/// A comment line: ignored by clients, keeps idle connections open.
pub fn comment(text: &str) -> String {
    format!(": {text}\n\n")
}

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
    /// The event's `id:`, if it had one (what a client sends back as
    /// `Last-Event-ID` to resume).
    pub id: Option<String>,
}

/// The stream broke a framing limit; the decoder keeps refusing input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a line of the event stream is longer than {MAX_LINE_BYTES} bytes")
    }
}

impl std::error::Error for LineTooLong {}

/// Incremental decoder: feed bytes as they arrive, take whole events out.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the unfinished line.
    buf: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
    id: Option<String>,
    broken: bool,
}

impl Decoder {
    /// Decodes `bytes` and returns every event they complete. Fails once a
    /// line exceeds [`MAX_LINE_BYTES`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, LineTooLong> {
        let mut events = Vec::new();
        self.feed_with(bytes, |e| events.push(e))?;
        Ok(events)
    }

    /// Like [`Decoder::feed`], handing each event to `on_event`.
    pub fn feed_with(&mut self, mut bytes: &[u8], mut on_event: impl FnMut(Event)) -> Result<(), LineTooLong> {
        if self.broken {
            return Err(LineTooLong);
        }
        // Only the new bytes are searched for a newline: an unfinished line
        // waits in `buf` and is never scanned again.
        while let Some(len) = memchr::memchr(b'\n', bytes) {
            let piece = &bytes[..len];
            bytes = &bytes[len + 1..];
            if self.buf.is_empty() {
                if piece.len() > MAX_LINE_BYTES {
                    self.broken = true;
                    return Err(LineTooLong);
                }
                self.line(piece, &mut on_event);
            } else {
                let mut line = std::mem::take(&mut self.buf);
                line.extend_from_slice(piece);
                if line.len() > MAX_LINE_BYTES {
                    self.broken = true;
                    return Err(LineTooLong);
                }
                self.line(&line, &mut on_event);
                // Keep the allocation for the next split line, unless one
                // long line made it large: thousands of streams hold one.
                if line.capacity() <= 64 * 1024 {
                    line.clear();
                    self.buf = line;
                }
            }
        }
        if self.buf.len() + bytes.len() > MAX_LINE_BYTES {
            self.broken = true;
            self.buf = Vec::new();
            return Err(LineTooLong);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn line(&mut self, mut line: &[u8], on_event: &mut impl FnMut(Event)) {
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                on_event(Event { name: self.name.take(), data, id: self.id.take() });
            }
            self.name = None;
            self.id = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        // Field names are ASCII: only a value needs UTF-8 decoding.
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => (&line[..i], line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..])),
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.name = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" => self.id = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                let value = String::from_utf8_lossy(value);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
            _ => {}
        }
    }

    /// True when no event is partly received: every byte fed so far belonged
    /// to events already returned, or to comments.
    pub fn between_events(&self) -> bool {
        self.buf.is_empty() && self.name.is_none() && self.data.is_none() && self.id.is_none()
    }

    /// Bytes received that do not yet end a line (for error messages).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_data_round_trips() {
        let wire = event(Some("x"), "a\nb") + &event(None, "c");
        assert_eq!(wire, "event: x\ndata: a\ndata: b\n\ndata: c\n\n");
        let mut d = Decoder::default();
        let (first, second) = wire.as_bytes().split_at(7);
        let mut got = d.feed(first).unwrap();
        got.extend(d.feed(second).unwrap());
        assert_eq!(
            got,
            vec![
                Event { name: Some("x".into()), data: "a\nb".into(), id: None },
                Event { name: None, data: "c".into(), id: None }
            ]
        );
    }

    #[test]
    fn every_newline_style_splits_data_lines() {
        assert_eq!(event(None, "a\r\nb\rc\nd"), "data: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(event(None, "a\r"), "data: a\ndata: \n\n");
        assert_eq!(event(None, ""), "data: \n\n");
    }

    #[test]
    fn comments_and_crlf_are_handled() {
        let mut d = Decoder::default();
        assert_eq!(
            d.feed(b": ping\r\n\r\ndata: {}\r\n\r\n").unwrap(),
            vec![Event { name: None, data: "{}".into(), id: None }]
        );
        let got = d.feed(b"id: r-1:4\nevent: done\ndata: {}\n\ndata: x\n\n").unwrap();
        assert_eq!(got[0].id.as_deref(), Some("r-1:4"));
        assert_eq!(got[1].id, None, "an id belongs to its own event");
    }

    #[test]
    fn a_line_split_across_many_reads_decodes_whole() {
        let mut d = Decoder::default();
        let wire = event(Some("done"), &"x".repeat(10_000));
        let mut got = Vec::new();
        for piece in wire.as_bytes().chunks(7) {
            got.extend(d.feed(piece).unwrap());
        }
        assert_eq!(got, vec![Event { name: Some("done".into()), data: "x".repeat(10_000), id: None }]);
    }

    #[test]
    fn a_line_past_the_limit_is_refused_without_buffering_it() {
        let mut d = Decoder::default();
        let piece = vec![b'x'; 64 * 1024];
        let mut fed = 0;
        let err = loop {
            match d.feed(&piece) {
                Ok(events) => assert!(events.is_empty()),
                Err(e) => break e,
            }
            fed += piece.len();
            assert!(fed <= MAX_LINE_BYTES, "accepted {fed} bytes without a newline");
        };
        assert_eq!(err, LineTooLong);
        assert!(d.pending() == 0, "the refused line is not kept");
        assert_eq!(d.feed(b"\n\n"), Err(LineTooLong), "a broken stream stays broken");
        // Many short lines are fine however much they add up to.
        let mut d = Decoder::default();
        for _ in 0..100 {
            assert_eq!(d.feed(&event(None, &"y".repeat(50_000)).into_bytes()).unwrap().len(), 1);
        }
    }

    #[test]
    fn between_events_only_when_nothing_is_pending() {
        let mut d = Decoder::default();
        assert!(d.between_events());
        d.feed(b"event: done\n").unwrap();
        assert!(!d.between_events());
        d.feed(b"data: {}\n").unwrap();
        assert!(!d.between_events());
        d.feed(b"\ndata: x").unwrap();
        assert!(!d.between_events());
        d.feed(b"\n\n").unwrap();
        assert!(d.between_events());
    }

    /// Property tests: bounded so that the set runs in seconds.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn config(cases: u32) -> ProptestConfig {
            ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
        }

        /// Bytes that look like an event stream often enough to reach every
        /// branch of the decoder: field names, separators, every newline
        /// style, invalid UTF-8 and plain noise.
        fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
            let token = prop_oneof![
                Just(b"data: ".to_vec()),
                Just(b"data:".to_vec()),
                Just(b"data".to_vec()),
                Just(b"event: ".to_vec()),
                Just(b"event:done".to_vec()),
                Just(b": comment".to_vec()),
                Just(b"id: 1".to_vec()),
                Just(b":".to_vec()),
                Just(b" ".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\n\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\r".to_vec()),
                Just("é€😀".as_bytes().to_vec()),
                Just(vec![0xff, 0xc3]),
                prop::collection::vec(any::<u8>(), 1..8),
                "[a-z{}\"\\[\\]]{1,12}".prop_map(String::into_bytes),
            ];
            prop::collection::vec(token, 0..48).prop_map(|t| t.concat())
        }

        /// Any text, with newlines of every style and field-like prefixes
        /// more often than chance would give them.
        fn text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("\r".to_string()),
                Just("\n".to_string()),
                Just("\r\n".to_string()),
                Just("data: ".to_string()),
                Just("event: done".to_string()),
                Just(": ".to_string()),
                "[ :a-z]{0,8}",
                any::<String>(),
            ];
            prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
        }

        /// Cut points into a buffer of `len` bytes, ascending, ends included.
        fn cuts(len: usize, raw: &[prop::sample::Index]) -> Vec<usize> {
            let mut at: Vec<usize> = raw.iter().map(|i| i.index(len + 1)).collect();
            at.push(0);
            at.push(len);
            at.sort_unstable();
            at
        }

        /// What a decoder made of `pieces`, fed in order: every event it
        /// handed out (including those completed by the feed that failed),
        /// whether it failed, and its state at the end.
        #[derive(Debug, PartialEq)]
        struct Outcome {
            events: Vec<Event>,
            failed: bool,
            between_events: bool,
            pending: usize,
        }

        fn decode<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
            let mut d = Decoder::default();
            let mut events = Vec::new();
            let mut failed = false;
            for piece in pieces {
                let result = d.feed_with(piece, |e| events.push(e));
                if failed {
                    assert_eq!(result, Err(LineTooLong), "a broken decoder accepted more input");
                }
                failed |= result.is_err();
            }
            Outcome { events, failed, between_events: d.between_events(), pending: d.pending() }
        }

        fn split<'a>(bytes: &'a [u8], at: &[usize]) -> Vec<&'a [u8]> {
            at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
        }

        /// `\r\n` and `\r` read back as `\n`: SSE has no way to tell them apart.
        fn normalised(text: &str) -> String {
            text.replace("\r\n", "\n").replace('\r', "\n")
        }

        proptest! {
            #![proptest_config(config(512))]

            #[test]
            fn any_split_decodes_like_the_whole(
                bytes in stream_bytes(),
                raw in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            ) {
                let whole = decode([bytes.as_slice()]);
                let pieces = split(&bytes, &cuts(bytes.len(), &raw));
                prop_assert_eq!(decode(pieces.iter().copied()), whole);
                // Byte by byte: the most splits there can be.
                prop_assert_eq!(decode(bytes.chunks(1)), decode([bytes.as_slice()]));
            }

            #[test]
            fn any_encoded_text_decodes_back(
                name in prop::option::of("[^\r\n]{0,16}"),
                data in text(),
                raw in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let wire = event(name.as_deref(), &data);
                let expected = vec![Event { name: name.clone(), data: normalised(&data), id: None }];
                let whole = decode([wire.as_bytes()]);
                prop_assert_eq!(&whole.events, &expected);
                prop_assert!(!whole.failed && whole.between_events);
                let pieces = split(wire.as_bytes(), &cuts(wire.len(), &raw));
                prop_assert_eq!(decode(pieces.iter().copied()).events, expected);
            }

            #[test]
            fn text_without_carriage_returns_round_trips_exactly(
                data in "[^\r]{0,64}",
                text in prop::collection::vec("[^\r]{0,24}", 0..6),
            ) {
                let mut wire = event(None, &data);
                for t in &text {
                    write_event(&mut wire, Some("t"), t);
                }
                let got = decode([wire.as_bytes()]).events;
                prop_assert_eq!(got.len(), text.len() + 1);
                prop_assert_eq!(&got[0].data, &data);
                for (e, t) in got[1..].iter().zip(&text) {
                    prop_assert_eq!(&e.data, t);
                    prop_assert_eq!(e.name.as_deref(), Some("t"));
                }
            }
        }

        proptest! {
            // Each case feeds about a megabyte: fewer of them.
            #![proptest_config(config(24))]

            #[test]
            fn a_line_is_refused_exactly_when_it_passes_the_limit(
                len in (MAX_LINE_BYTES - 2)..(MAX_LINE_BYTES + 3),
                newline in any::<bool>(),
                raw in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut bytes = b"data: ok\n\n".to_vec();
                let start = bytes.len();
                bytes.extend(std::iter::repeat_n(b'x', len));
                if newline {
                    bytes.extend_from_slice(b"\n\n");
                }
                let at = cuts(bytes.len(), &raw);
                let out = decode(split(&bytes, &at));
                prop_assert_eq!(out.failed, len > MAX_LINE_BYTES, "a line of {} bytes", len);
                prop_assert_eq!(&out.events[..1], &[Event { name: None, data: "ok".into(), id: None }][..]);
                if out.failed {
                    prop_assert_eq!(out.pending, 0, "the refused line is not kept");
                } else {
                    prop_assert_eq!(out.pending, if newline { 0 } else { bytes.len() - start });
                }
                prop_assert_eq!(out, decode([bytes.as_slice()]));
            }
        }
    }
}
