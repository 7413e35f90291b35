//! `--build`: runs each component's `[component.ID.build] command`, as
//! `spin build` does, from the component's `workdir` (default: the
//! manifest's folder).
//!
//! A command that builds for a wasm target (`wasm32-wasip2` in the text)
//! needs that target's standard library, which rustup installs with a
//! toolchain from `rust-toolchain.toml` but not into a toolchain that was
//! already there ("can't find crate for `core`"). Before such a command
//! runs, the target is looked up in `rustc --print sysroot` and added with
//! `rustup target add` when missing; without rustup the build stops with
//! the command to run.

use crate::manifest::App;
use anyhow::{Context, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn build_all(app: &App) -> anyhow::Result<()> {
    build(app, |_| true)
}

/// The components the app runs: those its routes name, and their
/// dependencies (what `up --build` builds; `spindle build` builds all).
pub fn in_use(app: &App) -> Vec<String> {
    let mut used: Vec<String> = app.manifest.trigger.http.iter().map(|t| t.component.clone()).collect();
    let mut i = 0;
    while i < used.len() {
        if let Some(c) = app.manifest.component.get(&used[i]) {
            for dep in c.dependencies.values() {
                if let Some(d) = &dep.component
                    && !used.contains(d)
                {
                    used.push(d.clone());
                }
            }
        }
        i += 1;
    }
    used
}

/// Runs the build commands of the components `ids` only.
pub fn build_some(app: &App, ids: &[String]) -> anyhow::Result<()> {
    build(app, |id| ids.iter().any(|i| i == id))
}

fn build(app: &App, wanted: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let tools = Tools::from_env();
    // Components sharing one command (a cargo workspace build) run it once.
    let mut done: Vec<(String, std::path::PathBuf)> = Vec::new();
    for (id, component) in &app.manifest.component {
        let Some(build) = component.build.as_ref().filter(|_| wanted(id)) else {
            continue;
        };
        let dir = app.dir.join(build.workdir.as_deref().unwrap_or("."));
        if done.iter().any(|(c, d)| *c == build.command && *d == dir) {
            eprintln!("  {id}: built by the command above");
            continue;
        }
        ensure_targets(&tools, &dir, &wasm_targets(&build.command))
            .with_context(|| format!("component.{id}.build: `{}`", build.command))?;
        eprintln!("Building component {id} with `{}`", build.command);
        let status =
            Command::new("sh").arg("-c").arg(&build.command).current_dir(&dir).status().with_context(|| {
                format!("component.{id}.build: cannot run `{}` in {}", build.command, dir.display())
            })?;
        if !status.success() {
            bail!("component.{id}.build: `{}` failed ({status})", build.command);
        }
        done.push((build.command.clone(), dir));
    }
    eprintln!("Finished building all components");
    Ok(())
}

/// The wasm targets a build command names (`wasm32-wasip2`,
/// `wasm32-unknown-unknown`, ...), each once, in order.
fn wasm_targets(command: &str) -> Vec<String> {
    let mut targets: Vec<String> = Vec::new();
    let words = command.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
    for word in words {
        let word = word.trim_end_matches(['.', '-']);
        let is_target = ["wasm32-", "wasm64-"].iter().any(|p| word.len() > p.len() && word.starts_with(p));
        if is_target && !targets.iter().any(|t| t == word) {
            targets.push(word.to_string());
        }
    }
    targets
}

/// The programs the target check runs (parameters so tests can fake them).
struct Tools {
    /// `$RUSTC` if set (cargo honours it too), else `rustc`.
    rustc: OsString,
    rustup: OsString,
}

impl Tools {
    fn from_env() -> Self {
        Tools { rustc: std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()), rustup: "rustup".into() }
    }
}

/// The active toolchain's sysroot as seen from `dir` (where a
/// `rust-toolchain.toml` picks the toolchain).
fn sysroot(tools: &Tools, dir: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(&tools.rustc)
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "cannot run `{} --print sysroot`: is Rust installed? (https://rustup.rs)",
                tools.rustc.to_string_lossy()
            )
        })?;
    if !out.status.success() {
        bail!("`{} --print sysroot` failed ({})", tools.rustc.to_string_lossy(), out.status);
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The targets whose standard library is not in `sysroot`.
fn missing_targets<'a>(sysroot: &Path, targets: &'a [String]) -> Vec<&'a str> {
    targets.iter().map(String::as_str).filter(|t| !sysroot.join("lib/rustlib").join(t).is_dir()).collect()
}

/// Makes sure every target in `targets` is installed for the toolchain that
/// builds in `dir`: adds the missing ones with rustup, or fails saying
/// exactly what to run.
fn ensure_targets(tools: &Tools, dir: &Path, targets: &[String]) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let root = sysroot(tools, dir)?;
    let missing = missing_targets(&root, targets);
    if missing.is_empty() {
        return Ok(());
    }
    let add = format!("rustup target add {}", missing.join(" "));
    let has_rustup = Command::new(&tools.rustup)
        .arg("--version")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_rustup {
        bail!(
            "the Rust standard library for {} is not installed (no {}); run `{add}` (or install it with your Rust distribution)",
            missing.join(", "),
            root.join("lib/rustlib").join(missing[0]).display()
        );
    }
    eprintln!("Target {} missing from {}: running `{add}`", missing.join(", "), root.display());
    let status = Command::new(&tools.rustup)
        .args(["target", "add"])
        .args(&missing)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run `{add}`"))?;
    if !status.success() {
        bail!("`{add}` failed ({status}); run it yourself, then build again");
    }
    // rustup may have installed into another toolchain than the one `rustc`
    // runs (a distribution's rustc next to rustup): check again.
    let root = sysroot(tools, dir)?;
    let still = missing_targets(&root, targets);
    if !still.is_empty() {
        bail!(
            "`{add}` succeeded but {} is still missing from {}, the sysroot of `{}`; install the target for that toolchain",
            still.join(", "),
            root.display(),
            tools.rustc.to_string_lossy()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_the_wasm_targets_a_command_names() {
        let cmd = "(test -d web/node_modules || npm ci) && cargo build --target wasm32-wasip2 --release -p gateway";
        assert_eq!(wasm_targets(cmd), ["wasm32-wasip2"]);
        assert_eq!(
            wasm_targets("cargo build --target=wasm32-wasip1 && cp target/wasm32-wasip1/release/a.wasm ."),
            ["wasm32-wasip1"]
        );
        assert!(wasm_targets("npm run build && tsc --target es2020").is_empty());
    }

    /// A folder holding a fake sysroot and fake `rustc` and (optionally)
    /// `rustup` scripts; the fake rustup creates the target's folder.
    fn fake(name: &str, with_rustup: bool, installed: bool) -> (PathBuf, Tools) {
        let dir = std::env::temp_dir().join(format!("spindle-builder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("sysroot");
        std::fs::create_dir_all(root.join("lib/rustlib/x86_64-unknown-linux-gnu")).unwrap();
        if installed {
            std::fs::create_dir_all(root.join("lib/rustlib/wasm32-wasip2")).unwrap();
        }
        let script = |file: &str, body: String| {
            let path = dir.join(file);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let rustc = script("rustc", format!("echo {}", root.display()));
        let rustup = if with_rustup {
            script(
                "rustup",
                format!(
                    "echo \"$@\" >> {log}\n[ \"$1\" = target ] && mkdir -p {root}/lib/rustlib/$3\nexit 0",
                    log = dir.join("rustup.log").display(),
                    root = root.display()
                ),
            )
        } else {
            dir.join("no-such-rustup")
        };
        (dir, Tools { rustc: rustc.into(), rustup: rustup.into() })
    }

    #[test]
    fn an_installed_target_needs_nothing() {
        let (dir, tools) = fake("installed", false, true);
        ensure_targets(&tools, &dir, &["wasm32-wasip2".into()]).unwrap();
    }

    #[test]
    fn a_missing_target_is_added_with_rustup() {
        let (dir, tools) = fake("add", true, false);
        ensure_targets(&tools, &dir, &["wasm32-wasip2".into()]).unwrap();
        let log = std::fs::read_to_string(dir.join("rustup.log")).unwrap();
        assert!(log.contains("target add wasm32-wasip2"), "{log}");
        assert!(dir.join("sysroot/lib/rustlib/wasm32-wasip2").is_dir());
    }

    #[test]
    fn without_rustup_the_error_says_what_to_run() {
        let (dir, tools) = fake("norustup", false, false);
        let err = format!("{:#}", ensure_targets(&tools, &dir, &["wasm32-wasip2".into()]).unwrap_err());
        assert!(err.contains("run `rustup target add wasm32-wasip2`"), "{err}");
        assert!(err.contains("lib/rustlib/wasm32-wasip2"), "{err}");
    }
}
