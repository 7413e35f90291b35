//! Turns a manifest into running components: resolves variables and
//! allow-lists, composes dependencies, compiles, and builds the router.

use crate::cancel::Registry;
use crate::compose;
use crate::kv::{KvContext, Stores};
use crate::manifest::App;
use crate::observe::Observer;
use crate::outbound::{AllowList, Outbound, SharedClient};
use crate::routes::Pattern;
use crate::runtime::{self, ComponentConfig, ComponentRuntime, Handler, Limits};
use crate::server::{Server, Settings};
use crate::variables::Resolver;
use anyhow::Context;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use wasmtime_wasi_http::handler::ProxyHandler;

/// Loads every HTTP component of `app` and returns the server for them.
pub fn load(
    app: &App,
    cache_dir: Option<&Path>,
    limits: &Limits,
    settings: Settings,
    observer: Observer,
    stores: Stores,
) -> anyhow::Result<Server> {
    let resolver = Resolver::new(&app.manifest, |k| std::env::var(k).ok())?;
    crate::preflight::warn_unreachable_urls(&app.manifest, &resolver);
    let engine = runtime::engine(cache_dir, limits)?;
    let linker = runtime::linker(&engine)?;
    let client = SharedClient::new();
    let cancel = Registry::default();
    let mut handlers: HashMap<String, Arc<Handler>> = HashMap::new();
    let mut routes = Vec::new();
    for trigger in &app.manifest.trigger.http {
        let id = &trigger.component;
        if !handlers.contains_key(id) {
            let c = &app.manifest.component[id];
            let hosts = c
                .allowed_outbound_hosts
                .iter()
                .map(|h| resolver.expand(h))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("component.{id}.allowed_outbound_hosts"))?;
            let allow = AllowList::parse(&hosts).with_context(|| format!("component.{id}"))?;
            let variables = resolver.component_values(id, c)?;
            let started = std::time::Instant::now();
            eprintln!(
                "Composing component {id} with its dependencies and compiling it (cached after the first start)..."
            );
            let wasm = compose::compose(app, id)?;
            let config = ComponentConfig {
                outbound: Outbound {
                    allow: Arc::new(allow),
                    client: client.clone(),
                    cancel: cancel.clone(),
                    metrics: observer.metrics.clone(),
                },
                variables,
                environment: c.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                instances: observer.metrics.instances.clone(),
                kv: KvContext::new(stores.clone(), c.key_value_stores.clone()),
            };
            let runtime = ComponentRuntime::new(id, &engine, &linker, &wasm, config, limits.clone())?;
            eprintln!(
                "Loaded component {id} ({} KiB composed) in {} ms",
                wasm.len() / 1024,
                started.elapsed().as_millis()
            );
            handlers.insert(id.clone(), Arc::new(ProxyHandler::new(runtime)));
        }
        routes.push((Pattern::parse(&trigger.route), id.clone(), handlers[id].clone()));
    }
    Ok(Server::new(routes, cancel, observer, settings))
}
