//! Builds the BM25 index over the bundled corpus when the component is
//! built, in its packed form (`spindle_text::packed`), which the component
//! includes as bytes: nothing is parsed at run time and all instances share
//! the index's copy-on-write pages. `SPINDLE_CORPUS` (a JSON-lines file or
//! a folder of them) replaces the bundled Debian FAQ; `spindle index
//! --embedded` gives a built component another index without a Rust build.

use spindle_text::{bm25::Index, corpus::parse_jsonl};
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let source =
        std::env::var("SPINDLE_CORPUS").map(PathBuf::from).unwrap_or_else(|_| manifest_dir.join("../../corpus"));
    println!("cargo:rerun-if-env-changed=SPINDLE_CORPUS");
    println!("cargo:rerun-if-changed={}", source.display());

    let mut docs = Vec::new();
    for file in corpus_files(&source) {
        println!("cargo:rerun-if-changed={}", file.display());
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        docs.extend(parse_jsonl(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
    }
    assert!(!docs.is_empty(), "no documents in {}", source.display());
    let index = Index::build(docs).to_packed().expect("the bundled index fits in 4 GiB");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("index.bin");
    std::fs::write(&out, index).unwrap();
}

/// The corpus files: `path` itself, or the `*.jsonl` files in it except
/// evaluation queries, in a stable order.
fn corpus_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("eval-"))
        .collect();
    files.sort();
    files
}
