//! What `spindle up` and `spindle check` say at start-up about the
//! configuration: a `*_url` variable whose origin the app may not call is
//! named, with the variable to set (it would otherwise show only as
//! `done.fallback` on every answer).

mod common;

use common::spindle::{Options, Spindle, ensure_components_built, repo_root, spindle_bin};
use std::time::{Duration, Instant};

/// An origin nothing listens on: the warning is about configuration only.
const LLM_ORIGIN: &str = "http://127.0.0.1:9";

fn warning() -> String {
    format!(
        "llm_url = {LLM_ORIGIN}/v1 is not reachable: its origin {LLM_ORIGIN} is not in allowed_outbound_hosts of component `gateway`; set SPIN_VARIABLE_LLM_ORIGIN={LLM_ORIGIN}"
    )
}

/// stderr of `spindle`, once it has logged loading the gateway (the check
/// runs before that, so its output is in by then).
fn stderr_after_load(spindle: &Spindle) -> String {
    let started = Instant::now();
    loop {
        let err = spindle.stderr.lock().unwrap().clone();
        if err.contains("Loaded component gateway") {
            return err;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no `Loaded component gateway` on stderr:\n{err}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn up_names_the_origin_variable_when_only_llm_url_is_set() {
    let spindle = Spindle::start(Options::default().var("llm_url", format!("{LLM_ORIGIN}/v1")));
    let err = stderr_after_load(&spindle);
    assert!(err.contains(&warning()), "expected {:?} on stderr:\n{err}", warning());
}

#[test]
fn up_does_not_warn_when_the_origin_is_allowed() {
    let spindle = Spindle::start(Options::default().llm(LLM_ORIGIN));
    let err = stderr_after_load(&spindle);
    assert!(!err.contains("is not reachable"), "unexpected warning:\n{err}");
}

#[test]
fn check_warns_too() {
    ensure_components_built();
    let out = std::process::Command::new(spindle_bin())
        .args(["check", "--log-dir", "none", "--manifest"])
        .arg(repo_root().join("spin.toml"))
        .env("SPIN_VARIABLE_LLM_URL", format!("{LLM_ORIGIN}/v1"))
        .env_remove("SPIN_VARIABLE_LLM_ORIGIN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run spindle check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "spindle check failed:\n{err}");
    assert!(err.contains(&warning()), "expected {:?} on stderr:\n{err}", warning());
}
