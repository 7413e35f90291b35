//! `spindle up --watch`: watches what `spin watch` watches (the manifest,
//! each component's `[component.X.build] watch` globs relative to its
//! workdir, and the `source` of components without a build command) plus
//! the runtime config file. On a change it rebuilds the components whose
//! globs matched and reloads. Changes are gathered until the files have
//! been quiet for a moment, so a save touching many files triggers one
//! rebuild; a failed build or reload leaves the serving app in place.

use crate::live::{LiveApp, Rebuild};
use crate::manifest::App;
use anyhow::Context;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the files must be quiet before a rebuild starts.
const QUIET: Duration = Duration::from_millis(400);

/// One component's watch globs, relative to `base`.
struct Globs {
    component: String,
    base: PathBuf,
    set: GlobSet,
}

/// What to watch for one manifest, and what a change to a path means.
struct Plan {
    /// The manifest and the runtime config: a change means "reload".
    files: Vec<PathBuf>,
    /// Sources of components without a build command: a change means
    /// "reload", unless one of our builds wrote it.
    sources: Vec<PathBuf>,
    globs: Vec<Globs>,
    /// Directories to watch, each with its recursion.
    roots: BTreeSet<(PathBuf, bool)>,
}

/// What a change to a path means.
#[derive(Debug, PartialEq)]
enum Change {
    None,
    /// A component's `.wasm` (often written by another component's build).
    Source,
    /// The manifest, the runtime config or a watched source file.
    Edit,
}

impl Plan {
    fn new(app: &App, runtime_config: Option<&Path>) -> anyhow::Result<Plan> {
        let dir = absolute(&app.dir);
        let mut plan = Plan { files: Vec::new(), sources: Vec::new(), globs: Vec::new(), roots: BTreeSet::new() };
        plan.files.push(absolute(&app.path));
        if let Some(rc) = runtime_config {
            plan.files.push(absolute(rc));
        }
        for (id, c) in &app.manifest.component {
            match &c.build {
                Some(build) if !build.watch.is_empty() => {
                    let base = dir.join(build.workdir.as_deref().unwrap_or("."));
                    let mut set = GlobSetBuilder::new();
                    for pattern in &build.watch {
                        // `*` stays within one folder, as in `spin watch`.
                        let glob = GlobBuilder::new(pattern)
                            .literal_separator(true)
                            .build()
                            .with_context(|| format!("component.{id}.build.watch: {pattern:?}"))?;
                        set.add(glob);
                        plan.roots.insert((base.join(literal_prefix(pattern)), true));
                    }
                    plan.globs.push(Globs { component: id.clone(), base, set: set.build()? });
                }
                Some(_) => {}
                None => plan.sources.push(absolute(&app.source_path(id))),
            }
        }
        for file in plan.files.iter().chain(&plan.sources) {
            if let Some(parent) = file.parent() {
                plan.roots.insert((parent.to_path_buf(), false));
            }
        }
        Ok(plan)
    }

    /// Adds to `rebuild` the components whose globs match `path`.
    fn classify(&self, path: &Path, rebuild: &mut BTreeSet<String>) -> Change {
        if self.sources.iter().any(|f| f == path) {
            return Change::Source;
        }
        let mut edit = self.files.iter().any(|f| f == path);
        for g in &self.globs {
            if let Ok(rel) = path.strip_prefix(&g.base)
                && g.set.is_match(rel)
            {
                rebuild.insert(g.component.clone());
                edit = true;
            }
        }
        if edit { Change::Edit } else { Change::None }
    }
}

/// The part of a glob before its first wildcard, as a directory.
fn literal_prefix(pattern: &str) -> PathBuf {
    let mut prefix = PathBuf::new();
    let parts: Vec<&str> = pattern.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last || part.contains(['*', '?', '[', '{']) {
            break;
        }
        prefix.push(part);
    }
    prefix
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

type Events = tokio::sync::mpsc::UnboundedReceiver<notify::Result<notify::Event>>;

/// A started watch: its watcher is registered when [`Watch::start`]
/// returns, so no change made after that is missed.
pub struct Watch {
    live: Arc<LiveApp>,
    runtime_config: Option<PathBuf>,
    watcher: notify::RecommendedWatcher,
    watched: BTreeSet<(PathBuf, bool)>,
    plan: Plan,
    events: Events,
}

impl Watch {
    pub fn start(live: Arc<LiveApp>, runtime_config: Option<PathBuf>) -> anyhow::Result<Watch> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let _ = tx.send(event);
        })
        .context("cannot watch files")?;
        let plan = Plan::new(&App::load(live.manifest_path())?, runtime_config.as_deref())?;
        let mut watch = Watch { live, runtime_config, watcher, watched: BTreeSet::new(), plan, events };
        watch.rewatch();
        eprintln!("Watching {} folder(s) for changes", watch.watched.len());
        Ok(watch)
    }

    /// Rebuilds and reloads on every change, until the process ends.
    pub async fn run(mut self) {
        let mut rebuild = BTreeSet::new();
        let mut pending = false;
        loop {
            if !self.next_change(&mut rebuild, pending).await {
                return;
            }
            let ids: Vec<String> = std::mem::take(&mut rebuild).into_iter().collect();
            if !ids.is_empty() {
                eprintln!("Changed: rebuilding {}", ids.join(", "));
            }
            let what = if ids.is_empty() { Rebuild::Nothing } else { Rebuild::Components(ids) };
            // Failures are logged and counted by the reload itself.
            let reloaded = self.live.reload(what, "watch").await.is_ok();
            // What arrived meanwhile: component sources our build wrote are
            // not a reason to reload again; an edit is.
            pending = false;
            while let Ok(event) = self.events.try_recv() {
                for path in event.map(|e| e.paths).unwrap_or_default() {
                    pending |= self.plan.classify(&path, &mut rebuild) == Change::Edit;
                }
            }
            if reloaded {
                let app = App::load(self.live.manifest_path());
                match app.and_then(|app| Plan::new(&app, self.runtime_config.as_deref())) {
                    Ok(p) => self.plan = p,
                    Err(e) => tracing::warn!("file watch: keeping the previous watch list: {e:#}"),
                }
                self.rewatch();
            }
        }
    }

    /// Waits for a change that needs a reload (at once if `pending`), then
    /// for quiet; false when the watcher is gone.
    async fn next_change(&mut self, rebuild: &mut BTreeSet<String>, pending: bool) -> bool {
        let mut wait = pending.then_some(QUIET);
        loop {
            let next = match wait {
                None => self.events.recv().await,
                Some(limit) => match tokio::time::timeout(limit, self.events.recv()).await {
                    Ok(next) => next,
                    Err(_) => return true,
                },
            };
            let Some(event) = next else { return false };
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("file watch: {e}");
                    continue;
                }
            };
            if !matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)) {
                continue;
            }
            for path in &event.paths {
                if self.plan.classify(path, rebuild) != Change::None {
                    wait = Some(QUIET);
                }
            }
        }
    }

    /// Brings the watched directories in line with the plan.
    fn rewatch(&mut self) {
        for old in self.watched.difference(&self.plan.roots).cloned().collect::<Vec<_>>() {
            let _ = self.watcher.unwatch(&old.0);
            self.watched.remove(&old);
        }
        for (dir, recursive) in &self.plan.roots {
            if self.watched.contains(&(dir.clone(), *recursive)) {
                continue;
            }
            let mode = if *recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
            match self.watcher.watch(dir, mode) {
                Ok(()) => {
                    self.watched.insert((dir.clone(), *recursive));
                }
                Err(e) => tracing::warn!("file watch: cannot watch {}: {e}", dir.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_is_watched_from_its_literal_directory() {
        assert_eq!(literal_prefix("components/**/*.rs"), PathBuf::from("components"));
        assert_eq!(literal_prefix("wit/**/*.wit"), PathBuf::from("wit"));
        assert_eq!(literal_prefix("web/package-lock.json"), PathBuf::from("web"));
        assert_eq!(literal_prefix("*.py"), PathBuf::from(""));
    }
}
