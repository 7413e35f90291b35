//! Helpers over Spin's guest APIs shared by the components that configure
//! themselves from variables and bound their waits with deadlines.

use futures::future::{Either, select};
use spin_sdk::variables::Error;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

thread_local! {
    /// Variables this instance has read: `None` for undefined or empty.
    /// A request reads about twenty, each an async call to the host;
    /// cached, each costs one call per instance. Values are fixed
    /// for an instance's life under `spindle` (resolved when the app
    /// loads); under Spin a changed provider value reaches the instances
    /// created after the change.
    static SEEN: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
}

/// A Spin variable, or `default` when it is undefined or empty.
pub async fn variable_or(name: &str, default: &str) -> String {
    if let Some(seen) = SEEN.with(|s| s.borrow().get(name).cloned()) {
        return seen.unwrap_or_else(|| default.to_string());
    }
    let value = match spin_sdk::variables::get(name).await {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        Ok(_) | Err(Error::Undefined(_)) => None,
        // A provider that failed may answer next time: not remembered.
        Err(_) => return default.to_string(),
    };
    SEEN.with(|s| s.borrow_mut().insert(name.to_string(), value.clone()));
    value.unwrap_or_else(|| default.to_string())
}

/// A numeric Spin variable; an unparsable value is an error naming it, so a
/// typo in configuration is reported instead of silently ignored.
pub async fn variable_u64(name: &str, default: u64) -> Result<u64, String> {
    let raw = variable_or(name, "").await;
    if raw.is_empty() {
        return Ok(default);
    }
    raw.parse().map_err(|_| format!("variable `{name}` must be a whole number, got `{raw}`"))
}

/// Runs `fut` until `limit` passes; `None` means the deadline won. The
/// losing future is dropped, which cancels whatever it was waiting on.
pub async fn deadline<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    match select(pin!(fut), pin!(spin_sdk::time::sleep(limit))).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// A limit on the silence between the pieces of a long stream (an LLM
/// answer): each [`IdleDeadline::run`] fails if its read waits `limit`.
///
/// One timer serves many reads. [`deadline`] per read would start a timer
/// (an async host call, a host task and a cancellation) for every token of
/// every answer; here a timer that fires early, because reads came in the
/// meantime, is simply re-armed for the rest of the current wait, so a
/// stream that keeps moving costs about one timer per `limit`.
pub struct IdleDeadline {
    limit: Duration,
    /// When the current read started waiting.
    since: Instant,
    timer: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl IdleDeadline {
    pub fn new(limit: Duration) -> Self {
        IdleDeadline { limit, since: Instant::now(), timer: None }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Runs `fut` unless it waits `limit`; `None` means the limit won (and
    /// `fut` is dropped, cancelling whatever it waited on).
    pub async fn run<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        self.since = Instant::now();
        let mut fut = pin!(fut);
        loop {
            let (limit, since) = (self.limit, self.since);
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(spin_sdk::time::sleep(limit.saturating_sub(since.elapsed()))));
            match select(fut.as_mut(), timer.as_mut()).await {
                Either::Left((v, _)) => return Some(v),
                Either::Right(((), _)) => {
                    self.timer = None;
                    if self.since.elapsed() >= self.limit {
                        return None;
                    }
                }
            }
        }
    }
}
