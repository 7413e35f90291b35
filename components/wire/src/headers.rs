//! Header names of the wire, and the encoding of the one header value that
//! carries free text.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The request id: the client's (for correlation), or one the host made.
pub const REQUEST_ID: &str = "x-request-id";
/// The encoding of an answer stream ([`crate::encoding::Encoding`]).
pub const ENCODING: &str = "x-spindle-encoding";
/// The validated question, as the app understood it, for the host's query
/// log (percent-encoded, at most [`MAX_QUERY_CHARS`] characters). The host
/// removes it before the response leaves.
pub const QUERY: &str = "x-spindle-query";

/// How a whole (not streamed) answer ended, for the host's query log: the
/// typed [`crate::End`] as percent-encoded JSON. Streams say it in their
/// last event instead. The host removes it before the response leaves.
pub const END: &str = "x-spindle-end";

/// The revision of the app serving a request (a hash of its composed
/// components, routes and variables), set by the host on every request it
/// routes to the app, replacing any the client sent. The app reports it in
/// `meta` and keys its answer cache with it. Absent under a host that does
/// not set it.
pub const REVISION: &str = "x-spindle-revision";

/// Set by the app on a stream it journals for resumption: its answer is
/// kept going when the client leaves (a reconnect picks it up), so the
/// host must not cancel the stream's outbound calls then. The host removes
/// it before the response leaves.
pub const JOURNALED: &str = "x-spindle-journaled";

/// Longest question carried in [`QUERY`], in characters.
pub const MAX_QUERY_CHARS: usize = 500;

/// Everything but unreserved ASCII is escaped: the value must be a valid
/// header whatever the question holds.
const ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b'\'')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(0x7f);

/// The [`QUERY`] header value for `query`, cut to [`MAX_QUERY_CHARS`].
pub fn encode_query(query: &str) -> String {
    let cut = match query.char_indices().nth(MAX_QUERY_CHARS) {
        Some((i, _)) => &query[..i],
        None => query,
    };
    utf8_percent_encode(cut, ESCAPED).to_string()
}

/// The question from a [`QUERY`] header value.
pub fn decode_query(value: &str) -> String {
    percent_decode_str(value).decode_utf8_lossy().into_owned()
}

/// The [`END`] header value for `end`.
pub fn encode_end(end: &crate::End) -> String {
    utf8_percent_encode(&serde_json::to_string(end).expect("end events serialise"), ESCAPED).to_string()
}

/// How an answer ended, from an [`END`] header value.
pub fn decode_end(value: &str) -> Option<crate::End> {
    serde_json::from_str(&percent_decode_str(value).decode_utf8_lossy()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_question_round_trips_through_a_valid_header_value() {
        for q in ["hello world", "什么是 Debian?", "a\r\nb\0c%20\"", "tab\there"] {
            let v = encode_query(q);
            assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{v}");
            assert_eq!(decode_query(&v), q);
        }
        assert_eq!(decode_query(&encode_query(&"字".repeat(2000))).chars().count(), MAX_QUERY_CHARS);
    }

    #[test]
    fn an_end_round_trips_through_a_valid_header_value() {
        let end = crate::End::Error(crate::ErrorBody {
            code: crate::ErrorCode::RetrieverTimeout,
            message: "retriever: \"slow\"\n".into(),
        });
        let v = encode_end(&end);
        assert!(v.bytes().all(|b| (0x21..0x7f).contains(&b)), "{v}");
        assert_eq!(decode_end(&v), Some(end));
    }
}
