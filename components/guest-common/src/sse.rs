//! Server-Sent Events framing (WHATWG HTML §9.2), both directions: encoding
//! the events Spindle sends and incrementally decoding an upstream's stream.
//!
//! Hand-written because the framing is a few lines and the guest crates must
//! stay free of async runtimes that SSE crates pull in.

/// Encodes one event. Each line of `data` gets its own `data:` field, so a
/// chunk containing newlines arrives intact; `\r\n` and `\r` count as newlines.
pub fn event(name: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
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

/// Incremental decoder: feed bytes as they arrive, take whole events out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
}

impl Decoder {
    /// Appends bytes and returns every event they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        // Lines are read in place and the consumed prefix removed once: this
        // runs for every token of every stream.
        let mut start = 0;
        while let Some(len) = memchr::memchr(b'\n', &self.buf[start..]) {
            let mut line = &self.buf[start..start + len];
            start += len + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(Event { name: self.name.take(), data });
                }
                self.name = None;
                continue;
            }
            if line[0] == b':' {
                continue;
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
        self.buf.drain(..start);
        events
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
        let mut got = d.feed(first);
        got.extend(d.feed(second));
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
        assert_eq!(d.feed(b": ping\r\n\r\ndata: {}\r\n\r\n"), vec![Event { name: None, data: "{}".into() }]);
    }

    #[test]
    fn between_events_only_when_nothing_is_pending() {
        let mut d = Decoder::default();
        assert!(d.between_events());
        d.feed(b"event: done\n");
        assert!(!d.between_events());
        d.feed(b"data: {}\n");
        assert!(!d.between_events());
        d.feed(b"\ndata: x");
        assert!(!d.between_events());
        d.feed(b"\n\n");
        assert!(d.between_events());
    }
}
