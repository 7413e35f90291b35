//! The app being served, and replacing it while it serves. A reload
//! (`--watch`, SIGHUP, `POST /admin/reload`) re-reads the manifest, the
//! runtime config and the variables, optionally rebuilds, then composes,
//! compiles and tries every component off to the side. Only when all of
//! that succeeded do new requests go to the new app, in one atomic swap;
//! open streams finish on the app they started on, which is released with
//! its last stream. A failed reload changes nothing.

use crate::app::{LoadedApp, Platform};
use crate::builder;
use crate::kv::Stores;
use crate::manifest::App;
use crate::metrics::OutcomeLabels;
use anyhow::Context;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a reload rebuilds first.
#[derive(Debug, Clone, PartialEq)]
pub enum Rebuild {
    Nothing,
    /// These components' build commands (each distinct command once).
    Components(Vec<String>),
}

/// A reload's result.
#[derive(Debug, serde::Serialize)]
pub struct Reloaded {
    /// Whether the new app differs from the one it replaced (a reload
    /// with nothing changed on disk still starts fresh instances).
    pub changed: bool,
    pub revision: String,
    pub previous: String,
    pub millis: u64,
}

pub struct LiveApp {
    current: ArcSwap<LoadedApp>,
    pub platform: Platform,
    manifest: PathBuf,
    runtime_config: Option<PathBuf>,
    /// The runtime config's text and the stores made from it: kept across
    /// reloads while the text is unchanged, so in-memory stores and Redis
    /// connections survive a reload.
    stores: Mutex<(Option<String>, Stores)>,
    /// One reload at a time; a request for another waits and then loads
    /// whatever is on disk by then.
    reloading: tokio::sync::Mutex<()>,
}

impl LiveApp {
    /// Loads the app for the first time.
    pub async fn start(platform: Platform, app: &Arc<App>, runtime_config: Option<&Path>) -> anyhow::Result<LiveApp> {
        let text = read_runtime_config(runtime_config)?;
        let stores = Stores::load(runtime_config)?;
        let loaded = platform.load(app, stores.clone()).await?;
        tracing::info!(revision = %loaded.revision, "app loaded");
        Ok(LiveApp {
            current: ArcSwap::from_pointee(loaded),
            platform,
            manifest: app.path.clone(),
            runtime_config: runtime_config.map(Path::to_path_buf),
            stores: Mutex::new((text, stores)),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The app new requests go to.
    pub fn current(&self) -> Arc<LoadedApp> {
        self.current.load_full()
    }

    pub fn manifest_path(&self) -> &Path {
        &self.manifest
    }

    /// Reloads from disk, after any reload already running; on any error
    /// the serving app stays.
    pub async fn reload(&self, rebuild: Rebuild, why: &str) -> anyhow::Result<Reloaded> {
        let one = self.reloading.lock().await;
        self.reload_locked(one, rebuild, why).await
    }

    /// Like [`Self::reload`], but `None` at once if a reload is running.
    pub async fn try_reload(&self, rebuild: Rebuild, why: &str) -> anyhow::Result<Option<Reloaded>> {
        match self.reloading.try_lock() {
            Ok(one) => self.reload_locked(one, rebuild, why).await.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn reload_locked(
        &self,
        _one: tokio::sync::MutexGuard<'_, ()>,
        rebuild: Rebuild,
        why: &str,
    ) -> anyhow::Result<Reloaded> {
        let started = Instant::now();
        tracing::info!(trigger = why, "reloading {}", self.manifest.display());
        let result = self.load_new(rebuild).await;
        let count = |outcome: &str| {
            self.platform.observer.metrics.reloads.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
        };
        let previous = self.current().revision.clone();
        match result {
            Ok(loaded) => {
                let revision = loaded.revision.clone();
                self.current.store(Arc::new(loaded));
                count("ok");
                let millis = started.elapsed().as_millis() as u64;
                tracing::info!(%revision, %previous, millis, "reloaded: new requests go to the new app");
                eprintln!("Reloaded in {millis} ms: revision {revision} (was {previous})");
                Ok(Reloaded { changed: revision != previous, revision, previous, millis })
            }
            Err(e) => {
                count("failed");
                tracing::error!(revision = %previous, "reload failed, still serving the previous app: {e:#}");
                Err(e)
            }
        }
    }

    async fn load_new(&self, rebuild: Rebuild) -> anyhow::Result<LoadedApp> {
        let manifest = self.manifest.clone();
        let app = tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<App>> {
            let app = Arc::new(App::load(&manifest)?);
            if let Rebuild::Components(ids) = &rebuild {
                builder::build_some(&app, ids)?;
            }
            Ok(app)
        })
        .await
        .context("the build task panicked")??;
        let stores = self.stores_for_reload()?;
        self.platform.load(&app, stores).await
    }

    fn stores_for_reload(&self) -> anyhow::Result<Stores> {
        let text = read_runtime_config(self.runtime_config.as_deref())?;
        let mut kept = self.stores.lock().unwrap();
        if kept.0 != text {
            *kept = (text, Stores::load(self.runtime_config.as_deref())?);
        }
        Ok(kept.1.clone())
    }
}

fn read_runtime_config(path: Option<&Path>) -> anyhow::Result<Option<String>> {
    path.map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))).transpose()
}
