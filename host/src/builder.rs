//! `--build`: runs each component's `[component.ID.build] command`, as
//! `spin build` does, from the component's `workdir` (default: the
//! manifest's folder).

use crate::manifest::App;
use anyhow::{Context, bail};
use std::process::Command;

pub fn build_all(app: &App) -> anyhow::Result<()> {
    // Components sharing one command (a cargo workspace build) run it once.
    let mut done: Vec<(String, std::path::PathBuf)> = Vec::new();
    for (id, component) in &app.manifest.component {
        let Some(build) = &component.build else {
            continue;
        };
        let dir = app.dir.join(build.workdir.as_deref().unwrap_or("."));
        if done.iter().any(|(c, d)| *c == build.command && *d == dir) {
            eprintln!("  {id}: built by the command above");
            continue;
        }
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
