//! `spindle`: runs a Spin HTTP application (manifest v2) on wasmtime and
//! streams its responses.

mod app;
mod builder;
mod cancel;
mod check_step;
mod compose;
mod drain;
mod index;
mod kv;
mod live;
mod logfile;
mod manifest;
mod metrics;
mod observe;
mod outbound;
mod preflight;
mod redis_outbound;
mod routes;
mod runtime;
mod server;
mod spin_api;
mod variables;
mod watch;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "spindle", version, about = "Run a Spin HTTP app on wasmtime, streaming its responses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application.
    Up(UpArgs),
    /// Run every component's build command.
    Build {
        #[arg(long, short = 'f', default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// Check the manifest, compose and compile its components, then exit.
    Check(UpArgs),
    /// Run one step component alone against its contract and print a
    /// pass/fail table (non-zero exit if any check fails).
    CheckStep(check_step::CheckStepArgs),
    /// Load a JSON-lines corpus into the keyword index and vector store the
    /// manifest's variables configure.
    Index(index::IndexArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// The application manifest.
    #[arg(long, short = 'f', default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Run the build commands of the components the app runs (those its
    /// routes name and their dependencies) first.
    #[arg(long)]
    build: bool,
    /// Build first, then watch the manifest, the runtime config, each
    /// component's `[component.X.build] watch` globs and the sources of
    /// components without a build command; on a change, rebuild what
    /// changed and reload without dropping a request.
    #[arg(long)]
    watch: bool,
    /// Spin runtime config file; its `[key_value_store.default]` may point
    /// the default store at Redis (`type = "redis"`, `url = "redis://..."`).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Where compiled components are cached; `none` disables the cache.
    #[arg(long, default_value = ".spindle/cache")]
    cache_dir: String,
    /// Largest linear memory of one instance, in MiB.
    #[arg(long, default_value_t = 256)]
    max_memory_mb: usize,
    /// Deadline for one whole request, stream included, in seconds.
    #[arg(long, default_value_t = 600)]
    request_timeout_secs: u64,
    /// Longest time an instance may run wasm without pausing, in ms; a
    /// runaway loop is stopped after it.
    #[arg(long, default_value_t = 30_000)]
    cpu_limit_ms: u64,
    /// Bytes an instance may write to stdout and stderr together per
    /// second, in KiB; the rest of that second's output is dropped (with one
    /// warning per instance).
    #[arg(long, default_value_t = 64)]
    component_output_kib_per_sec: u64,
    /// Requests an instance serves before it is replaced. Every open stream
    /// keeps its instance alive, so at least open streams / this many
    /// instances exist at once, each with its own memories: a higher count
    /// means fewer instances, so less memory and CPU under many open
    /// streams. It is safe because steps leave nothing behind per call;
    /// replacing instances bounds whatever would. Measured in
    /// bench/RESULTS.md.
    #[arg(long, default_value_t = 1024)]
    max_instance_reuse_count: usize,
    /// Requests an instance takes at once; a streamed answer counts until
    /// its response starts, not for the whole stream.
    #[arg(long, default_value_t = 16)]
    max_instance_concurrent_reuse_count: usize,
    /// Origins allowed to call the API from a browser (CORS); `*` for any.
    #[arg(long = "cors-origin", env = "SPINDLE_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// API keys accepted as `Authorization: Bearer <key>`; none: no auth.
    #[arg(long = "api-key", env = "SPINDLE_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    api_keys: Vec<String>,
    /// How long open streams may finish after SIGTERM / Ctrl-C, in seconds.
    #[arg(long, default_value_t = 30)]
    drain_timeout_secs: u64,
    /// Where access.jsonl and queries.jsonl are written; `none` disables them.
    #[arg(long, default_value = ".spindle/logs")]
    log_dir: String,
    /// Size at which access.jsonl or queries.jsonl is rotated (renamed to
    /// `.1`, older ones shifting up), in MiB; 0 never rotates.
    #[arg(long, default_value_t = 100)]
    log_max_mb: u64,
    /// Rotated files kept per log (`.1` to `.N`); older ones are deleted.
    #[arg(long, default_value_t = 5)]
    log_keep: usize,
    /// Serve the chat page (`/`) and the API docs (`/docs`, `/openapi.json`)
    /// without an API key; the API stays protected, and the page asks for
    /// a key and keeps it for the browser tab.
    #[arg(long)]
    public_pages: bool,
    /// How long a client may take to send a request head, and how long an
    /// idle keep-alive connection stays open, in seconds.
    #[arg(long, default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// Largest request head (request line and headers), in KiB, at least 8;
    /// a larger one is answered 431.
    #[arg(long, default_value_t = 32)]
    max_header_kib: usize,
}

impl UpArgs {
    fn limits(&self) -> runtime::Limits {
        runtime::Limits {
            max_memory: self.max_memory_mb << 20,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            instance_reuse: self.max_instance_reuse_count.max(1),
            instance_concurrency: self.max_instance_concurrent_reuse_count.max(1),
            max_instances: 1000,
            cpu_limit: Duration::from_millis(self.cpu_limit_ms),
            output_bytes_per_sec: self.component_output_kib_per_sec.saturating_mul(1 << 10),
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Polling an instance that serves many requests at once nests deeply
    // (seen: a 2 MiB worker stack overflowed at 64 concurrent requests per
    // instance); stacks are reserved, not committed, so be generous.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(16 << 20).build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Build { manifest } => builder::build_all(&manifest::App::load(&manifest)?),
            Command::Check(args) => {
                let (app, server) = prepare(&args).await?;
                eprintln!("{}: OK, {} route(s)", app.path.display(), server.live.current().routes.len());
                Ok(())
            }
            Command::Up(args) => up(args).await,
            Command::CheckStep(args) => check_step::run(args).await,
            Command::Index(args) => tokio::task::block_in_place(|| index::run(args)),
        }
    })
}

async fn prepare(args: &UpArgs) -> anyhow::Result<(Arc<manifest::App>, server::Server)> {
    let app = Arc::new(manifest::App::load(&args.manifest)?);
    if args.build || args.watch {
        // What this app runs: a step that is in the manifest but not
        // plugged in (and its toolchain) is not needed to serve.
        tokio::task::block_in_place(|| builder::build_some(&app, &builder::in_use(&app)))?;
    }
    let cache = (args.cache_dir != "none").then(|| app.dir.join(&args.cache_dir));
    let logs = (args.log_dir != "none").then(|| app.dir.join(&args.log_dir));
    let rotation = logfile::Rotation { max_bytes: args.log_max_mb.saturating_mul(1 << 20), keep: args.log_keep };
    let observer = observe::Observer::start(Arc::new(metrics::Metrics::new()), logs, rotation)?;
    let settings = server::Settings {
        cors_origins: args.cors_origins.clone(),
        api_keys: args.api_keys.iter().filter(|k| !k.is_empty()).cloned().collect(),
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
        max_header_bytes: args.max_header_kib.max(1) << 10,
        public_pages: args.public_pages,
    };
    let platform = app::Platform::new(cache.as_deref(), &args.limits(), observer)?;
    let live = live::LiveApp::start(platform, &app, args.runtime_config_file.as_deref()).await?;
    Ok((app, server::Server::new(Arc::new(live), settings)))
}

/// Binds with a deep accept backlog: bursts of thousands of SSE clients
/// would otherwise overflow the default and wait for SYN retries (1 s+).
fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = addr.to_socket_addrs()?.next().context("no address")?;
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(8192)?)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// SIGHUP reloads the app from disk (no rebuild).
async fn reload_on_hangup(mut hup: tokio::signal::unix::Signal, live: Arc<live::LiveApp>) {
    while hup.recv().await.is_some() {
        // The outcome is logged and counted by the reload itself.
        let _ = live.reload(live::Rebuild::Nothing, "SIGHUP").await;
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let (app, server) = prepare(&args).await?;
    let server = Arc::new(server);
    // Before serving: a SIGHUP in between would otherwise end the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    tokio::spawn(reload_on_hangup(hangup, server.live.clone()));
    if args.watch {
        let watch = watch::Watch::start(server.live.clone(), args.runtime_config_file.clone())?;
        tokio::spawn(watch.run());
    }
    let listener = listen(&args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("Serving http://{addr}");
    println!("Available routes:");
    for t in &app.manifest.trigger.http {
        println!("  {}: http://{addr}{}", t.component, t.route);
    }
    println!("  host: http://{addr}/healthz, http://{addr}/readyz, http://{addr}/metrics");
    println!("Chat page: http://{addr}/  API docs: http://{addr}/docs  (API: /api/chat/stream, /v1/chat/completions)");
    println!("Revision {}: reload with SIGHUP or POST /admin/reload", server.live.current().revision);
    server::serve(listener, server, shutdown_signal()).await
}
