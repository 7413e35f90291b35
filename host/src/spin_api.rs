//! Host bindings for the Spin interfaces `spindle` serves beyond WASI
//! (`wit/host.wit`): variables and key-value.

wasmtime::component::bindgen!({
    path: "wit",
    world: "spindle:host/host",
    imports: { default: trappable },
    with: {
        "spin:key-value/key-value.store": crate::kv::StoreHandle,
    },
});

pub use spin::key_value::key_value;
pub use spin::variables::variables;
