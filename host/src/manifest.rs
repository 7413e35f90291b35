//! The Spin application manifest (v2), the subset Spindle runs.
//!
//! Field names and meanings follow Spin's `crates/manifest/src/schema/v2.rs`.
//! Every table denies unknown keys, so a typo is an error that names the
//! file, the key and its line instead of a silently ignored setting.

// Some fields are part of the schema (accepted and validated) without
// driving spindle behaviour, e.g. `application.authors` or `build.watch`.
#![allow(dead_code)]

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed `spin.toml` and the folder its relative paths start from.
#[derive(Debug)]
pub struct App {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must be 2.
    pub spin_manifest_version: u32,
    pub application: Application,
    /// Application variables, resolved from defaults and `SPIN_VARIABLE_*`.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// Secret values are never printed.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    #[serde(default)]
    pub id: Option<String>,
    /// `/exact/path` or `/prefix/...` (a wildcard tail).
    pub route: String,
    pub component: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub source: Source,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Component configuration; values may be `{{ app_variable }}` templates.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub build: Option<Build>,
    /// Imports of this component satisfied by other components.
    #[serde(default)]
    pub dependencies: BTreeMap<String, Dependency>,
    /// Give every dependency this component's capabilities.
    #[serde(default)]
    pub dependencies_inherit_configuration: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Path(String),
    Remote { url: String, digest: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    pub command: String,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}

/// What satisfies an import: another component of this manifest or a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// The export to use when it is not named like the import.
    #[serde(default)]
    pub export: Option<String>,
    #[serde(default)]
    pub inherit_configuration: Option<Inherit>,
}

/// `inherit_configuration = true` or a list of capability names.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Inherit {
    All(bool),
    Some(Vec<String>),
}

impl App {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<App> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let app = App { manifest, dir, path: path.to_path_buf() };
        app.check().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(app)
    }

    fn check(&self) -> anyhow::Result<()> {
        let m = &self.manifest;
        if m.spin_manifest_version != 2 {
            bail!("spin_manifest_version: only version 2 is supported, found {}", m.spin_manifest_version);
        }
        if m.trigger.http.is_empty() {
            bail!("no [[trigger.http]]: nothing to serve");
        }
        for t in &m.trigger.http {
            if !m.component.contains_key(&t.component) {
                bail!("trigger.http route {:?}: component {:?} is not defined", t.route, t.component);
            }
            if !t.route.starts_with('/') {
                bail!("trigger.http route {:?} must start with `/`", t.route);
            }
        }
        for (id, c) in &m.component {
            for (name, dep) in &c.dependencies {
                match (&dep.component, &dep.path) {
                    (Some(other), None) => {
                        if !m.component.contains_key(other) {
                            bail!("component.{id}.dependencies.{name:?}: component {other:?} is not defined");
                        }
                    }
                    (None, Some(_)) => {}
                    _ => bail!("component.{id}.dependencies.{name:?}: give exactly one of `component` or `path`"),
                }
                if dep.inherit_configuration.is_some() && c.dependencies_inherit_configuration {
                    bail!(
                        "component.{id}: `dependencies_inherit_configuration` and dependencies.{name:?}.inherit_configuration cannot be used together"
                    );
                }
            }
            if let Source::Remote { url, .. } = &c.source {
                bail!(
                    "component.{id}.source: remote sources ({url}) are not supported by spindle; build or download the file and give its path"
                );
            }
            for store in &c.key_value_stores {
                if store != "default" {
                    bail!("component.{id}.key_value_stores: only the `default` store is available, not {store:?}");
                }
            }
        }
        Ok(())
    }

    /// The component's `.wasm` file.
    pub fn source_path(&self, id: &str) -> PathBuf {
        match &self.manifest.component[id].source {
            Source::Path(p) => self.dir.join(p),
            Source::Remote { .. } => unreachable!("rejected by App::check"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<App> {
        let dir = std::env::temp_dir().join(format!("spindle-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("spin-{}.toml", text.len()));
        std::fs::write(&path, text)?;
        App::load(&path)
    }

    const OK: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[[trigger.http]]
route = "/..."
component = "gw"
[component.gw]
source = "gw.wasm"
"#;

    #[test]
    fn accepts_a_minimal_manifest() {
        let app = parse(OK).unwrap();
        assert_eq!(app.manifest.trigger.http[0].component, "gw");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse(&OK.replace("source = ", "sourc = \"x\"\nsource = ")).unwrap_err().to_string();
        assert!(err.contains("unknown field `sourc`"), "{err}");
        assert!(err.contains(".toml"), "{err}");
    }

    #[test]
    fn dangling_references_are_errors() {
        let err = parse(&OK.replace("component = \"gw\"", "component = \"nope\"")).unwrap_err().to_string();
        assert!(err.contains("\"nope\" is not defined"), "{err}");
    }
}
