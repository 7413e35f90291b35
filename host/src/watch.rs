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
use globset::{Glob, GlobSet, GlobSetBuilder};
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
    /// Files whose change means "reload" (no build).
    files: Vec<PathBuf>,
    globs: Vec<Globs>,
    /// Directories to watch, each with its recursion.
    roots: BTreeSet<(PathBuf, bool)>,
}

impl Plan {
    fn new(app: &App, runtime_config: Option<&Path>) -> anyhow::Result<Plan> {
        let dir = absolute(&app.dir);
        let mut plan = Plan { files: Vec::new(), globs: Vec::new(), roots: BTreeSet::new() };
        plan.file(absolute(&app.path));
        if let Some(rc) = runtime_config {
            plan.file(absolute(rc));
        }
        for (id, c) in &app.manifest.component {
            match &c.build {
                Some(build) if !build.watch.is_empty() => {
                    let base = dir.join(build.workdir.as_deref().unwrap_or("."));
                    let mut set = GlobSetBuilder::new();
                    for pattern in &build.watch {
                        set.add(
                            Glob::new(pattern).with_context(|| format!("component.{id}.build.watch: {pattern:?}"))?,
                        );
                        plan.roots.insert((base.join(literal_prefix(pattern)), true));
                    }
                    plan.globs.push(Globs { component: id.clone(), base, set: set.build()? });
                }
                Some(_) => {}
                None => plan.file(absolute(&app.source_path(id))),
            }
        }
        Ok(plan)
    }

    fn file(&mut self, path: PathBuf) {
        if let Some(parent) = path.parent() {
            self.roots.insert((parent.to_path_buf(), false));
        }
        self.files.push(path);
    }

    /// Adds to `rebuild` the components whose globs match `path`; true if
    /// the path is one whose change needs a reload.
    fn classify(&self, path: &Path, rebuild: &mut BTreeSet<String>) -> bool {
        let mut relevant = self.files.iter().any(|f| f == path);
        for g in &self.globs {
            if let Ok(rel) = path.strip_prefix(&g.base)
                && g.set.is_match(rel)
            {
                rebuild.insert(g.component.clone());
                relevant = true;
            }
        }
        relevant
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

/// Watches until the process ends.
pub async fn run(live: Arc<LiveApp>, runtime_config: Option<PathBuf>) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    })
    .context("cannot watch files")?;
    let mut plan = load_plan(&live, runtime_config.as_deref())?;
    let mut watched = BTreeSet::new();
    rewatch(&mut watcher, &mut watched, &plan);
    eprintln!("Watching {} path(s) for changes", watched.len());
    loop {
        let mut rebuild = BTreeSet::new();
        let mut reload = false;
        // Wait for a relevant change, then for quiet.
        let mut wait = None;
        loop {
            let next = match wait {
                None => rx.recv().await,
                Some(limit) => match tokio::time::timeout(limit, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some(event) = next else { return Ok(()) };
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
                if plan.classify(path, &mut rebuild) {
                    reload = true;
                    wait = Some(QUIET);
                }
            }
        }
        if !reload {
            continue;
        }
        let ids: Vec<String> = rebuild.into_iter().collect();
        if !ids.is_empty() {
            eprintln!("Changed: rebuilding {}", ids.join(", "));
        }
        let rebuild = if ids.is_empty() { Rebuild::Nothing } else { Rebuild::Components(ids) };
        // Failures are logged and counted by the reload itself.
        if live.reload(rebuild, "watch").await.is_ok() {
            match load_plan(&live, runtime_config.as_deref()) {
                Ok(p) => plan = p,
                Err(e) => tracing::warn!("file watch: keeping the previous watch list: {e:#}"),
            }
            rewatch(&mut watcher, &mut watched, &plan);
        }
    }
}

fn load_plan(live: &LiveApp, runtime_config: Option<&Path>) -> anyhow::Result<Plan> {
    Plan::new(&App::load(live.manifest_path())?, runtime_config)
}

/// Brings the watched directories in line with `plan`.
fn rewatch(watcher: &mut impl Watcher, watched: &mut BTreeSet<(PathBuf, bool)>, plan: &Plan) {
    for old in watched.difference(&plan.roots).cloned().collect::<Vec<_>>() {
        let _ = watcher.unwatch(&old.0);
        watched.remove(&old);
    }
    for (dir, recursive) in &plan.roots {
        if watched.contains(&(dir.clone(), *recursive)) {
            continue;
        }
        let mode = if *recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
        match watcher.watch(dir, mode) {
            Ok(()) => {
                watched.insert((dir.clone(), *recursive));
            }
            Err(e) => tracing::warn!("file watch: cannot watch {}: {e}", dir.display()),
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
