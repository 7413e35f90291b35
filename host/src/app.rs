//! Turns a manifest into running components: resolves variables and
//! allow-lists, composes dependencies, compiles, tries one instance of each
//! and builds the route table. [`Platform`] is what every load shares (the
//! engine, the HTTP client, cancellation, metrics); [`LoadedApp`] is one
//! load's result, replaced whole by a reload.

use crate::cancel::Registry;
use crate::compose;
use crate::kv::{KvContext, Stores};
use crate::manifest::App;
use crate::observe::Observer;
use crate::outbound::{AllowList, Outbound, SharedClient};
use crate::routes::Pattern;
use crate::runtime::{self, ComponentConfig, ComponentRuntime, Handler, Limits};
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::handler::ProxyHandler;

/// What every load of an app shares, for the life of the process.
pub struct Platform {
    engine: Engine,
    linker: Linker<runtime::StoreData>,
    client: SharedClient,
    pub cancel: Registry,
    pub observer: Observer,
    limits: Limits,
}

impl Platform {
    pub fn new(cache_dir: Option<&Path>, limits: &Limits, observer: Observer) -> anyhow::Result<Self> {
        let engine = runtime::engine(cache_dir, limits)?;
        let linker = runtime::linker(&engine)?;
        Ok(Platform {
            engine,
            linker,
            client: SharedClient::new(),
            cancel: Registry::default(),
            observer,
            limits: limits.clone(),
        })
    }

    /// Loads every HTTP component of `app`. Nothing is served from the
    /// result until the caller installs it, so an error here leaves the
    /// running app untouched.
    pub async fn load(&self, app: &Arc<App>, stores: Stores) -> anyhow::Result<LoadedApp> {
        let resolver = crate::variables::Resolver::new(&app.manifest, |k| std::env::var(k).ok())?;
        crate::preflight::warn_unreachable_urls(&app.manifest, &resolver);
        let mut revision = Sha256::new();
        let mut handlers: HashMap<String, Arc<Handler>> = HashMap::new();
        let mut routes = Vec::new();
        for trigger in &app.manifest.trigger.http {
            let id = &trigger.component;
            revision.update(format!("route {} {id}\n", trigger.route));
            if !handlers.contains_key(id) {
                let (handler, digest) = self.load_component(app, &resolver, &stores, id).await?;
                revision.update(digest);
                handlers.insert(id.clone(), Arc::new(handler));
            }
            routes.push((Pattern::parse(&trigger.route), id.clone(), handlers[id].clone()));
        }
        // Variables change what the app answers; secrets do not, and their
        // values must not be recoverable from a published hash.
        for (name, def) in &app.manifest.variables {
            if !def.secret {
                revision.update(format!("var {name}={}\n", resolver.get(name).unwrap_or_default()));
            }
        }
        let revision = revision.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
        self.observer.metrics.apps_loaded.inc();
        Ok(LoadedApp { routes, revision, gauge: self.observer.metrics.apps_loaded.clone() })
    }

    /// Composes, compiles and tries one instance of component `id`; returns
    /// its handler and a digest of what it runs.
    async fn load_component(
        &self,
        app: &Arc<App>,
        resolver: &crate::variables::Resolver,
        stores: &Stores,
        id: &str,
    ) -> anyhow::Result<(Handler, Vec<u8>)> {
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
        eprintln!("Composing component {id} with its dependencies and compiling it (cached after the first start)...");
        // The templates, not their values: the app variables they name are
        // hashed by the caller, secrets left out.
        let mut digest = Sha256::new();
        digest.update(format!("{:?}{:?}{:?}", c.variables, c.environment, c.allowed_outbound_hosts));
        let config = ComponentConfig {
            outbound: Outbound {
                allow: Arc::new(allow),
                client: self.client.clone(),
                cancel: self.cancel.clone(),
                metrics: self.observer.metrics.clone(),
            },
            variables,
            environment: c.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            instances: self.observer.metrics.instances.clone(),
            kv: KvContext::new(stores.clone(), c.key_value_stores.clone()),
        };
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let limits = self.limits.clone();
        let (app, owned_id) = (app.clone(), id.to_string());
        // Composing and compiling take seconds of CPU: off the async
        // workers, so open streams keep flowing during a reload.
        let (runtime, wasm) = tokio::task::spawn_blocking(move || {
            let wasm = compose::compose(&app, &owned_id)?;
            ComponentRuntime::new(&owned_id, &engine, &linker, &wasm, config, limits).map(|r| (r, wasm))
        })
        .await
        .context("the compile task panicked")??;
        digest.update(&wasm);
        let size = wasm.len();
        runtime.try_instance().await.with_context(|| format!("component {id:?} cannot be instantiated"))?;
        eprintln!("Loaded component {id} ({} KiB composed) in {} ms", size / 1024, started.elapsed().as_millis());
        Ok((ProxyHandler::new(runtime), digest.finalize().to_vec()))
    }
}

/// One loaded app: its routes and the handlers behind them. Every response
/// holds its app, so an app replaced by a reload lives on until its last
/// stream ends.
pub struct LoadedApp {
    pub routes: Vec<(Pattern, String, Arc<Handler>)>,
    /// A short hash of the composed components, routes and variables.
    pub revision: String,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for LoadedApp {
    fn drop(&mut self) {
        self.gauge.dec();
        tracing::info!(revision = %self.revision, "app released: its last request has ended");
    }
}
