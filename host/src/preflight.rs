//! Start-up check of the configured `*_url` variables against
//! `allowed_outbound_hosts`.
//!
//! A URL whose origin the component may not call is denied at request
//! time, and for the LLM that shows only as `done.fallback` and a log line:
//! setting `SPIN_VARIABLE_LLM_URL` without `SPIN_VARIABLE_LLM_ORIGIN` gives
//! extractive answers with no other sign. `spindle up` and `spindle check`
//! therefore warn, before serving, about every such URL and name what to
//! set, derived from the manifest: the `allowed_outbound_hosts` entry whose
//! template refers to a variable of the same prefix (`{{ llm_origin }}` for
//! `llm_url`), or else the entry to add.

use crate::manifest::{Component, Manifest};
use crate::outbound::AllowList;
use crate::variables::Resolver;
use std::collections::BTreeSet;

/// Logs a warning for each of [`unreachable_urls`].
pub fn warn_unreachable_urls(manifest: &Manifest, resolver: &Resolver) {
    for warning in unreachable_urls(manifest, resolver) {
        tracing::warn!("{warning}");
    }
}

/// One message per non-empty `*_url` variable of an HTTP component (whose
/// dependencies inherit its variables and allow-list) that the component's
/// resolved `allowed_outbound_hosts` does not cover. Entries that do not
/// resolve or parse are left to the loader, which reports them as errors.
pub fn unreachable_urls(manifest: &Manifest, resolver: &Resolver) -> Vec<String> {
    let ids: BTreeSet<&str> = manifest.trigger.http.iter().map(|t| t.component.as_str()).collect();
    let mut warnings = Vec::new();
    for id in ids {
        let Some(component) = manifest.component.get(id) else { continue };
        let Ok(hosts) =
            component.allowed_outbound_hosts.iter().map(|h| resolver.expand(h)).collect::<anyhow::Result<Vec<_>>>()
        else {
            continue;
        };
        let Ok(allow) = AllowList::parse(&hosts) else { continue };
        for (name, template) in &component.variables {
            if !name.ends_with("_url") {
                continue;
            }
            let Ok(value) = resolver.expand(template) else { continue };
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let app_var = sole_reference(template).map(|(_, v, _)| v);
            let label = app_var.unwrap_or(name);
            let secret = app_var.and_then(|v| manifest.variables.get(v)).is_some_and(|v| v.secret);
            let shown = if secret { "(secret)".to_string() } else { without_credentials(value) };
            let origin = match url::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    u.origin().ascii_serialization()
                }
                _ => {
                    warnings.push(format!(
                        "{label} = {shown} is not an http:// or https:// URL; component `{id}` cannot call it"
                    ));
                    continue;
                }
            };
            if origin.parse::<http::Uri>().is_ok_and(|uri| allow.allows(&uri)) {
                continue;
            }
            warnings.push(format!(
                "{label} = {shown} is not reachable: its origin {origin} is not in allowed_outbound_hosts of component `{id}`; {}",
                remedy(component, id, label, &origin)
            ));
        }
    }
    warnings
}

/// What to set so `origin` is allowed: the variable of an
/// `allowed_outbound_hosts` entry that refers to one variable named like
/// `label` (`llm_origin` for `llm_url`), with the value that makes the entry
/// `origin`; else the entry to add to the manifest.
fn remedy(component: &Component, id: &str, label: &str, origin: &str) -> String {
    let stem = label.strip_suffix("_url").unwrap_or(label);
    for entry in &component.allowed_outbound_hosts {
        let Some((prefix, var, suffix)) = sole_reference(entry) else { continue };
        if var == label || !(var == stem || var.starts_with(&format!("{stem}_"))) {
            continue;
        }
        if let Some(value) = origin.strip_prefix(prefix).and_then(|r| r.strip_suffix(suffix)) {
            return format!("set SPIN_VARIABLE_{}={value}", var.to_ascii_uppercase());
        }
    }
    format!("add \"{origin}\" to allowed_outbound_hosts of [component.{id}] in the manifest")
}

/// `prefix {{ var }} suffix` when `template` refers to exactly one variable.
fn sole_reference(template: &str) -> Option<(&str, &str, &str)> {
    let start = template.find("{{")?;
    let len = template[start..].find("}}")?;
    let suffix = &template[start + len + 2..];
    if suffix.contains("{{") {
        return None;
    }
    Some((&template[..start], template[start + 2..start + len].trim(), suffix))
}

/// `value` with any `user:password@` left out.
fn without_credentials(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
llm_url = { default = "" }
llm_origin = { default = "" }
vector_url = { default = "" }
rerank_url = { default = "", secret = true }
[[trigger.http]]
route = "/..."
component = "gateway"
[component.gateway]
source = "g.wasm"
allowed_outbound_hosts = ["{{ llm_origin }}", "{{ vector_url }}"]
[component.gateway.variables]
llm_url = "{{ llm_url }}"
vector_url = "{{ vector_url }}"
rerank_url = "{{ rerank_url }}"
"#;

    fn warnings(env: &[(&str, &str)]) -> Vec<String> {
        let m: Manifest = toml::from_str(MANIFEST).unwrap();
        let r = Resolver::new(&m, |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap();
        unreachable_urls(&m, &r)
    }

    #[test]
    fn an_llm_url_without_its_origin_names_the_variable_to_set() {
        let w = warnings(&[("SPIN_VARIABLE_LLM_URL", "http://x:8080/v1")]);
        assert_eq!(
            w,
            [
                "llm_url = http://x:8080/v1 is not reachable: its origin http://x:8080 is not in allowed_outbound_hosts of component `gateway`; set SPIN_VARIABLE_LLM_ORIGIN=http://x:8080"
            ]
        );
        let w = warnings(&[("SPIN_VARIABLE_LLM_URL", "https://user:pw@api.example/v1")]);
        assert!(w[0].starts_with("llm_url = https://api.example/v1 is not reachable"), "{w:?}");
        assert!(w[0].ends_with("SPIN_VARIABLE_LLM_ORIGIN=https://api.example"), "{w:?}");
    }

    #[test]
    fn allowed_and_empty_urls_pass() {
        assert!(warnings(&[]).is_empty());
        let w = warnings(&[
            ("SPIN_VARIABLE_LLM_URL", "http://x:8080/v1"),
            ("SPIN_VARIABLE_LLM_ORIGIN", "http://x:8080"),
            ("SPIN_VARIABLE_VECTOR_URL", "http://127.0.0.1:8000"),
        ]);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_mismatched_origin_or_unlisted_url_is_reported() {
        let w = warnings(&[("SPIN_VARIABLE_LLM_URL", "http://x:8080/v1"), ("SPIN_VARIABLE_LLM_ORIGIN", "http://x:80")]);
        assert!(w[0].ends_with("set SPIN_VARIABLE_LLM_ORIGIN=http://x:8080"), "{w:?}");
        let w = warnings(&[("SPIN_VARIABLE_RERANK_URL", "http://r:9000?key=s3cret")]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("rerank_url = (secret) is not reachable: its origin http://r:9000"), "{w:?}");
        assert!(
            w[0].ends_with("add \"http://r:9000\" to allowed_outbound_hosts of [component.gateway] in the manifest")
        );
        let w = warnings(&[("SPIN_VARIABLE_LLM_URL", "localhost:8000/v1")]);
        assert!(w[0].contains("is not an http:// or https:// URL"), "{w:?}");
    }

    #[test]
    fn templates_with_text_around_the_variable() {
        let m: Manifest = toml::from_str(&MANIFEST.replace("{{ llm_origin }}\"", "https://{{ llm_host }}\"").replace(
            "llm_origin = { default = \"\" }",
            "llm_origin = { default = \"\" }\nllm_host = { default = \"none.invalid\" }",
        ))
        .unwrap();
        let r = Resolver::new(&m, |k| (k == "SPIN_VARIABLE_LLM_URL").then(|| "https://api.example/v1".into())).unwrap();
        let w = unreachable_urls(&m, &r);
        assert!(w[0].ends_with("set SPIN_VARIABLE_LLM_HOST=api.example"), "{w:?}");
    }
}
