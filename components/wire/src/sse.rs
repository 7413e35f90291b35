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
                on_event(Event { name: self.name.take(), data });
            }
            self.name = None;
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
        self.buf.is_empty() && self.name.is_none() && self.data.is_none()
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
            vec![Event { name: Some("x".into()), data: "a\nb".into() }, Event { name: None, data: "c".into() }]
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
        assert_eq!(d.feed(b": ping\r\n\r\ndata: {}\r\n\r\n").unwrap(), vec![Event { name: None, data: "{}".into() }]);
    }

    #[test]
    fn a_line_split_across_many_reads_decodes_whole() {
        let mut d = Decoder::default();
        let wire = event(Some("done"), &"x".repeat(10_000));
        let mut got = Vec::new();
        for piece in wire.as_bytes().chunks(7) {
            got.extend(d.feed(piece).unwrap());
        }
        assert_eq!(got, vec![Event { name: Some("done".into()), data: "x".repeat(10_000) }]);
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
}
