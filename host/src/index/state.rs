//! What earlier runs of `spindle index` wrote into one set of stores: per
//! file, a hash of its content and the ids of the chunks it produced. A
//! re-run skips files whose hash is unchanged, replaces the chunks of
//! changed ones and removes those of files that are gone. Kept beside the
//! manifest (`.spindle/index-state/`), one file per set of stores.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub files: BTreeMap<String, FileState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileState {
    pub hash: String,
    pub chunks: Vec<String>,
}

/// A file's content hash.
pub fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl State {
    /// Where the state of the stores named by `targets` (their URLs and
    /// index names) lives.
    pub fn path(app_dir: &Path, targets: &str) -> PathBuf {
        let key: String = hash(targets.as_bytes()).chars().take(16).collect();
        app_dir.join(".spindle/index-state").join(format!("{key}.json"))
    }

    /// The saved state; empty if there is none yet.
    pub fn load(path: &Path) -> anyhow::Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the state whole (to a temporary file first, so a crash
    /// leaves the old one).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Files recorded under one of `roots` (a folder or a file as given on
    /// the command line) that are not in `found`: they were deleted.
    pub fn gone<'a>(&'a self, roots: &[String], found: &[String]) -> Vec<&'a str> {
        let under = |file: &str| {
            roots.iter().any(|r| {
                let r = r.trim_end_matches('/');
                file == r || file.strip_prefix(r).is_some_and(|rest| rest.starts_with('/'))
            })
        };
        self.files.keys().map(String::as_str).filter(|f| under(f) && !found.iter().any(|x| x == f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_under_the_given_roots_that_are_missing_are_gone() {
        let mut state = State::default();
        for f in ["docs/a.md", "docs/sub/b.md", "docs2/c.md", "one.txt"] {
            state.files.insert(f.into(), FileState { hash: "h".into(), chunks: vec![] });
        }
        let found = vec!["docs/a.md".to_string()];
        assert_eq!(state.gone(&["docs/".into()], &found), ["docs/sub/b.md"]);
        assert_eq!(state.gone(&["one.txt".into()], &found), ["one.txt"]);
        assert!(state.gone(&["elsewhere".into()], &found).is_empty());
    }

    #[test]
    fn the_state_round_trips() {
        let dir = std::env::temp_dir().join(format!("spindle-index-state-{}", std::process::id()));
        let path = State::path(&dir, "keyword http://x/i");
        assert_eq!(State::load(&path).unwrap().files.len(), 0);
        let mut state = State::default();
        state.files.insert("a.md".into(), FileState { hash: hash(b"x"), chunks: vec!["a.md#0".into()] });
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap().files["a.md"], state.files["a.md"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
