//! Spin variables: resolving application variables (manifest defaults and
//! `SPIN_VARIABLE_<NAME>` environment variables, as Spin's env provider
//! does), expanding `{{ name }}` templates, and serving
//! `spin:variables/variables@3.0.0` to components.

use crate::manifest::{Component, Manifest};
use anyhow::bail;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wasmtime::component::{Accessor, HasData};

use crate::spin_api::variables as wit;

/// Application variables with their values.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    values: BTreeMap<String, String>,
}

impl Resolver {
    /// Resolves every application variable; `env` looks up environment
    /// variables (a parameter so tests need not touch the process's).
    pub fn new(manifest: &Manifest, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, def) in &manifest.variables {
            check_name(name)?;
            let from_env = env(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()));
            match from_env.or_else(|| def.default.clone()) {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None if def.required => missing.push(name.as_str()),
                None => {}
            }
        }
        if !missing.is_empty() {
            bail!(
                "no value for required variable(s): {}; set SPIN_VARIABLE_{} in the environment",
                missing.join(", "),
                missing[0].to_ascii_uppercase()
            );
        }
        Ok(Resolver { values })
    }

    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Replaces each `{{ name }}` in `template` with the variable's value.
    pub fn expand(&self, template: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else { bail!("unclosed `{{{{` in {template:?}") };
            out.push_str(&rest[..start]);
            let name = rest[start + 2..start + len].trim();
            match self.values.get(name) {
                Some(v) => out.push_str(v),
                None => bail!(
                    "{template:?} refers to variable {name:?}, which is not defined in [variables] or has no value"
                ),
            }
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The values a component sees through `spin:variables`.
    pub fn component_values(&self, id: &str, c: &Component) -> anyhow::Result<ComponentVariables> {
        let mut values = HashMap::new();
        for (name, template) in &c.variables {
            check_name(name).map_err(|e| anyhow::anyhow!("component.{id}.variables: {e}"))?;
            let v = self.expand(template).map_err(|e| anyhow::anyhow!("component.{id}.variables.{name}: {e}"))?;
            values.insert(name.clone(), v);
        }
        Ok(ComponentVariables(Arc::new(values)))
    }
}

/// Spin's rule for variable names: lower-case letters, digits and `_`,
/// starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("invalid variable name {name:?}: use lower-case letters, digits and `_`, starting with a letter");
    }
    Ok(())
}

/// The resolved variables of one component, shared by all its instances.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables(Arc<HashMap<String, String>>);

impl From<HashMap<String, String>> for ComponentVariables {
    fn from(values: HashMap<String, String>) -> Self {
        ComponentVariables(Arc::new(values))
    }
}

impl ComponentVariables {
    fn get(&self, name: &str) -> Result<String, wit::Error> {
        if check_name(name).is_err() {
            return Err(wit::Error::InvalidName(name.to_string()));
        }
        self.0.get(name).cloned().ok_or_else(|| wit::Error::Undefined(format!("no variable named {name:?}")))
    }
}

/// `HasData` marker for the variables interface.
pub struct Variables;

impl HasData for Variables {
    type Data<'a> = &'a ComponentVariables;
}

impl<U> wit::HostWithStore<U> for Variables {
    async fn get(store: &Accessor<U, Self>, name: String) -> wasmtime::Result<Result<String, wit::Error>> {
        Ok(store.with(|mut view| view.get().get(&name)))
    }
}

impl wit::Host for &ComponentVariables {}

/// Adds `spin:variables/variables@3.0.0` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &ComponentVariables,
) -> anyhow::Result<()> {
    wit::add_to_linker::<T, Variables>(linker, get)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(vars: &str) -> Manifest {
        toml::from_str(&format!("spin_manifest_version = 2\n[application]\nname = \"t\"\n[variables]\n{vars}\n"))
            .unwrap()
    }

    #[test]
    fn environment_overrides_defaults() {
        let m = manifest("llm_url = { default = \"\" }\nmodel = { default = \"m\" }");
        let r = Resolver::new(&m, |k| (k == "SPIN_VARIABLE_LLM_URL").then(|| "http://x/v1".to_string())).unwrap();
        assert_eq!(r.expand("{{ llm_url }}|{{model}}").unwrap(), "http://x/v1|m");
        assert!(r.expand("{{ nope }}").unwrap_err().to_string().contains("\"nope\""));
    }

    #[test]
    fn required_without_value_is_an_error() {
        let m = manifest("key = { required = true, secret = true }");
        let err = Resolver::new(&m, |_| None).unwrap_err().to_string();
        assert!(err.contains("SPIN_VARIABLE_KEY"), "{err}");
    }
}
