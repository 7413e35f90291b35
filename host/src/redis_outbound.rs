//! Spin's outbound Redis (`spin:redis/redis@3.0.0`): a component opens a
//! connection to a `redis://` address its `allowed_outbound_hosts` names
//! and runs commands on it. The gateway journals resumable streams this
//! way, so the same manifest works under `spin up`.
//!
//! Connections are shared by the whole process, one multiplexed
//! connection per address (redis' `ConnectionManager`, which reconnects),
//! so instances opening the same address per request cost no handshake.
//! Commands time out quickly: a Redis that is down is an error at once,
//! never a hang.

use crate::outbound::{AllowList, Reach};
use crate::spin_api::redis::{self as wit, Error, RedisParameter, RedisResult};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Accessor, HasData, Resource, ResourceTable};

/// How long a connection attempt or a command may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// An open connection, as held in the resource table.
#[derive(Clone)]
pub struct Connection(ConnectionManager);

/// What a component's instances may reach.
#[derive(Clone)]
pub struct RedisContext {
    allow: Arc<AllowList>,
}

impl RedisContext {
    pub fn new(allow: Arc<AllowList>) -> Self {
        RedisContext { allow }
    }
}

pub struct RedisView<'a> {
    pub table: &'a mut ResourceTable,
    pub ctx: &'a RedisContext,
}

pub struct Redis;

impl HasData for Redis {
    type Data<'a> = RedisView<'a>;
}

/// The process's connections, by address.
fn connections() -> &'static Mutex<HashMap<String, Arc<tokio::sync::OnceCell<ConnectionManager>>>> {
    static CONNECTIONS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::OnceCell<ConnectionManager>>>>> =
        OnceLock::new();
    CONNECTIONS.get_or_init(Default::default)
}

/// Whether `address` may be reached: a rule names its host exactly, or it
/// is a public IP literal a wildcard covers. Names only a wildcard covers
/// are refused: unlike HTTP, the Redis client resolves them itself, so an
/// internal address behind a public-looking name could not be ruled out.
fn allowed(allow: &AllowList, address: &str) -> bool {
    let Ok(uri) = address.parse::<http::Uri>() else { return false };
    let literal = uri.host().is_some_and(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok());
    match allow.reach(&uri) {
        Some(Reach::Named) => true,
        Some(Reach::Public) => literal,
        None => false,
    }
}

async fn open(address: &str) -> Result<ConnectionManager, Error> {
    let cell = connections().lock().unwrap().entry(address.to_string()).or_default().clone();
    let client = redis::Client::open(address).map_err(|_| Error::InvalidAddress)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1);
    let conn = cell
        .get_or_try_init(|| ConnectionManager::new_with_config(client, config))
        .await
        .map_err(|e| Error::Other(format!("cannot connect to {address}: {e}")))?;
    Ok(conn.clone())
}

fn conn<U>(store: &Accessor<U, Redis>, handle: &Resource<Connection>) -> wasmtime::Result<ConnectionManager> {
    store.with(|mut view| Ok(view.get().table.get(handle)?.0.clone()))
}

fn other(e: redis::RedisError) -> Error {
    Error::Other(e.to_string())
}

/// Runs `cmd` on the connection of `handle`.
async fn run<U, T: redis::FromRedisValue>(
    store: &Accessor<U, Redis>,
    handle: &Resource<Connection>,
    cmd: redis::Cmd,
) -> wasmtime::Result<Result<T, Error>> {
    let mut c = conn(store, handle)?;
    Ok(cmd.query_async::<T>(&mut c).await.map_err(|e| match e.kind() {
        redis::ErrorKind::UnexpectedReturnType => Error::TypeError,
        _ => other(e),
    }))
}

impl wit::Host for RedisView<'_> {}

impl wit::HostConnection for RedisView<'_> {
    fn drop(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl<U> wit::HostConnectionWithStore<U> for Redis {
    async fn open(store: &Accessor<U, Self>, address: String) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        if !store.with(|mut view| allowed(&view.get().ctx.allow, &address)) {
            return Ok(Err(Error::Other(format!(
                "{address} is not in the component's allowed_outbound_hosts (name the redis:// host and port)"
            ))));
        }
        let conn = match open(&address).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        store.with(|mut view| Ok(Ok(view.get().table.push(Connection(conn))?)))
    }

    async fn publish(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        run(store, &handle, redis::cmd("PUBLISH").arg(channel).arg(payload).clone()).await
    }

    async fn get(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        run(store, &handle, redis::cmd("GET").arg(key).clone()).await
    }

    async fn set(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        run(store, &handle, redis::cmd("SET").arg(key).arg(value).clone()).await
    }

    async fn incr(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        run(store, &handle, redis::cmd("INCR").arg(key).clone()).await
    }

    async fn del(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        run(store, &handle, redis::cmd("DEL").arg(keys).clone()).await
    }

    async fn sadd(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        run(store, &handle, redis::cmd("SADD").arg(key).arg(values).clone()).await
    }

    async fn smembers(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        run(store, &handle, redis::cmd("SMEMBERS").arg(key).clone()).await
    }

    async fn srem(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        run(store, &handle, redis::cmd("SREM").arg(key).arg(values).clone()).await
    }

    async fn execute(
        store: &Accessor<U, Self>,
        handle: Resource<Connection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let mut cmd = redis::cmd(&command);
        for a in arguments {
            match a {
                RedisParameter::Int64(n) => cmd.arg(n),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value: redis::Value = match run(store, &handle, cmd).await? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(results(value)))
    }
}

/// A reply as Spin's `execute` gives it: an array flattened into its
/// elements, everything else one result.
fn results(value: redis::Value) -> Vec<RedisResult> {
    use redis::Value;
    match value {
        Value::Array(items) | Value::Set(items) => items.into_iter().flat_map(results).collect(),
        Value::Nil => vec![RedisResult::Nil],
        Value::Int(n) => vec![RedisResult::Int64(n)],
        Value::BulkString(b) => vec![RedisResult::Binary(b)],
        Value::SimpleString(s) => vec![RedisResult::Status(s)],
        Value::Okay => vec![RedisResult::Status("OK".into())],
        Value::Boolean(b) => vec![RedisResult::Int64(b.into())],
        Value::Double(d) => vec![RedisResult::Binary(d.to_string().into_bytes())],
        Value::VerbatimString { text, .. } => vec![RedisResult::Binary(text.into_bytes())],
        other => vec![RedisResult::Binary(format!("{other:?}").into_bytes())],
    }
}

/// Adds `spin:redis/redis@3.0.0` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> RedisView<'_>,
) -> anyhow::Result<()> {
    wit::add_to_linker::<T, Redis>(linker, get)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_hosts_and_public_literals_are_reached() {
        let allow = AllowList::parse(&["redis://127.0.0.1:6379".into(), "redis://*:6380".into()]).unwrap();
        assert!(allowed(&allow, "redis://127.0.0.1:6379"));
        assert!(!allowed(&allow, "redis://127.0.0.1:6380"), "a wildcard never covers loopback");
        assert!(allowed(&allow, "redis://203.0.113.7:6380"));
        assert!(!allowed(&allow, "redis://cache.example:6380"), "names behind a wildcard could resolve inwards");
        assert!(!allowed(&allow, "redis://10.0.0.1:6379"));
        assert!(!allowed(&allow, "not a url"));
    }

    #[test]
    fn arrays_are_flattened_like_spin() {
        use redis::Value;
        let v = Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil, Value::Int(3)]);
        let got = results(v);
        assert!(
            matches!(got.as_slice(), [RedisResult::Binary(a), RedisResult::Nil, RedisResult::Int64(3)] if a == b"a"),
            "{got:?}"
        );
    }
}
