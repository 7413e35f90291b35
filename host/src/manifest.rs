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
        Self::parse(&text, path)
    }

    /// Parses and checks `text`, the contents of `path`.
    fn parse(text: &str, path: &Path) -> anyhow::Result<App> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
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

    /// Property tests: arbitrary input is an error or a checked app, never
    /// a panic. Bounded so that they run in seconds.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() }
        }

        /// A TOML value of the kinds the manifest uses, and some it does not.
        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("2".to_string()),
                Just("true".to_string()),
                Just("-1".to_string()),
                Just("1.5".to_string()),
                Just("\"gw\"".to_string()),
                Just("\"/...\"".to_string()),
                Just("\"default\"".to_string()),
                Just("\"x.wasm\"".to_string()),
                Just("{ url = \"https://x\", digest = \"sha256:0\" }".to_string()),
                Just("{ component = \"gw\" }".to_string()),
                Just("{ path = \"d.wasm\", component = \"gw\" }".to_string()),
                "[a-z/.{}*]{0,10}".prop_map(|s| format!("{s:?}")),
                any::<String>().prop_map(|s| format!("{s:?}")),
                any::<i64>().prop_map(|n| n.to_string()),
            ];
            leaf.prop_recursive(2, 8, 4, |inner| {
                prop::collection::vec(inner, 0..4).prop_map(|v| format!("[{}]", v.join(", ")))
            })
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("spin_manifest_version"),
                Just("name"),
                Just("route"),
                Just("component"),
                Just("source"),
                Just("allowed_outbound_hosts"),
                Just("key_value_stores"),
                Just("variables"),
                Just("environment"),
                Just("dependencies"),
                Just("dependencies_inherit_configuration"),
                Just("inherit_configuration"),
                Just("default"),
                Just("required"),
                Just("command"),
                Just("path"),
                Just("export"),
                Just("\"a:b/c@1.0\""),
            ]
            .prop_map(str::to_string)
        }

        fn header() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("[application]".to_string()),
                Just("[[trigger.http]]".to_string()),
                Just("[component.gw]".to_string()),
                Just("[component.other]".to_string()),
                Just("[component.gw.build]".to_string()),
                Just("[component.gw.dependencies]".to_string()),
                Just("[component.gw.variables]".to_string()),
                Just("[variables]".to_string()),
                Just("[variables.v]".to_string()),
                Just("[trigger]".to_string()),
            ]
        }

        /// Lines of TOML-ish text: headers, `key = value`, and noise.
        fn manifest_text() -> impl Strategy<Value = String> {
            let line = prop_oneof![
                3 => (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")),
                1 => header(),
                1 => "[ -~]{0,24}",
                1 => any::<String>(),
            ];
            prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
        }

        /// A TOML string holding `s`, whatever it contains.
        fn quoted(s: &str) -> String {
            toml::Value::String(s.to_string()).to_string()
        }

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![Just("gw".to_string()), Just("b".to_string()), "[a-z-]{0,4}", any::<String>()]
        }

        /// Manifests of the right shape with contents anywhere from valid to
        /// wrong in every way `check` looks for.
        fn structured() -> impl Strategy<Value = String> {
            let version = prop_oneof![4 => Just(2u32), 1 => any::<u32>()];
            let trigger = (prop_oneof![Just("/...".to_string()), Just("/a".to_string()), any::<String>()], name());
            let dependency = (
                name(),
                prop::option::of(name()),
                prop::option::of("[a-z./]{0,6}"),
                prop::option::of(prop_oneof![
                    any::<bool>().prop_map(|b| b.to_string()),
                    prop::collection::vec(name(), 0..3)
                        .prop_map(|v| format!("[{}]", v.iter().map(|n| quoted(n)).collect::<Vec<_>>().join(", "))),
                ]),
            );
            let component = (
                name(),
                prop_oneof![
                    3 => "[a-z./]{0,8}".prop_map(|p| quoted(&p)),
                    1 => Just("{ url = \"https://x/y.wasm\", digest = \"sha256:0\" }".to_string()),
                    1 => Just("{ url = 1 }".to_string()),
                ],
                prop::collection::vec(prop_oneof![Just("default".to_string()), name()], 0..2),
                prop::collection::vec(dependency, 0..3),
                prop::option::of(any::<bool>()),
            );
            (version, prop::collection::vec(trigger, 0..3), prop::collection::vec(component, 0..3)).prop_map(
                |(version, triggers, components)| {
                    let mut t = format!("spin_manifest_version = {version}\n[application]\nname = \"t\"\n");
                    for (route, component) in triggers {
                        t += &format!(
                            "[[trigger.http]]\nroute = {}\ncomponent = {}\n",
                            quoted(&route),
                            quoted(&component)
                        );
                    }
                    for (id, source, stores, deps, inherit_all) in components {
                        t += &format!("[component.{}]\nsource = {source}\n", quoted(&id));
                        let stores: Vec<String> = stores.iter().map(|s| quoted(s)).collect();
                        t += &format!("key_value_stores = [{}]\n", stores.join(", "));
                        if let Some(all) = inherit_all {
                            t += &format!("dependencies_inherit_configuration = {all}\n");
                        }
                        for (dep, component, path, inherit) in deps {
                            t += &format!("[component.{}.dependencies.{}]\n", quoted(&id), quoted(&dep));
                            if let Some(c) = component {
                                t += &format!("component = {}\n", quoted(&c));
                            }
                            if let Some(p) = path {
                                t += &format!("path = {}\n", quoted(&p));
                            }
                            if let Some(i) = inherit {
                                t += &format!("inherit_configuration = {i}\n");
                            }
                        }
                    }
                    t
                },
            )
        }

        /// Whatever parsed is what `check` promises.
        fn holds_its_promises(app: &App) {
            let m = &app.manifest;
            assert_eq!(m.spin_manifest_version, 2);
            assert!(!m.trigger.http.is_empty());
            for t in &m.trigger.http {
                assert!(t.route.starts_with('/'));
                assert!(m.component.contains_key(&t.component));
            }
            for (id, c) in &m.component {
                let _ = app.source_path(id);
                assert!(c.key_value_stores.iter().all(|s| s == "default"));
                for dep in c.dependencies.values() {
                    match (&dep.component, &dep.path) {
                        (Some(other), None) => assert!(m.component.contains_key(other)),
                        (None, Some(_)) => {}
                        _ => panic!("a dependency of {id:?} names both or neither of component and path"),
                    }
                    assert!(!(dep.inherit_configuration.is_some() && c.dependencies_inherit_configuration));
                }
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn toml_ish_text_is_an_error_or_a_checked_app(text in manifest_text()) {
                if let Ok(app) = App::parse(&text, Path::new("spin.toml")) {
                    holds_its_promises(&app);
                }
            }

            #[test]
            fn a_valid_manifest_with_any_one_line_added_never_panics(
                extra in prop_oneof![(key(), value()).prop_map(|(k, v)| format!("{k} = {v}")), header(), any::<String>()],
                at in any::<prop::sample::Index>(),
            ) {
                let mut lines: Vec<&str> = OK.lines().collect();
                lines.insert(at.index(lines.len() + 1), &extra);
                if let Ok(app) = App::parse(&lines.join("\n"), Path::new("spin.toml")) {
                    holds_its_promises(&app);
                }
            }

            #[test]
            fn a_manifest_of_the_right_shape_is_an_error_or_a_checked_app(text in structured()) {
                match App::parse(&text, Path::new("spin.toml")) {
                    Ok(app) => holds_its_promises(&app),
                    Err(e) => prop_assert!(e.to_string().starts_with("spin.toml: "), "{}", e),
                }
            }

            #[test]
            fn any_bytes_are_an_error_or_a_checked_app(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(app) = App::parse(&text, Path::new("spin.toml")) {
                    holds_its_promises(&app);
                }
            }
        }
    }
}
