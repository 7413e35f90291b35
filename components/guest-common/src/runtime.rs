//! Helpers over Spin's guest APIs shared by the components that configure
//! themselves from variables and bound their waits with deadlines.

use futures::future::{Either, select};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

/// A Spin variable, or `default` when it is undefined or empty.
pub async fn variable_or(name: &str, default: &str) -> String {
    match spin_sdk::variables::get(name).await {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => default.to_string(),
    }
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
