//! The deployment files (Dockerfile, deploy/kubernetes, deploy/spinkube)
//! pass `scripts/validate-deploy.sh`, the schemas of Kubernetes and of
//! SpinKube's CRDs, and the same script rejects a copy with the mistakes
//! people make (a misspelt field, a grace period shorter than the drain).

mod common;

use common::spindle::repo_root;
use std::process::Command;

fn validate(root: &std::path::Path) -> (bool, String) {
    let out =
        Command::new(repo_root().join("scripts/validate-deploy.sh")).arg(root).output().expect("run the validator");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_deployment_files_are_valid_and_broken_ones_are_named() {
    let root = repo_root();
    let (ok, out) = validate(&root);
    assert!(ok, "{out}");
    for file in ["deploy/kubernetes/deployment.yaml", "deploy/spinkube/spinapp.yaml", "Dockerfile"] {
        assert!(out.contains(&format!("ok    {file}")), "{file} is checked: {out}");
    }

    let broken = std::env::temp_dir().join(format!("spindle-deploy-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&broken);
    std::fs::create_dir_all(&broken).unwrap();
    assert!(Command::new("cp").arg("-r").arg(root.join("deploy")).arg(&broken).status().unwrap().success());
    std::fs::copy(root.join("Dockerfile"), broken.join("Dockerfile")).unwrap();
    let edit = |file: &str, from: &str, to: &str| {
        let path = broken.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit("deploy/spinkube/spinapp.yaml", "  replicas: 2", "  replica: 2");
    edit("deploy/kubernetes/deployment.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 20");
    let (ok, out) = validate(&broken);
    assert!(!ok, "broken files pass: {out}");
    assert!(out.contains("'replica' was unexpected"), "{out}");
    assert!(out.contains("terminationGracePeriodSeconds 20 must exceed"), "{out}");
    let _ = std::fs::remove_dir_all(&broken);
}
