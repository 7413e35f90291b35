//! The answer cache, in Spin key-value (store `default`): the same question
//! with the same `top_k`, filters and model is answered from the cache,
//! replayed as a stream with its sources. Questions with history are not
//! cached (their answers depend on the conversation). A store that fails
//! (Redis down) means no cache, never an error.

use crate::api::ChatRequest;
use crate::events::{CacheOutcome, Source, Usage};
use serde::{Deserialize, Serialize};
use spin_sdk::key_value::Store;
use spindle_step::config::variable_u64;
use std::hash::{Hash, Hasher};

/// Default lifetime of a cached answer.
const DEFAULT_TTL_SECS: u64 = 3600;

/// A cached answer.
#[derive(Serialize, Deserialize)]
pub struct Cached {
    /// The question, normalised, to tell hash collisions apart.
    pub query: String,
    pub stored_at: u64,
    pub model: String,
    pub generator: String,
    pub sources: Vec<Source>,
    pub chunks: Vec<String>,
    pub finish_reason: String,
    pub usage: Option<Usage>,
}

pub enum Lookup {
    Hit(Box<Cached>),
    /// Not cached; store the answer under this key.
    Miss(String),
    /// Caching does not apply (disabled, or a question with history).
    Off,
    /// The store failed; carry on without it.
    Unavailable,
}

impl Lookup {
    pub fn status(&self) -> CacheOutcome {
        match self {
            Lookup::Hit(_) => CacheOutcome::Hit,
            Lookup::Miss(_) => CacheOutcome::Miss,
            Lookup::Off => CacheOutcome::Off,
            Lookup::Unavailable => CacheOutcome::Unavailable,
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Questions differing only in case or surrounding space share an answer.
pub fn normalise(query: &str) -> String {
    query.trim().to_lowercase()
}

fn key(req: &ChatRequest, model: &str) -> String {
    // SipHash with fixed keys: stable for a given build, which is all a
    // cache key needs (a new toolchain at worst causes misses).
    let mut h = std::hash::DefaultHasher::new();
    // Another revision of the app may answer differently.
    (normalise(&req.query), req.top_k, &req.filters, model, &req.revision).hash(&mut h);
    format!("spindle:answer:v1:{:016x}", h.finish())
}

pub struct Cache {
    store: Option<Store>,
    ttl: u64,
}

impl Cache {
    pub async fn open() -> Cache {
        let ttl = variable_u64("cache_ttl_secs", DEFAULT_TTL_SECS).await.unwrap_or(DEFAULT_TTL_SECS);
        let store = if ttl == 0 { None } else { Store::open_default().await.ok() };
        Cache { store, ttl }
    }

    pub async fn lookup(&self, req: &ChatRequest, model: &str) -> Lookup {
        if self.ttl == 0 || !req.history.is_empty() {
            return Lookup::Off;
        }
        let Some(store) = &self.store else { return Lookup::Unavailable };
        let key = key(req, model);
        match store.get(&key).await {
            Err(_) => Lookup::Unavailable,
            Ok(None) => Lookup::Miss(key),
            Ok(Some(bytes)) => match serde_json::from_slice::<Cached>(&bytes) {
                Ok(c) if c.query == normalise(&req.query) && now_secs().saturating_sub(c.stored_at) < self.ttl => {
                    Lookup::Hit(Box::new(c))
                }
                _ => Lookup::Miss(key),
            },
        }
    }

    pub async fn put(&self, key: &str, mut answer: Cached) {
        let Some(store) = &self.store else { return };
        answer.stored_at = now_secs();
        if let Ok(bytes) = serde_json::to_vec(&answer) {
            // Failing to cache only costs a future miss.
            let _ = store.set(key, bytes).await;
        }
    }
}
