//! Component dependencies: plugging the components that satisfy a
//! component's imports into it, as Spin's `crates/compose` does, with
//! wac-graph. The result is one component whose remaining imports are the
//! host's (WASI, Spin APIs).

use crate::manifest::{App, Inherit};
use anyhow::{Context, bail};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// Host capabilities a dependency gets only by inheriting its parent's
/// configuration (Spin's names), and the import prefixes they cover.
const CAPABILITIES: &[(&str, &[&str])] = &[
    ("allowed_outbound_hosts", &["wasi:http/client", "wasi:http/outgoing-handler", "wasi:sockets/"]),
    ("variables", &["spin:variables/", "fermyon:spin/variables", "fermyon:spin/config"]),
    ("key_value_stores", &["spin:key-value/", "fermyon:spin/key-value", "wasi:keyvalue/"]),
];

/// Whether manifest dependency name `dep` (an interface, `ns:pkg/iface@ver`,
/// or a whole package, `ns:pkg@ver` / `ns:pkg`) names `import`.
fn names_import(dep: &str, import: &str) -> bool {
    if dep == import {
        return true;
    }
    let (path, version) = import.split_once('@').unwrap_or((import, ""));
    let package = path.split_once('/').map_or(path, |(p, _)| p);
    dep == path || dep == package || (!version.is_empty() && dep == format!("{package}@{version}"))
}

fn inherits(app: &App, parent: &str, inherit: Option<&Inherit>, capability: &str) -> bool {
    if app.manifest.component[parent].dependencies_inherit_configuration {
        return true;
    }
    match inherit {
        Some(Inherit::All(all)) => *all,
        Some(Inherit::Some(list)) => list.iter().any(|c| c == capability),
        None => false,
    }
}

/// Returns the wasm of component `id` with its dependencies plugged in.
pub fn compose(app: &App, id: &str) -> anyhow::Result<Vec<u8>> {
    let component = &app.manifest.component[id];
    let root_path = app.source_path(id);
    let root_bytes = std::fs::read(&root_path).with_context(|| {
        format!("component.{id}.source: cannot read {} (build it with `spindle up --build`)", root_path.display())
    })?;
    if component.dependencies.is_empty() {
        return Ok(root_bytes);
    }

    let mut graph = CompositionGraph::new();
    let root = Package::from_bytes(&format!("spindle-root:{id}"), None, root_bytes, graph.types_mut())
        .with_context(|| format!("{} is not a valid component", root_path.display()))?;
    let root_world = root.ty();
    let root_inst = {
        let pkg = graph.register_package(root)?;
        graph.instantiate(pkg)
    };
    let imports: Vec<String> = graph.types()[root_world].imports.keys().cloned().collect();
    let mut satisfied: Vec<(String, String)> = Vec::new();

    for (n, (dep_name, dep)) in component.dependencies.iter().enumerate() {
        let key = format!("component.{id}.dependencies.{dep_name:?}");
        let targets: Vec<&String> = imports.iter().filter(|i| names_import(dep_name, i)).collect();
        if targets.is_empty() {
            bail!("{key}: component {id:?} has no import named {dep_name:?}; its imports are: {}", imports.join(", "));
        }
        let (label, path) = match (&dep.component, &dep.path) {
            (Some(other), _) => (format!("component {other:?}"), app.source_path(other)),
            (None, Some(p)) => (p.clone(), app.dir.join(p)),
            (None, None) => unreachable!("rejected by App::check"),
        };
        let bytes =
            std::fs::read(&path).with_context(|| format!("{key}: cannot read {} for {label}", path.display()))?;
        let package = Package::from_bytes(&format!("spindle-dep:d{n}"), None, bytes, graph.types_mut())
            .with_context(|| format!("{key}: {} is not a valid component", path.display()))?;
        let dep_world = package.ty();

        // Spin gives dependencies no host capabilities unless they inherit
        // them; refuse at load time rather than fail on the first call.
        for import in graph.types()[dep_world].imports.keys() {
            for (capability, prefixes) in CAPABILITIES {
                if prefixes.iter().any(|p| import.starts_with(p))
                    && !inherits(app, id, dep.inherit_configuration.as_ref(), capability)
                {
                    bail!(
                        "{key}: {label} imports {import}, which needs the `{capability}` capability; add `inherit_configuration = true` (or [\"{capability}\"]) to this dependency"
                    );
                }
            }
        }

        let exports: Vec<String> = graph.types()[dep_world].exports.keys().cloned().collect();
        let dep_inst = {
            let pkg = graph.register_package(package)?;
            graph.instantiate(pkg)
        };
        for import in targets {
            if let Some((_, by)) = satisfied.iter().find(|(i, _)| i == import) {
                bail!("{key}: import {import} is already satisfied by dependency {by:?}");
            }
            let export = dep.export.clone().unwrap_or_else(|| import.clone());
            if !exports.contains(&export) {
                bail!("{key}: {label} does not export {export}; its exports are: {}", exports.join(", "));
            }
            let alias = graph.alias_instance_export(dep_inst, &export)?;
            graph
                .set_instantiation_argument(root_inst, import, alias)
                .with_context(|| format!("{key}: {label}'s {export} does not match what {id:?} imports"))?;
            satisfied.push((import.clone(), dep_name.clone()));
        }
    }

    let exports: Vec<String> = graph.types()[root_world].exports.keys().cloned().collect();
    for name in exports {
        let alias = graph.alias_instance_export(root_inst, &name)?;
        graph.export(alias, &name)?;
    }
    graph.encode(EncodeOptions::default()).with_context(|| format!("composing component {id:?}"))
}

#[cfg(test)]
mod tests {
    use super::names_import;

    #[test]
    fn dependency_names_match_interfaces_and_packages() {
        let import = "spindle:retriever/retriever@0.1.0";
        assert!(names_import("spindle:retriever/retriever@0.1.0", import));
        assert!(names_import("spindle:retriever@0.1.0", import));
        assert!(names_import("spindle:retriever", import));
        assert!(!names_import("spindle:reranker", import));
        assert!(!names_import("spindle:retriever@0.2.0", import));
    }
}
