//! Host bindings for the Spin interfaces `spindle` serves beyond WASI
//! (`wit/host.wit`): variables, key-value and outbound Redis.

wasmtime::component::bindgen!({
    path: "wit",
    world: "spindle:host/host",
    imports: { default: trappable },
    with: {
        "spin:key-value/key-value.store": crate::kv::StoreHandle,
        "spin:redis/redis.connection": crate::redis_outbound::Connection,
    },
});

pub use spin::key_value::key_value;
pub use spin::redis::redis;
pub use spin::variables::variables;
