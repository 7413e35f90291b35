//! Bounded waits for the steps: a deadline on one call, and a limit on the
//! silence between the pieces of a long stream.

use futures::future::{Either, select};
use std::future::Future;
use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

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
