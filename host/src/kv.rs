//! Spin key-value (`spin:key-value/key-value@3.0.0`): the `default` store
//! in memory (bounded in entries and bytes), or in Redis when the runtime config file says so,
//! in Spin's format:
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//! ```
//!
//! Redis calls have short timeouts: a cache that is down answers with an
//! error at once (components treat that as "no cache"), never a hang.

use crate::spin_api::key_value::{self as wit, Error};
use anyhow::{Context as _, bail};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, oneshot};
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

/// Entries the in-memory store keeps before evicting.
const MEMORY_CAPACITY: usize = 10_000;
/// Bytes of keys and values the in-memory store keeps before evicting.
const MEMORY_BYTES: usize = 64 << 20;
/// How long a Redis connection attempt or command may take.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, StoreConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreConfig {
    r#type: String,
    #[serde(default)]
    url: Option<String>,
}

/// Where a store keeps its data.
#[derive(Clone)]
pub enum Backend {
    Memory(Arc<Mutex<MemoryStore>>),
    Redis(Arc<RedisBackend>),
}

/// The in-memory store, a cache more than a database: past
/// [`MEMORY_CAPACITY`] entries or [`MEMORY_BYTES`] of keys and values, a
/// `set` makes room by evicting arbitrary entries.
pub struct MemoryStore {
    map: HashMap<String, Vec<u8>>,
    /// Bytes of the keys and values in `map`.
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(MEMORY_CAPACITY, MEMORY_BYTES)
    }
}

impl MemoryStore {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        MemoryStore { map: HashMap::new(), bytes: 0, max_entries: max_entries.max(1), max_bytes }
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }

    /// Stores `value` under `key`, evicting others to stay within bounds.
    /// A pair larger than the whole store is refused, leaving it unchanged.
    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        let size = key.len() + value.len();
        if size > self.max_bytes {
            return Err(Error::Other(format!(
                "{size} bytes do not fit in the in-memory store (at most {} bytes)",
                self.max_bytes
            )));
        }
        self.delete(&key);
        while self.map.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            let Some(victim) = self.map.keys().next().cloned() else { break };
            self.delete(&victim);
        }
        self.bytes += size;
        self.map.insert(key, value);
        Ok(())
    }

    fn delete(&mut self, key: &str) {
        if let Some((k, v)) = self.map.remove_entry(key) {
            self.bytes -= k.len() + v.len();
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn keys(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }
}

pub struct RedisBackend {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
}

impl RedisBackend {
    async fn conn(&self) -> Result<ConnectionManager, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        self.conn
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .cloned()
            .map_err(|e| Error::Other(format!("redis unavailable: {e}")))
    }
}

fn redis_err(e: redis::RedisError) -> Error {
    Error::Other(format!("redis: {e}"))
}

/// The Redis URL of store `label` in a runtime config file, if it is a
/// Redis store.
pub fn redis_url(runtime_config: &Path, label: &str) -> anyhow::Result<Option<String>> {
    let text =
        std::fs::read_to_string(runtime_config).with_context(|| format!("cannot read {}", runtime_config.display()))?;
    let config: RuntimeConfig =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", runtime_config.display()))?;
    Ok(config.key_value_store.get(label).filter(|s| s.r#type == "redis").and_then(|s| s.url.clone()))
}

/// The stores of an app, by label.
#[derive(Clone)]
pub struct Stores(Arc<HashMap<String, Backend>>);

impl Stores {
    /// `default` in memory, overridden by the runtime config file if given.
    pub fn load(runtime_config: Option<&Path>) -> anyhow::Result<Self> {
        let mut stores = HashMap::new();
        stores.insert("default".to_string(), Backend::Memory(Arc::default()));
        if let Some(path) = runtime_config {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let config: RuntimeConfig =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for (label, store) in config.key_value_store {
                let backend = match store.r#type.as_str() {
                    "memory" => Backend::Memory(Arc::default()),
                    "redis" => {
                        let Some(url) = store.url else {
                            bail!("{}: key_value_store.{label}: redis needs a `url`", path.display())
                        };
                        let client = redis::Client::open(url.as_str())
                            .with_context(|| format!("{}: key_value_store.{label}.url", path.display()))?;
                        Backend::Redis(Arc::new(RedisBackend { client, conn: OnceCell::new() }))
                    }
                    other => bail!(
                        "{}: key_value_store.{label}.type: {other:?} is not supported (use \"redis\" or \"memory\")",
                        path.display()
                    ),
                };
                stores.insert(label, backend);
            }
        }
        Ok(Stores(Arc::new(stores)))
    }
}

/// What a component may open: the stores named in its `key_value_stores`.
#[derive(Clone)]
pub struct KvContext {
    stores: Stores,
    allowed: Arc<Vec<String>>,
}

impl KvContext {
    pub fn new(stores: Stores, allowed: Vec<String>) -> Self {
        KvContext { stores, allowed: Arc::new(allowed) }
    }
}

/// An open store, as held in the resource table.
#[derive(Clone)]
pub struct StoreHandle(Backend);

/// The state the key-value interface works on.
pub struct KvView<'a> {
    pub table: &'a mut ResourceTable,
    pub ctx: &'a KvContext,
}

pub struct KeyValue;

impl HasData for KeyValue {
    type Data<'a> = KvView<'a>;
}

fn backend<U>(store: &Accessor<U, KeyValue>, handle: &Resource<StoreHandle>) -> wasmtime::Result<Backend> {
    store.with(|mut view| Ok(view.get().table.get(handle)?.0.clone()))
}

impl wit::Host for KvView<'_> {}

impl wit::HostStore for KvView<'_> {
    fn drop(&mut self, handle: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl<U> wit::HostStoreWithStore<U> for KeyValue {
    async fn open(store: &Accessor<U, Self>, label: String) -> wasmtime::Result<Result<Resource<StoreHandle>, Error>> {
        store.with(|mut view| {
            let view = view.get();
            if !view.ctx.allowed.contains(&label) {
                return Ok(Err(Error::AccessDenied));
            }
            let Some(backend) = view.ctx.stores.0.get(&label) else { return Ok(Err(Error::NoSuchStore)) };
            Ok(Ok(view.table.push(StoreHandle(backend.clone()))?))
        })
    }

    async fn get(
        store: &Accessor<U, Self>,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(match backend(store, &handle)? {
            Backend::Memory(map) => Ok(map.lock().unwrap().get(&key)),
            Backend::Redis(r) => match r.conn().await {
                Ok(mut c) => c.get::<_, Option<Vec<u8>>>(&key).await.map_err(redis_err),
                Err(e) => Err(e),
            },
        })
    }

    async fn set(
        store: &Accessor<U, Self>,
        handle: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(match backend(store, &handle)? {
            Backend::Memory(map) => map.lock().unwrap().set(key, value),
            Backend::Redis(r) => match r.conn().await {
                Ok(mut c) => c.set::<_, _, ()>(&key, value).await.map_err(redis_err),
                Err(e) => Err(e),
            },
        })
    }

    async fn delete(
        store: &Accessor<U, Self>,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(match backend(store, &handle)? {
            Backend::Memory(map) => {
                map.lock().unwrap().delete(&key);
                Ok(())
            }
            Backend::Redis(r) => match r.conn().await {
                Ok(mut c) => c.del::<_, ()>(&key).await.map_err(redis_err),
                Err(e) => Err(e),
            },
        })
    }

    async fn exists(
        store: &Accessor<U, Self>,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(match backend(store, &handle)? {
            Backend::Memory(map) => Ok(map.lock().unwrap().contains(&key)),
            Backend::Redis(r) => match r.conn().await {
                Ok(mut c) => c.exists::<_, bool>(&key).await.map_err(redis_err),
                Err(e) => Err(e),
            },
        })
    }

    async fn get_keys(
        store: &Accessor<U, Self>,
        handle: Resource<StoreHandle>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), Error>>)> {
        let keys: Result<Vec<String>, Error> = match backend(store, &handle)? {
            Backend::Memory(map) => Ok(map.lock().unwrap().keys()),
            Backend::Redis(r) => match r.conn().await {
                Ok(mut c) => c.keys::<_, Vec<String>>("*").await.map_err(redis_err),
                Err(e) => Err(e),
            },
        };
        let (tx, rx) = oneshot::channel();
        let keys = match keys {
            Ok(k) => {
                let _ = tx.send(Ok(()));
                k
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                Vec::new()
            }
        };
        store.with(|mut access| Ok((StreamReader::new(&mut access, keys)?, FutureReader::new(&mut access, rx)?)))
    }
}

/// Adds `spin:key-value/key-value@3.0.0` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> anyhow::Result<()> {
    wit::add_to_linker::<T, KeyValue>(linker, get)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_is_bounded_in_bytes() {
        let mut m = MemoryStore::new(1000, 100);
        for n in 0..50 {
            m.set(format!("k{n:02}"), vec![b'v'; 20]).unwrap();
            assert!(m.bytes <= 100, "{} bytes after {} sets", m.bytes, n + 1);
        }
        // 23 bytes an entry: four fit in 100.
        assert_eq!(m.map.len(), 4);
        assert_eq!(m.bytes, m.map.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
        assert_eq!(m.get("k49").as_deref(), Some(&[b'v'; 20][..]), "the newest value is kept");

        // Replacing a value counts the difference, not both.
        m.set("k49".into(), vec![b'w'; 2]).unwrap();
        assert_eq!(m.bytes, m.map.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
        m.delete("k49");
        assert_eq!(m.bytes, m.map.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());

        // A value larger than the store is refused and evicts nothing.
        let before = m.keys().len();
        assert!(matches!(m.set("big".into(), vec![0; 100]), Err(Error::Other(_))));
        assert_eq!(m.keys().len(), before);
        assert!(!m.contains("big"));

        // One that fills the store alone evicts everything else.
        m.set("all".into(), vec![0; 97]).unwrap();
        assert_eq!(m.keys(), ["all"]);
        assert_eq!(m.bytes, 100);
    }

    #[test]
    fn the_memory_store_is_bounded_in_entries() {
        let mut m = MemoryStore::new(3, usize::MAX);
        for n in 0..10 {
            m.set(n.to_string(), vec![]).unwrap();
        }
        assert_eq!(m.map.len(), 3);
        assert!(m.contains("9"));
        // Replacing a key at capacity evicts nothing.
        let keys = {
            let mut k = m.keys();
            k.sort();
            k
        };
        m.set("9".into(), vec![1]).unwrap();
        let mut after = m.keys();
        after.sort();
        assert_eq!(after, keys);
    }

    #[test]
    fn the_default_store_caps_bytes() {
        let m = MemoryStore::default();
        assert_eq!((m.max_entries, m.max_bytes), (MEMORY_CAPACITY, MEMORY_BYTES));
    }
}
