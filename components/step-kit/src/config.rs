//! Spin variables for the components that configure themselves from them,
//! read once per instance.

use spin_sdk::variables::Error;
use std::cell::RefCell;
use std::collections::HashMap;

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
