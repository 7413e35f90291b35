//! `spindle`: runs a Spin HTTP application (manifest v2) on wasmtime and
//! streams its responses.

mod app;
mod builder;
mod cancel;
mod compose;
mod manifest;
mod outbound;
mod routes;
mod runtime;
mod server;
mod variables;

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
}

#[derive(clap::Args)]
struct UpArgs {
    /// The application manifest.
    #[arg(long, short = 'f', default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Run each component's build command first.
    #[arg(long)]
    build: bool,
    /// Where compiled components are cached; `none` disables the cache.
    #[arg(long, default_value = ".spindle/cache")]
    cache_dir: String,
    /// Largest linear memory of one instance, in MiB.
    #[arg(long, default_value_t = 256)]
    max_memory_mb: usize,
    /// Deadline for one whole request, stream included, in seconds.
    #[arg(long, default_value_t = 600)]
    request_timeout_secs: u64,
    /// Requests an instance serves before it is replaced.
    #[arg(long, default_value_t = 128)]
    max_instance_reuse_count: usize,
    /// Requests an instance serves at the same time.
    #[arg(long, default_value_t = 16)]
    max_instance_concurrent_reuse_count: usize,
}

impl UpArgs {
    fn limits(&self) -> runtime::Limits {
        runtime::Limits {
            max_memory: self.max_memory_mb << 20,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            instance_reuse: self.max_instance_reuse_count.max(1),
            instance_concurrency: self.max_instance_concurrent_reuse_count.max(1),
            max_instances: 1000,
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Build { manifest } => builder::build_all(&manifest::App::load(&manifest)?),
            Command::Check(args) => {
                let (app, router) = prepare(&args)?;
                eprintln!("{}: OK, {} route(s)", app.path.display(), router.routes.len());
                Ok(())
            }
            Command::Up(args) => up(args).await,
        }
    })
}

fn prepare(args: &UpArgs) -> anyhow::Result<(manifest::App, server::Router)> {
    let app = manifest::App::load(&args.manifest)?;
    if args.build {
        builder::build_all(&app)?;
    }
    let cache = (args.cache_dir != "none").then(|| app.dir.join(&args.cache_dir));
    let router = app::load(&app, cache.as_deref(), &args.limits())?;
    Ok((app, router))
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let (app, router) = tokio::task::block_in_place(|| prepare(&args))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("Serving http://{addr}");
    println!("Available routes:");
    for t in &app.manifest.trigger.http {
        println!("  {}: http://{addr}{}", t.component, t.route);
    }
    let server = tokio::spawn(server::serve(listener, Arc::new(router)));
    tokio::select! {
        r = server => r??,
        _ = tokio::signal::ctrl_c() => eprintln!("Shutting down"),
    }
    Ok(())
}
