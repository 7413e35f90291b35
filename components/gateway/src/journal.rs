//! Resumable streams: the journal of an answer's events in Redis, through
//! Spin's outbound Redis (so `spin up` runs it too).
//!
//! With `stream_journal_url` set (a `redis://host:port` the component's
//! `allowed_outbound_hosts` names), every event of `/api/chat/stream` is
//! appended, as sent, to the list `spindle:stream:<request id>`, and the
//! replica producing it keeps the key `…:alive` fresh while it works. A
//! client that reconnects with `Last-Event-ID: <request id>:<n>` to any
//! replica gets events n+1… from the list, then the rest as they are
//! appended; if the producing replica stops without a last event (its
//! `alive` key lapses), an `origin_lost` error ends the stream.
//!
//! The list expires `stream_journal_ttl_secs` (600) after its first event
//! and again after its last, so a finished answer can be resumed for that
//! long.

use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
use spindle_step::config::{variable_or, variable_u64};
use std::time::Duration;

/// How often the producing replica renews its `alive` key; the key lapses
/// after [`LEASE_MISSES`] renewals missed.
pub const LEASE_EVERY: Duration = Duration::from_millis(1000);
const LEASE_MISSES: u64 = 3;
/// How often a resumed stream looks for new events.
pub const POLL_EVERY: Duration = Duration::from_millis(50);
const DEFAULT_TTL_SECS: u64 = 600;

fn key(stream: &str) -> String {
    format!("spindle:stream:{stream}")
}

fn bin(s: impl Into<Vec<u8>>) -> RedisParameter {
    RedisParameter::Binary(s.into())
}

/// Where the journal is, from the variables; `None` when not configured.
pub async fn configured() -> Result<Option<(String, u64)>, String> {
    let url = variable_or("stream_journal_url", "").await;
    if url.is_empty() {
        return Ok(None);
    }
    Ok(Some((url, variable_u64("stream_journal_ttl_secs", DEFAULT_TTL_SECS).await?.max(1))))
}

async fn connect(url: &str) -> Result<Connection, String> {
    Connection::open(url).await.map_err(|e| format!("stream journal {url}: {e:?}"))
}

/// The journal one answer writes.
pub struct Writer {
    conn: Connection,
    key: String,
    ttl_secs: u64,
    appended: usize,
}

impl Writer {
    pub async fn open(url: &str, ttl_secs: u64, stream: &str) -> Result<Writer, String> {
        Ok(Writer { conn: connect(url).await?, key: key(stream), ttl_secs, appended: 0 })
    }

    /// Appends encoded events (one frame each), in order.
    pub async fn append(&mut self, frames: &[String]) -> Result<(), String> {
        if frames.is_empty() {
            return Ok(());
        }
        let args = std::iter::once(bin(self.key.clone())).chain(frames.iter().map(|f| bin(f.clone())));
        self.conn.execute("RPUSH", args).await.map_err(|e| format!("stream journal: {e:?}"))?;
        if self.appended == 0 {
            self.expire().await?;
        }
        self.appended += frames.len();
        Ok(())
    }

    async fn expire(&self) -> Result<(), String> {
        let args = [bin(self.key.clone()), RedisParameter::Int64(self.ttl_secs as i64)];
        self.conn.execute("EXPIRE", args).await.map(drop).map_err(|e| format!("stream journal: {e:?}"))
    }

    /// Renews the `alive` key: this replica is still producing.
    pub async fn renew(&self) -> Result<(), String> {
        let ms = (LEASE_EVERY.as_millis() as u64 * LEASE_MISSES) as i64;
        let args = [bin(format!("{}:alive", self.key)), bin("1"), bin("PX"), RedisParameter::Int64(ms)];
        self.conn.execute("SET", args).await.map(drop).map_err(|e| format!("stream journal: {e:?}"))
    }

    /// The answer is complete: keep it for the TTL from now, and say so.
    pub async fn finish(&self) {
        let _ = self.expire().await;
        let _ = self.conn.execute("DEL", [bin(format!("{}:alive", self.key))]).await;
    }
}

/// A stream being resumed.
pub struct Reader {
    conn: Connection,
    key: String,
}

pub enum Poll {
    /// Frames from the requested position on (maybe none yet).
    Frames(Vec<String>),
    /// No journal under this id: never written, or expired.
    Missing,
}

impl Reader {
    pub async fn open(url: &str, stream: &str) -> Result<Reader, String> {
        Ok(Reader { conn: connect(url).await?, key: key(stream) })
    }

    /// The frames from position `from` (0-based) on.
    pub async fn read(&self, from: usize) -> Result<Poll, String> {
        let args = [bin(self.key.clone()), RedisParameter::Int64(from as i64), RedisParameter::Int64(-1)];
        let items = self.conn.execute("LRANGE", args).await.map_err(|e| format!("stream journal: {e:?}"))?;
        let frames: Vec<String> = items
            .into_iter()
            .filter_map(|r| match r {
                RedisResult::Binary(b) => String::from_utf8(b).ok(),
                _ => None,
            })
            .collect();
        if frames.is_empty() && from == 0 || frames.is_empty() && !self.exists(&self.key).await? {
            return Ok(Poll::Missing);
        }
        Ok(Poll::Frames(frames))
    }

    /// Whether the producing replica is still at work.
    pub async fn origin_alive(&self) -> Result<bool, String> {
        self.exists(&format!("{}:alive", self.key)).await
    }

    async fn exists(&self, key: &str) -> Result<bool, String> {
        let r = self.conn.execute("EXISTS", [bin(key)]).await.map_err(|e| format!("stream journal: {e:?}"))?;
        Ok(matches!(r.first(), Some(RedisResult::Int64(n)) if *n > 0))
    }
}

/// Whether an encoded frame is an answer's last event.
pub fn is_last(frame: &str) -> bool {
    frame.lines().any(|l| l == "event: done" || l == "event: error")
}

/// Parses a `Last-Event-ID` (`<request id>:<n>`) into the stream and the
/// number of events the client has.
pub fn parse_last_event_id(value: &str) -> Option<(String, usize)> {
    let (stream, n) = value.trim().rsplit_once(':')?;
    let n: usize = n.parse().ok()?;
    (!stream.is_empty() && stream.len() <= 128).then(|| (stream.to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids_name_a_stream_and_a_count() {
        assert_eq!(parse_last_event_id("abc-1:7"), Some(("abc-1".into(), 7)));
        assert_eq!(parse_last_event_id("a:b:12"), Some(("a:b".into(), 12)));
        assert_eq!(parse_last_event_id("abc"), None);
        assert_eq!(parse_last_event_id(":3"), None);
        assert_eq!(parse_last_event_id("abc:x"), None);
    }

    #[test]
    fn the_last_event_is_done_or_error() {
        assert!(is_last("id: a:9\nevent: done\ndata: {}\n\n"));
        assert!(is_last("id: a:9\nevent: error\ndata: {}\n\n"));
        assert!(!is_last("id: a:3\ndata: event: done\n\n"));
    }
}
