//! `spindle check-step`: runs one step component alone against its
//! contract (`wit/`) and prints a pass/fail table: typed results, empty,
//! huge and non-ASCII input, `top_k`/`top_n` respected, errors returned as
//! `step-error` and never a trap, deadlines honoured, no growth over many
//! calls, a generator's stream ending with a finish reason. Each check runs
//! on a fresh instance (a trap spoils only its own check), inside the same
//! sandbox `spindle up` gives the step.

mod cases;
mod contract;

use crate::kv::{KvContext, Stores};
use crate::metrics::Metrics;
use crate::outbound::{AllowList, Outbound, SharedClient};
use crate::runtime::{self, ComponentConfig, Limits, StoreData};
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Component, ComponentNamedList, Instance, Lift, Linker, Lower};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Retriever,
    Reranker,
    Prompt,
    Generator,
}

impl Kind {
    /// The interface a step of this kind exports.
    fn interface(self) -> &'static str {
        match self {
            Kind::Retriever => "spindle:retriever/retriever@0.1.0",
            Kind::Reranker => "spindle:reranker/reranker@0.1.0",
            Kind::Prompt => "spindle:prompt/prompt@0.1.0",
            Kind::Generator => "spindle:generator/generator@0.1.0",
        }
    }
}

#[derive(clap::Args)]
pub struct CheckStepArgs {
    /// The step component (`.wasm`).
    component: PathBuf,
    /// Which step it is.
    #[arg(long)]
    kind: Kind,
    /// A variable the step reads (`name=value`), as `spin.toml` would give it.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// An origin the step may call (`allowed_outbound_hosts` syntax).
    #[arg(long = "allow-outbound", value_name = "ORIGIN")]
    allow_outbound: Vec<String>,
    /// Longest a single call may take, in ms.
    #[arg(long, default_value_t = 5_000)]
    deadline_ms: u64,
    /// Calls on one instance for the growth check.
    #[arg(long, default_value_t = 1_000)]
    calls: usize,
    /// Where compiled components are cached; `none` disables the cache.
    #[arg(long, default_value = ".spindle/cache")]
    cache_dir: String,
}

/// One row of the table.
pub struct Outcome {
    pub check: &'static str,
    pub result: Result<String, String>,
}

pub fn pass(check: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome { check, result: Ok(detail.into()) }
}

pub fn fail(check: &'static str, what_to_fix: impl Into<String>) -> Outcome {
    Outcome { check, result: Err(what_to_fix.into()) }
}

/// A loaded step: instantiates fresh copies and calls its functions.
pub struct Step {
    kind: Kind,
    engine: wasmtime::Engine,
    linker: Linker<StoreData>,
    component: Component,
    config: ComponentConfig,
    limits: Limits,
    pub deadline: Duration,
    pub calls: usize,
}

/// Why a call did not produce a value.
pub enum CallError {
    /// The step trapped (or the call could not be made).
    Trap(String),
    Timeout(Duration),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Trap(e) => write!(f, "trapped: {e} (return a step-error instead)"),
            CallError::Timeout(d) => write!(f, "no answer within {} ms", d.as_millis()),
        }
    }
}

/// A fresh instance of the step.
pub struct Live {
    pub store: Store<StoreData>,
    instance: Instance,
}

impl Step {
    pub async fn instance(&self) -> anyhow::Result<Live> {
        let mut store = runtime::new_store(&self.engine, "step", &self.config, &self.limits);
        let instance = self.linker.instantiate_async(&mut store, &self.component).await?;
        Ok(Live { store, instance })
    }

    /// Calls `func` of the step's interface on `live`, within the deadline.
    pub async fn call<P, R>(&self, live: &mut Live, func: &str, params: P) -> Result<(R, Duration), CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync + 'static,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let typed = (|| {
            let iface = live
                .instance
                .get_export_index(&mut live.store, None, self.kind.interface())
                .with_context(|| format!("the component does not export {}", self.kind.interface()))?;
            let f = live
                .instance
                .get_export_index(&mut live.store, Some(&iface), func)
                .with_context(|| format!("{} has no function `{func}`", self.kind.interface()))?;
            live.instance.get_typed_func::<P, R>(&mut live.store, &f).map_err(anyhow::Error::from)
        })()
        .map_err(|e| CallError::Trap(format!("{e:#}")))?;
        let started = Instant::now();
        match tokio::time::timeout(self.deadline, typed.call_async(&mut live.store, params)).await {
            Ok(Ok(r)) => {
                let took = started.elapsed();
                // Let what the call left running (a task finishing after
                // its return) run to completion, as the gateway's instance
                // would before its next request.
                let settle = live.store.run_concurrent(async |_| tokio::task::yield_now().await);
                match tokio::time::timeout(self.deadline, settle).await {
                    Ok(Ok(())) => Ok((r, took)),
                    Ok(Err(e)) => Err(CallError::Trap(format!("after returning: {}", trap_message(&e)))),
                    Err(_) => Err(CallError::Timeout(self.deadline)),
                }
            }
            Ok(Err(e)) => Err(CallError::Trap(trap_message(&e))),
            Err(_) => Err(CallError::Timeout(self.deadline)),
        }
    }

    /// Calls once on a fresh instance.
    pub async fn call_once<P, R>(&self, func: &str, params: P) -> Result<(R, Duration), CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync + 'static,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let mut live = self.instance().await.map_err(|e| CallError::Trap(format!("{e:#}")))?;
        self.call(&mut live, func, params).await
    }
}

/// A trap in one line: its cause, without the wasm backtrace.
fn trap_message(e: &wasmtime::Error) -> String {
    e.root_cause().to_string().lines().next().unwrap_or_default().to_string()
}

/// Host heap in use, in bytes (glibc), where it can be read.
pub fn heap_in_use() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        Some(unsafe { libc::mallinfo2() }.uordblks)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

pub async fn run(args: CheckStepArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.component).with_context(|| format!("cannot read {}", args.component.display()))?;
    let limits = Limits {
        max_memory: 256 << 20,
        request_timeout: Duration::from_secs(600),
        instance_reuse: 1,
        instance_concurrency: 1,
        max_instances: 50,
        cpu_limit: Duration::from_millis(args.deadline_ms.max(1000)),
        output_bytes_per_sec: 64 << 10,
    };
    let cache = (args.cache_dir != "none").then(|| PathBuf::from(&args.cache_dir));
    let engine = runtime::engine(cache.as_deref(), &limits)?;
    let linker = runtime::linker(&engine)?;
    let started = Instant::now();
    let component = Component::new(&engine, &wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a valid component", args.component.display()))?;
    let mut variables = HashMap::new();
    for v in &args.vars {
        let Some((k, val)) = v.split_once('=') else { bail!("--var {v:?}: expected NAME=VALUE") };
        variables.insert(k.to_string(), val.to_string());
    }
    let config = ComponentConfig {
        outbound: Outbound {
            allow: Arc::new(AllowList::parse(&args.allow_outbound)?),
            client: SharedClient::new(),
            cancel: Default::default(),
            metrics: Arc::new(Metrics::new()),
        },
        variables: variables.into(),
        environment: Vec::new(),
        kv: KvContext::new(Stores::load(None)?, Vec::new()),
        instances: Default::default(),
    };
    let step = Step {
        kind: args.kind,
        engine,
        linker,
        component,
        config,
        limits,
        deadline: Duration::from_millis(args.deadline_ms),
        calls: args.calls.max(10),
    };
    println!(
        "check-step {} as a {:?} step (compiled in {} ms)",
        args.component.display(),
        args.kind,
        started.elapsed().as_millis()
    );
    if let Err(e) = step.instance().await {
        println!("  FAIL  instantiate          {e:#}");
        bail!("the step cannot be instantiated");
    }
    let outcomes = match args.kind {
        Kind::Retriever => cases::retriever(&step).await,
        Kind::Reranker => cases::reranker(&step).await,
        Kind::Prompt => cases::prompt(&step).await,
        Kind::Generator => cases::generator(&step).await,
    };
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    for o in &outcomes {
        let (mark, text) = match &o.result {
            Ok(t) => ("PASS", t),
            Err(t) => ("FAIL", t),
        };
        println!("  {mark}  {:<22} {text}", o.check);
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}
