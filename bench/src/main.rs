//! `spindle-bench`: drives C concurrent SSE streams through `spindle` (the
//! real app of `spin.toml`) and through a minimal native hyper relay doing
//! the same relay work, against one fake OpenAI upstream (64 tokens, 50 ms
//! to the first token, 10 ms per token), and reports each figure with its
//! ratio to the relay measured in the same run. `--soak N` adds a leak soak
//! of N mixed streams (normal, client leaving mid-stream, failing upstream).
//! `--floor` adds a third target: the relay's work in one wasm component on
//! spindle's host (`bench/floor.toml`), the least any design with wasm on
//! the token path can cost.
//!
//! Every process here (load, upstream, relay, spindle) may hold only as many
//! sockets as the open-file limit allows; a relay holds two per stream, so
//! on a machine with a 20,000 limit the largest level is 9,000.
//!
//! Usage: `cargo run --release -p spindle-bench -- [--levels 100,1000,9000]`

mod hold;
mod load;
mod relay;

use clap::Parser;
use load::{Kind, Outcome, percentile};
use spindle_testkit::procstat;
use spindle_testkit::upstream::{Behaviour, Upstream};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Streams run before each measurement.
const WARM_UP_STREAMS: usize = 200;

/// The upstream's own time to first token.
const UPSTREAM_FIRST_TOKEN: Duration = Duration::from_millis(50);

#[derive(Parser)]
struct Args {
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,9000")]
    levels: Vec<usize>,
    /// Streams per level (default: max(3 x C, 2000)).
    #[arg(long)]
    streams: Option<usize>,
    /// Streams in the leak soak (0: no soak).
    #[arg(long, default_value_t = 0)]
    soak: usize,
    #[arg(long, default_value = "target/release/spindle")]
    spindle: PathBuf,
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// Extra arguments for `spindle up` (e.g. "--max-instance-concurrent-reuse-count=64").
    #[arg(long, allow_hyphen_values = true)]
    spindle_arg: Vec<String>,
    /// Niceness of the servers under test (the relay and spindle); the fake
    /// upstream and the clients keep 0. All share the machine's cores: a
    /// saturated target otherwise starves the upstream's token timers and
    /// the clients' reads, and that delay was counted as the target's
    /// (spindle's p99 first text at C = 1000: 2.98-8.31 s at 0, 1.90-2.35 s
    /// at 10, same build). 0: no change.
    #[arg(long, default_value_t = 10)]
    target_nice: i32,
    /// Tokens per answer from the fake upstream. Runs at two counts split a
    /// target's CPU into a per-stream and a per-token part.
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    /// Also measure the floor: the relay's work done by one wasm component
    /// (components/relay-floor, `bench/floor.toml`) on spindle's host.
    #[arg(long)]
    floor: bool,
    /// Where the Markdown report is written (also printed).
    #[arg(long, default_value = "target/bench-report.md")]
    out: PathBuf,
    /// A Spin CLI (4.1+): also measure the same app under `spin up`, with
    /// its ratios to the relay and to spindle (and in the soak).
    #[arg(long)]
    spin: Option<PathBuf>,
    /// Memory per open stream instead of the levels: hold this many streams
    /// open at once against spindle (tokens 250 ms apart) and report its
    /// memory against idle. With `--manifest` naming an app whose retriever
    /// holds a big embedded index, it shows instances share the index.
    #[arg(long)]
    hold: Option<usize>,
    /// Also measure spindle with its stream journal on (a redis-server the
    /// bench starts): the journal's cost per event in spindle's and
    /// Redis's CPU, and in Redis memory.
    #[arg(long)]
    journal: bool,
    /// Internal: the fake upstream's time per token, ms.
    #[arg(long, hide = true, default_value_t = 10)]
    token_ms: u64,
    /// Internal: serve the native relay for the given upstream.
    #[arg(long, hide = true)]
    serve_relay: Option<String>,
    /// Internal: serve the fake upstream.
    #[arg(long, hide = true)]
    serve_upstream: bool,
}

/// The fake upstream's address, and its process.
struct Origin {
    origin: String,
    _process: Target,
}

/// A server under test, in its own process.
struct Target {
    child: Child,
    url: String,
    /// Its Prometheus endpoint, if it has one (spindle).
    metrics: Option<String>,
}

impl Drop for Target {
    fn drop(&mut self) {
        // Targets lead process groups (`spin up` serves from a child).
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command, path: &str) -> anyhow::Result<Target> {
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("Serving http://") {
                    break a.to_string();
                }
            }
            _ => anyhow::bail!("server did not start"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Target { child, url: format!("http://{addr}{path}"), metrics: None })
}

/// A command for a server under test at `nice` (coreutils' `nice` execs
/// the program, so the process id the bench samples stays the target's).
fn target_command(program: &std::path::Path, nice: i32) -> Command {
    if nice == 0 {
        return Command::new(program);
    }
    let mut cmd = Command::new("nice");
    cmd.arg("-n").arg(nice.to_string()).arg(program);
    cmd
}

fn start_relay(args: &Args, upstream: &str) -> anyhow::Result<Target> {
    let mut cmd = target_command(&std::env::current_exe()?, args.target_nice);
    // Kept for diagnosis: target/bench-relay.log.
    cmd.arg("--serve-relay").arg(upstream).stderr(std::fs::File::create("target/bench-relay.log")?);
    spawn(cmd, "/relay")
}

fn start_spindle(args: &Args, upstream: &str) -> anyhow::Result<Target> {
    start_spindle_with(args, upstream, &[])
}

fn start_spindle_with(args: &Args, upstream: &str, env: &[(&str, String)]) -> anyhow::Result<Target> {
    let mut target = start_app(args, upstream, &args.manifest, "/api/chat/stream", env)?;
    target.metrics = Some(target.url.replace("/api/chat/stream", "/metrics"));
    Ok(target)
}

/// The same app under `spin up`.
fn start_spin(args: &Args, spin: &std::path::Path, upstream: &str) -> anyhow::Result<Target> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let state = std::env::temp_dir().join(format!("spindle-bench-spin-{}-{port}", std::process::id()));
    let mut cmd = target_command(spin, args.target_nice);
    cmd.args(["up", "--listen", &format!("127.0.0.1:{port}"), "--from"])
        .arg(&args.manifest)
        .arg("--state-dir")
        .arg(&state)
        .env("SPIN_VARIABLE_LLM_URL", format!("{upstream}/v1"))
        .env("SPIN_VARIABLE_LLM_ORIGIN", upstream)
        .env("SPIN_VARIABLE_LLM_MODEL", "bench")
        .env("SPIN_VARIABLE_CACHE_TTL_SECS", "0")
        // Kept for diagnosis: target/bench-spin.log.
        .stderr(std::fs::File::create("target/bench-spin.log")?);
    spawn(cmd, "/api/chat/stream")
}

/// RSS once idle instances have expired (spindle's after 5 s).
async fn idle_rss_mb(target: &Target) -> f64 {
    tokio::time::sleep(Duration::from_secs(8)).await;
    procstat::sample_tree(target.child.id()).rss_mb
}

/// The floor manifest, built once by [`run`].
const FLOOR_MANIFEST: &str = "bench/floor.toml";

/// `spindle up` for `manifest`, whose streaming route is `path`.
fn start_app(
    args: &Args,
    upstream: &str,
    manifest: &std::path::Path,
    path: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Target> {
    let logs = std::env::temp_dir().join(format!("spindle-bench-logs-{}", std::process::id()));
    let mut cmd = target_command(&args.spindle, args.target_nice);
    cmd.args(["up", "--listen", "127.0.0.1:0", "--manifest"])
        .arg(manifest)
        .arg("--log-dir")
        .arg(&logs)
        .env("SPIN_VARIABLE_LLM_URL", format!("{upstream}/v1"))
        .env("SPIN_VARIABLE_LLM_ORIGIN", upstream)
        .env("SPIN_VARIABLE_LLM_MODEL", "bench")
        // Every stream asks the same question: measure the relay, not the cache.
        .env("SPIN_VARIABLE_CACHE_TTL_SECS", "0")
        // Kept for diagnosis: target/bench-spindle.log.
        .stderr(std::fs::File::create("target/bench-spindle.log")?)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(&args.spindle_arg);
    spawn(cmd, path)
}

struct Measured {
    outcome: Outcome,
    cpu_s: f64,
    peak_rss_mb: f64,
    /// Mean time per pipeline step over the measured streams, from the
    /// target's own metrics: (step, ms).
    steps: Vec<(&'static str, f64)>,
}

impl Measured {
    fn streams_per_s(&self) -> f64 {
        self.outcome.streams as f64 / self.outcome.elapsed.as_secs_f64()
    }
    fn cpu_per_1000(&self) -> f64 {
        self.cpu_s * 1000.0 / self.outcome.streams as f64
    }
    fn ttfe(&self, p: f64) -> f64 {
        let mut v = self.outcome.first_text.clone();
        v.sort();
        percentile(&v, p).as_secs_f64() * 1000.0
    }
}

async fn measure(target: &Target, concurrency: usize, streams: usize) -> Measured {
    // Warm up: instances, compiled code, connection pools.
    load::run(&target.url, concurrency.min(100), WARM_UP_STREAMS, |_| Kind::Normal).await;
    let pid = target.child.id();
    let metrics_before = step_totals(target).await;
    let before = procstat::sample_tree(pid);
    let outcome = load::run(&target.url, concurrency, streams, |_| Kind::Normal).await;
    let after = procstat::sample_tree(pid);
    let metrics_after = step_totals(target).await;
    let steps = metrics_after
        .iter()
        .zip(&metrics_before)
        .filter(|((_, _, n), (_, _, n0))| n > n0)
        .map(|((step, sum, n), (_, sum0, n0))| (*step, (sum - sum0) / (n - n0) * 1000.0))
        .collect();
    Measured { outcome, cpu_s: after.cpu_seconds - before.cpu_seconds, peak_rss_mb: after.peak_rss_mb, steps }
}

/// The pipeline steps whose durations spindle exports.
const STEPS: [&str; 4] = ["retrieve", "rerank", "prompt", "generate"];

/// Per step: seconds spent so far and answers counted, from the target's
/// `spindle_step_duration_seconds` histogram (empty for the relay).
async fn step_totals(target: &Target) -> Vec<(&'static str, f64, f64)> {
    let Some(url) = &target.metrics else { return Vec::new() };
    let text = metrics_text(url).await;
    let value = |name: &str, step: &str| {
        metric(&text, &format!("spindle_step_duration_seconds_{name}{{step=\"{step}\"}}")).unwrap_or(0.0)
    };
    STEPS.iter().map(|&s| (s, value("sum", s), value("count", s))).collect()
}

fn row(report: &mut String, name: &str, m: &Measured) {
    let _ = writeln!(
        report,
        "| {name} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {}{} | {:.0} | {:.2} | {:.2} |",
        m.streams_per_s(),
        m.ttfe(0.5),
        m.ttfe(0.99),
        m.ttfe(0.5) - UPSTREAM_FIRST_TOKEN.as_secs_f64() * 1000.0,
        m.ttfe(0.99) - UPSTREAM_FIRST_TOKEN.as_secs_f64() * 1000.0,
        m.outcome.errors,
        m.outcome.first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        m.peak_rss_mb,
        m.cpu_per_1000(),
        m.outcome.elapsed.as_secs_f64(),
    );
}

async fn soak(target: Target, name: &str, total: usize, report: &mut String) -> anyhow::Result<()> {
    let pid = target.child.id();
    let mix = |n: usize| match n % 10 {
        0 => Kind::Disconnect,
        5 => Kind::Failing,
        _ => Kind::Normal,
    };
    let warm = (total / 10).max(1000);
    load::run(&target.url, 1000, warm, mix).await;
    let base = procstat::sample_tree(pid);
    // One sample at the end of the warm-up says little: RSS rises and falls
    // as instances are created and retired. The trend under load does: RSS
    // every second, compared between the first and last quarter of the soak.
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn({
        let samples = samples.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                samples.lock().unwrap().push(procstat::sample_tree(pid).rss_mb);
            }
        }
    });
    let outcome = load::run(&target.url, 1000, total, mix).await;
    let end = procstat::sample_tree(pid);
    sampler.abort();
    let rss = samples.lock().unwrap().clone();
    let quarter = (rss.len() / 4).max(1);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let (first, last) = (mean(&rss[..quarter.min(rss.len())]), mean(&rss[rss.len().saturating_sub(quarter)..]));
    // Let idle instances expire, then look again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let idle = procstat::sample_tree(pid);
    let metrics = metrics_text(&target.url.replace("/api/chat/stream", "/metrics")).await;
    let gauge = |name: &str| metric(&metrics, name).map_or("?".to_string(), |v| v.to_string());
    let _ = writeln!(
        report,
        "\n## Soak of {name}: {total} mixed streams at C = 1000 (80% normal, 10% client leaves mid-stream, 10% upstream HTTP 500)\n"
    );
    let _ = writeln!(
        report,
        "| RSS after warm-up | mean RSS, first / last quarter | change | RSS at end | RSS idle (+8 s) | open streams | instances | client-visible errors | streams/s |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        report,
        "| {:.0} MB | {:.0} / {:.0} MB | {:+.1}% | {:.0} MB | {:.0} MB | {} | {} | {} | {:.0} |",
        base.rss_mb,
        first,
        last,
        (last - first) / first * 100.0,
        end.rss_mb,
        idle.rss_mb,
        gauge("spindle_open_streams"),
        gauge("spindle_instances"),
        outcome.errors,
        outcome.streams as f64 / outcome.elapsed.as_secs_f64(),
    );
    let _ = writeln!(
        report,
        "\nFailing-upstream streams fall back to an extractive answer (not an error), so errors count real failures."
    );
    Ok(())
}

/// The value of one series (name and labels, as exposed) in a Prometheus
/// text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics_text(url: &str) -> String {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    match client.get(url.parse().unwrap()).await {
        Ok(res) => String::from_utf8_lossy(&res.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default())
            .into_owned(),
        Err(_) => String::new(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // 10,000 streams need two descriptors each in every process (this one
    // holds the clients and the upstream): raise the limit as far as allowed
    // (root may go past the hard limit); children inherit it.
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    let want = hard.max(262_144);
    if rlimit::Resource::NOFILE.set(want, want).is_err() {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    eprintln!("open-file limit: {}", rlimit::Resource::NOFILE.get()?.0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.serve_upstream {
        return rt.block_on(async {
            let upstream = Upstream::start_with(Behaviour::tokens(args.tokens, 50, args.token_ms), false).await;
            println!("Serving {}", upstream.origin);
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    if let Some(upstream) = &args.serve_relay {
        return rt.block_on(async {
            let listener = spindle_testkit::listen::loopback()?;
            println!("Serving http://{}", listener.local_addr()?);
            relay::serve(listener, upstream.clone()).await
        });
    }
    rt.block_on(run(args))
}

/// spindle with its stream journal on a redis-server of its own: the
/// measurement, Redis's CPU seconds and its memory growth in bytes.
async fn measure_journal(
    args: &Args,
    upstream: &str,
    c: usize,
    streams: usize,
) -> anyhow::Result<(Measured, f64, u64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()?;
    let used = || -> u64 {
        let out = Command::new("redis-cli").args(["-p", &port.to_string(), "info", "memory"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok()).unwrap_or(0)
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = start_spindle_with(
        args,
        upstream,
        &[("SPIN_VARIABLE_STREAM_JOURNAL_URL", format!("redis://127.0.0.1:{port}"))],
    )?;
    let (cpu0, mem0) = (procstat::sample(redis.id()).cpu_seconds, used());
    let m = measure(&t, c, streams).await;
    let (cpu1, mem1) = (procstat::sample(redis.id()).cpu_seconds, used());
    drop(t);
    let _ = redis.kill();
    let _ = redis.wait();
    // Redis also journaled `measure`'s warm-up streams: spread over those too.
    let share = m.outcome.streams as f64 / (m.outcome.streams + WARM_UP_STREAMS) as f64;
    Ok((m, (cpu1 - cpu0) * share, (mem1.saturating_sub(mem0) as f64 * share) as u64))
}

/// `--hold C`: spindle's memory with C streams open against idle.
async fn hold_report(args: &Args, upstream: &str, c: usize) -> anyhow::Result<()> {
    let t = start_spindle(args, upstream)?;
    let h = hold::hold(&t.url, t.child.id(), c).await;
    let per = |held: f64, idle: f64| (held - idle) * 1024.0 / h.open.max(1) as f64;
    let report = format!(
        "# spindle-bench --hold {c}\n\nApp: {}. {} of {} streams open at the sample, {} errors.\n\n| memory | idle (MB) | {} streams open (MB) | per open stream (KB) |\n|---|---|---|---|\n| RSS | {:.0} | {:.0} | {:.0} |\n| PSS | {:.0} | {:.0} | {:.0} |\n| private | {:.0} | {:.0} | {:.0} |\n",
        args.manifest.display(),
        h.open,
        h.streams,
        h.errors,
        h.open,
        h.idle.rss_mb,
        h.held.rss_mb,
        per(h.held.rss_mb, h.idle.rss_mb),
        h.idle.pss_mb,
        h.held.pss_mb,
        per(h.held.pss_mb, h.idle.pss_mb),
        h.idle.private_mb,
        h.held.private_mb,
        per(h.held.private_mb, h.idle.private_mb),
    );
    println!("{report}");
    std::fs::write(&args.out, &report)?;
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    // The upstream runs in a process of its own: every process here may hold
    // only as many sockets as the open-file limit allows.
    let upstream = {
        let mut cmd = Command::new(std::env::current_exe()?);
        let token_ms = if args.hold.is_some() { 250 } else { 10 };
        cmd.arg("--serve-upstream")
            .arg(format!("--tokens={}", args.tokens))
            .arg(format!("--token-ms={token_ms}"))
            .stderr(Stdio::null());
        spawn(cmd, "")?
    };
    let upstream = Origin { origin: upstream.url.clone(), _process: upstream };
    if let Some(c) = args.hold {
        return hold_report(&args, &upstream.origin, c).await;
    }
    if args.floor {
        let status = Command::new(&args.spindle).args(["build", "--manifest", FLOOR_MANIFEST]).status()?;
        anyhow::ensure!(status.success(), "building {FLOOR_MANIFEST} failed ({status})");
    }
    let mut report = String::new();
    let _ = writeln!(report, "# spindle-bench\n");
    let _ = writeln!(
        report,
        "Upstream: fake OpenAI stream, {} tokens, {} ms to first token, 10 ms per token. `relay` is a native hyper relay (no wasm) doing the same relay; `spindle` runs the whole app of spin.toml (BM25 retrieval, rerank, prompt, then the relay). Ratios are spindle / relay in the same run. Both run at niceness {}, below the upstream and the clients. Machine: {} cores.\n",
        args.tokens,
        UPSTREAM_FIRST_TOKEN.as_millis(),
        args.target_nice,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    if args.floor {
        let _ = writeln!(
            report,
            "`wasm relay (floor)` is the relay's work done by one wasm component (components/relay-floor) on spindle's host: what having wasm on the token path costs before any pipeline.\n"
        );
    }
    for &c in &args.levels {
        let streams = args.streams.unwrap_or((3 * c).max(2000));
        eprintln!("C = {c}: {streams} streams per target");
        let relay = {
            let t = start_relay(&args, &upstream.origin)?;
            measure(&t, c, streams).await
        };
        let floor = if args.floor {
            let t = start_app(&args, &upstream.origin, FLOOR_MANIFEST.as_ref(), "/relay", &[])?;
            Some(measure(&t, c, streams).await)
        } else {
            None
        };
        let (spindle, spindle_idle) = {
            let t = start_spindle(&args, &upstream.origin)?;
            let m = measure(&t, c, streams).await;
            (m, idle_rss_mb(&t).await)
        };
        let journaled =
            if args.journal { Some(measure_journal(&args, &upstream.origin, c, streams).await?) } else { None };
        let spin = match &args.spin {
            Some(path) => {
                let t = start_spin(&args, path, &upstream.origin)?;
                let m = measure(&t, c, streams).await;
                let idle = idle_rss_mb(&t).await;
                Some((m, idle))
            }
            None => None,
        };
        let _ = writeln!(report, "## C = {c}, {streams} streams\n");
        let _ = writeln!(
            report,
            "| target | streams/s | first text p50 / p99 (ms) | overhead over upstream p50 / p99 (ms) | errors | peak RSS (MB) | CPU s / 1000 streams | total (s) |"
        );
        let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
        row(&mut report, "relay", &relay);
        if let Some(floor) = &floor {
            row(&mut report, "wasm relay (floor)", floor);
        }
        row(&mut report, "spindle", &spindle);
        if let Some((spin, _)) = &spin {
            row(&mut report, "spin up", spin);
        }
        let steps = spindle.steps.iter().map(|(s, ms)| format!("{s} {ms:.2} ms")).collect::<Vec<_>>();
        let _ = writeln!(
            report,
            "| **ratio** | {:.2}x | {:.2}x / {:.2}x | {:+.1} / {:+.1} ms | | {:.1}x | {:.2}x | |\n",
            spindle.streams_per_s() / relay.streams_per_s(),
            spindle.ttfe(0.5) / relay.ttfe(0.5),
            spindle.ttfe(0.99) / relay.ttfe(0.99),
            spindle.ttfe(0.5) - relay.ttfe(0.5),
            spindle.ttfe(0.99) - relay.ttfe(0.99),
            spindle.peak_rss_mb / relay.peak_rss_mb,
            spindle.cpu_per_1000() / relay.cpu_per_1000(),
        );
        if let Some(floor) = &floor {
            let _ = writeln!(
                report,
                "Floor: one wasm component doing the relay's work costs {:.2}x the relay's CPU per stream ({:.2}x its throughput, first text p50 / p99 {:+.1} / {:+.1} ms); the app costs {:.2}x the floor's CPU.\n",
                floor.cpu_per_1000() / relay.cpu_per_1000(),
                floor.streams_per_s() / relay.streams_per_s(),
                floor.ttfe(0.5) - relay.ttfe(0.5),
                floor.ttfe(0.99) - relay.ttfe(0.99),
                spindle.cpu_per_1000() / floor.cpu_per_1000(),
            );
        }
        if !steps.is_empty() {
            let _ = writeln!(report, "spindle's mean time per step: {}.\n", steps.join(", "));
        }
        if let Some((j, redis_cpu_s, redis_bytes)) = &journaled {
            let events = (j.outcome.streams * (args.tokens + 3)) as f64;
            let _ = writeln!(
                report,
                "Stream journal on (Redis on loopback): {:.2}x spindle's CPU per stream without it ({:+.1} µs of spindle CPU per event), Redis {:.1} µs CPU and {:.0} bytes of memory per event; first text p50 / p99 {:+.1} / {:+.1} ms, {} errors.\n",
                j.cpu_per_1000() / spindle.cpu_per_1000(),
                (j.cpu_s / j.outcome.streams as f64 - spindle.cpu_s / spindle.outcome.streams as f64) * 1e6
                    / (args.tokens + 3) as f64,
                redis_cpu_s * 1e6 / events,
                *redis_bytes as f64 / events,
                j.ttfe(0.5) - spindle.ttfe(0.5),
                j.ttfe(0.99) - spindle.ttfe(0.99),
                j.outcome.errors,
            );
        }
        if let Some((spin, spin_idle)) = &spin {
            let _ = writeln!(
                report,
                "`spin up` against the relay: {:.2}x its throughput, {:.2}x its CPU per stream. Against spindle: {:.2}x the throughput, {:.2}x the CPU per stream, first text p50 / p99 {:+.1} / {:+.1} ms, peak RSS {:.2}x; RSS idle 8 s after the load: spin up {spin_idle:.0} MB, spindle {spindle_idle:.0} MB.\n",
                spin.streams_per_s() / relay.streams_per_s(),
                spin.cpu_per_1000() / relay.cpu_per_1000(),
                spin.streams_per_s() / spindle.streams_per_s(),
                spin.cpu_per_1000() / spindle.cpu_per_1000(),
                spin.ttfe(0.5) - spindle.ttfe(0.5),
                spin.ttfe(0.99) - spindle.ttfe(0.99),
                spin.peak_rss_mb / spindle.peak_rss_mb,
            );
        } else {
            let _ = writeln!(report, "spindle's RSS idle 8 s after the load: {spindle_idle:.0} MB.\n");
        }
    }
    if args.soak > 0 {
        soak(start_spindle(&args, &upstream.origin)?, "spindle", args.soak, &mut report).await?;
        if let Some(spin) = &args.spin {
            soak(start_spin(&args, spin, &upstream.origin)?, "spin up", args.soak, &mut report).await?;
        }
    }
    println!("{report}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &report)?;
    eprintln!("Report written to {}", args.out.display());
    Ok(())
}
