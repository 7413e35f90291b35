//! Starting `spindle up` for a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn spindle_bin() -> &'static str {
    env!("CARGO_BIN_EXE_spindle")
}

/// Builds the guest components once per test binary, with the manifest's
/// own build command (`spindle build`).
pub fn ensure_components_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(spindle_bin())
            .args(["build", "--manifest"])
            .arg(repo_root().join("spin.toml"))
            .status()
            .expect("run spindle build");
        assert!(status.success(), "building the components failed");
    });
}

/// Writes a manifest derived from `spin.toml` with each `(from, to)`
/// replacement applied and paths made absolute, and builds its components.
/// Tests swap a step this way, as a user would, without a second copy.
pub fn derived_manifest(name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let root = repo_root();
    let mut text = std::fs::read_to_string(root.join("spin.toml")).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "spin.toml no longer contains {from:?}");
        text = text.replace(from, to);
    }
    let text = text
        .replace("source = \"target/", &format!("source = \"{}/target/", root.display()))
        .replace("workdir = \"components/", &format!("workdir = \"{}/components/", root.display()))
        .replace(
            "[component.gateway.build]\n",
            &format!("[component.gateway.build]\nworkdir = \"{}\"\n", root.display()),
        );
    let dir = std::env::temp_dir().join(format!("spindle-manifest-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    let status =
        Command::new(spindle_bin()).args(["build", "--manifest"]).arg(&path).status().expect("run spindle build");
    assert!(status.success(), "building the components of {name} failed");
    path
}

/// Runs `spindle index` in `dir` against the stores of `vars`; returns
/// whether it succeeded, its stdout and its stderr.
pub fn index_in(
    dir: &std::path::Path,
    vars: &[(String, String)],
    args: &[impl AsRef<std::ffi::OsStr>],
) -> (bool, String, String) {
    let mut cmd = Command::new(spindle_bin());
    cmd.arg("index").arg("-f").arg(repo_root().join("spin.toml")).args(args).current_dir(dir);
    for (k, v) in vars {
        cmd.env(format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v);
    }
    let out = cmd.output().expect("run spindle index");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Spin CLI the `spin up` tests use: `$SPIN`, if it is a file.
pub fn spin_binary() -> Option<PathBuf> {
    std::env::var_os("SPIN").map(PathBuf::from).filter(|p| p.is_file())
}

/// A running `spindle up` (or `spin up`); killed when dropped.
pub struct Spindle {
    child: Child,
    /// Whether the process leads a process group to kill whole (`spin up`
    /// runs its trigger as a child process).
    group: bool,
    pub base: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Spindle {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for one spindle process.
#[derive(Default, Clone)]
pub struct Options {
    /// `SPIN_VARIABLE_*` values, by lower-case variable name.
    pub variables: Vec<(String, String)>,
    pub manifest: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Caps the process's address space (`ulimit -v`), in bytes.
    pub address_space: Option<u64>,
}

impl Options {
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.variables.push((name.to_string(), value.into()));
        self
    }

    /// Points the generator at `base` (an http://host:port origin).
    pub fn llm(self, origin: &str) -> Self {
        self.var("llm_url", format!("{origin}/v1")).var("llm_origin", origin)
    }
}

impl Spindle {
    pub fn start(opts: Options) -> Spindle {
        ensure_components_built();
        let manifest = opts.manifest.clone().unwrap_or_else(|| repo_root().join("spin.toml"));
        let mut cmd = Command::new(spindle_bin());
        cmd.args(["up", "--manifest"]).arg(&manifest);
        if !opts.extra_args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(&opts.extra_args);
        for (k, v) in &opts.variables {
            cmd.env(format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v);
        }
        if let Some(limit) = opts.address_space {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::AS, limit, limit));
            }
        }
        Self::launch(cmd, None)
    }

    /// The same app under a real Spin (`spin up`, its path in `$SPIN`);
    /// `None`, with a note, when `$SPIN` is not set.
    pub fn start_spin(opts: Options) -> Option<Spindle> {
        let Some(spin) = spin_binary() else {
            eprintln!("SKIP: set SPIN to a Spin 4.1+ binary to run this test under `spin up`");
            return None;
        };
        ensure_components_built();
        let manifest = opts.manifest.clone().unwrap_or_else(|| repo_root().join("spin.toml"));
        let port = crate::common::redis::free_port();
        let mut cmd = Command::new(spin);
        cmd.args(["up", "--listen", &format!("127.0.0.1:{port}"), "--from"]).arg(&manifest);
        cmd.args(&opts.extra_args);
        for (k, v) in &opts.variables {
            cmd.env(format!("SPIN_VARIABLE_{}", k.to_ascii_uppercase()), v);
        }
        // Spin keeps its state (the SQLite key-value store, logs) beside
        // the manifest unless told otherwise: a fresh folder per run.
        let state = std::env::temp_dir().join(format!("spin-state-{}-{port}", std::process::id()));
        cmd.arg("--state-dir").arg(&state);
        // `spin up` runs the trigger as a child process: give them a group
        // of their own, killed together.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut spin = Self::launch(cmd, Some(format!("127.0.0.1:{port}")));
        spin.group = true;
        Some(spin)
    }

    /// Starts `cmd` and waits until it prints `Serving http://ADDR`;
    /// `addr`, when given, is where it listens.
    fn launch(mut cmd: Command, addr: Option<String>) -> Spindle {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start spindle");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        {
            let err = child.stderr.take().unwrap();
            let log = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Serving http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(a) => addr.unwrap_or(a),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
                let _ = child.kill();
                let _ = child.wait();
                panic!("{:?} did not start; stderr:\n{}", cmd.get_program(), stderr.lock().unwrap());
            }
        };
        Spindle { child, group: false, base: format!("http://{addr}"), stderr }
    }

    /// Sends a signal (e.g. "TERM") to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The process's resident set size, in bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> u64 {
        let rss = spindle_testkit::procstat::sample(self.child.id()).rss_mb * 1024.0 * 1024.0;
        assert!(rss > 0.0, "no VmRSS for spindle in /proc");
        rss as u64
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}
