//! The wasmtime side: the engine (pooling allocator, compiled-code cache,
//! epoch interruption), the linker with WASI 0.2 + 0.3, `wasi:http@0.3` and
//! Spin's APIs, and one instance pool per HTTP component driven by
//! wasmtime-wasi-http's `ProxyHandler` (WASI 0.3 instance reuse). What
//! instances write to stdout and stderr reaches the host's, within a byte
//! budget per second ([`LimitedOutput`]).

use crate::kv::{self, KvContext, KvView};
use crate::outbound::Outbound;
use crate::redis_outbound::{self, RedisContext, RedisView};
use crate::variables::{self, ComponentVariables};
use anyhow::Context as _;
use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    CallHook, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreContextMut, StoreLimits,
    StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    self, HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How often the epoch advances. Running wasm yields to other streams at
/// every tick, so this bounds how long a CPU-bound step can hold a thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Runtime limits, from the command line.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest linear memory of any one instance, in bytes.
    pub max_memory: usize,
    /// Deadline for a whole request, stream included.
    pub request_timeout: Duration,
    /// Requests one instance serves before it is replaced.
    pub instance_reuse: usize,
    /// Requests one instance takes at once (each until its response starts).
    pub instance_concurrency: usize,
    /// Instances the pooling allocator keeps room for.
    pub max_instances: u32,
    /// Longest stretch an instance may run wasm without pausing; past it
    /// the instance is stopped (a runaway loop).
    pub cpu_limit: Duration,
    /// Bytes one instance may write to stdout and stderr together per
    /// second; the rest of that second's output is dropped.
    pub output_bytes_per_sec: u64,
}

/// Builds the engine shared by every component.
pub fn engine(cache_dir: Option<&Path>, limits: &Limits) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    // `perf record` can name wasm functions only through a perf map
    // (/tmp/perf-<pid>.map); off by default, it costs a write per function.
    if std::env::var_os("SPINDLE_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let mut pool = PoolingAllocationConfig::default();
    // A composed app has one core instance, memory and table per step
    // component plus adapters: room for 16 of each per component instance.
    pool.total_component_instances(limits.max_instances)
        .total_core_instances(limits.max_instances * 16)
        .total_memories(limits.max_instances * 16)
        .total_tables(limits.max_instances * 16)
        .total_stacks(limits.max_instances * 4)
        .max_memory_size(limits.max_memory)
        .max_memories_per_component(32)
        .max_tables_per_component(64)
        .max_core_instances_per_component(64);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = cache_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create cache directory {}", dir.display()))?;
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(std::fs::canonicalize(dir)?);
        config.cache(Some(wasmtime::Cache::new(cache)?));
    }
    // Wasmtime's 64-bit default reservation of 4 GiB per linear memory lets
    // compiled code skip bounds checks; with less, every load and store is
    // checked (with a Spectre guard). It is address space, not memory: the
    // pool reserves it up front (about 63 TiB for 16,000 memories, of the
    // 128 TiB a process may address) and `max_memory_size` still caps each
    // memory. Skipping the checks saves CPU on every guest memory access
    // (bench/RESULTS.md, "4 GiB address-space reservation per memory").
    // Where the address space is capped (`ulimit -v`), the pool cannot be
    // mapped: fall back to reserving only the memory limit.
    let engine = match Engine::new(&config) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::warn!(
                "cannot reserve 4 GiB of address space per linear memory ({e:#}); reserving {} MiB each instead, \
                 which makes guests check every memory access",
                limits.max_memory >> 20
            );
            config.memory_reservation(limits.max_memory as u64);
            Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasm engine's memory pool: {e:#}"))?
        }
    };
    let ticker = engine.weak();
    std::thread::Builder::new().name("epoch".into()).spawn(move || {
        while let Some(engine) = ticker.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    })?;
    Ok(engine)
}

/// What one instance's store holds.
pub struct StoreData {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Outbound,
    variables: ComponentVariables,
    kv: KvContext,
    redis: RedisContext,
    limits: Limiter,
    busy: Busy,
}

impl StoreData {
    /// Bytes the instance's memories have grown by since it started.
    pub fn memory_grown(&self) -> usize {
        self.limits.grown
    }
}

/// The memory limit, counting what the instance's memories grow by.
struct Limiter {
    limits: StoreLimits,
    grown: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.grown += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// When the instance's current stretch of running wasm began, as seen by
/// epoch ticks. A stretch is one call into wasm that has not returned: a
/// step in a loop that never awaits or returns. Counting crossings, not idle ticks, matters under load:
/// a saturated instance is running *some* task at every tick for as long as
/// the load lasts, and an idle-tick rule stopped healthy instances (and
/// every stream on them) after 30 s of saturation.
struct Busy {
    last_tick: Instant,
    since: Instant,
    /// Calls into wasm and returns from it so far, and at the last tick.
    crossings: u64,
    seen: u64,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Everything the components may import from the host.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    // Rust std on wasm32-wasip2 imports the 0.2 interfaces; spin-sdk 7 the 0.3 ones.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    variables::add_to_linker(&mut linker, |d: &mut StoreData| &d.variables)?;
    kv::add_to_linker(&mut linker, |d: &mut StoreData| KvView { table: &mut d.table, ctx: &d.kv })?;
    redis_outbound::add_to_linker(&mut linker, |d: &mut StoreData| RedisView { table: &mut d.table, ctx: &d.redis })?;
    Ok(linker)
}

/// One HTTP component ready to serve: its pre-instance and configuration.
pub struct ComponentRuntime {
    pub id: String,
    engine: Engine,
    pre: ProxyPre<StoreData>,
    config: ComponentConfig,
    limits: Limits,
}

/// What a component's instances are given, from the manifest.
pub struct ComponentConfig {
    pub outbound: Outbound,
    pub variables: ComponentVariables,
    pub environment: Vec<(String, String)>,
    /// The key-value stores it may open.
    pub kv: KvContext,
    /// Counts live instances (exported as `spindle_instances`).
    pub instances: prometheus_client::metrics::gauge::Gauge,
}

impl ComponentRuntime {
    pub fn new(
        id: &str,
        engine: &Engine,
        linker: &Linker<StoreData>,
        wasm: &[u8],
        config: ComponentConfig,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let component = Component::new(engine, wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling component {id:?}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("linking component {id:?}"))?;
        let pre = ServicePre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component {id:?} does not export wasi:http/handler@0.3"))?;
        Ok(ComponentRuntime { id: id.to_string(), engine: engine.clone(), pre: ProxyPre::P3(pre), config, limits })
    }

    /// Instantiates once and drops the instance: a component that traps
    /// while starting fails here, before it serves.
    pub async fn try_instance(&self) -> anyhow::Result<()> {
        let mut store = self.new_store();
        self.pre.instantiate_async(&mut store).await.map_err(anyhow::Error::from)?;
        Ok(())
    }

    fn new_store(&self) -> Store<StoreData> {
        new_store(&self.engine, &self.id, &self.config, &self.limits)
    }
}

/// A store for one instance of component `id`, with its sandbox: memory
/// limit, CPU limit, output budget, outbound rules and variables.
pub fn new_store(engine: &Engine, id: &str, config: &ComponentConfig, limits: &Limits) -> Store<StoreData> {
    let mut wasi = WasiCtx::builder();
    let budget = Arc::new(Mutex::new(OutputBudget::new(id, limits.output_bytes_per_sec)));
    wasi.stdout(LimitedOutput { to: Stdio::Out, budget: budget.clone() })
        .stderr(LimitedOutput { to: Stdio::Err, budget });
    for (k, v) in &config.environment {
        wasi.env(k, v);
    }
    let data = StoreData {
        table: ResourceTable::new(),
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        hooks: config.outbound.clone(),
        variables: config.variables.clone(),
        kv: config.kv.clone(),
        redis: RedisContext::new(config.outbound.allow.clone()),
        limits: Limiter {
            limits: StoreLimitsBuilder::new().memory_size(limits.max_memory).trap_on_grow_failure(true).build(),
            grown: 0,
        },
        busy: Busy { last_tick: Instant::now(), since: Instant::now(), crossings: 0, seen: 0 },
    };
    let mut store = Store::new(engine, data);
    store.limiter(|d| &mut d.limits);
    // At every epoch tick running wasm yields to other work, so a
    // CPU-heavy step does not hold a thread; a stretch of running longer
    // than the CPU limit is a runaway and traps the instance.
    let cpu_limit = limits.cpu_limit;
    store.call_hook(|mut ctx, hook| {
        // Only calls into wasm and returns from it: the epoch tick is
        // itself a call out to the host, made by the runaway loop too.
        if matches!(hook, CallHook::CallingWasm | CallHook::ReturningFromWasm) {
            ctx.data_mut().busy.crossings += 1;
        }
        Ok(())
    });
    store.epoch_deadline_callback(move |mut ctx| {
        let now = Instant::now();
        let busy = &mut ctx.data_mut().busy;
        if busy.crossings != busy.seen || now.duration_since(busy.last_tick) > EPOCH_TICK * 5 {
            busy.since = now;
            busy.seen = busy.crossings;
        }
        busy.last_tick = now;
        if now.duration_since(busy.since) > cpu_limit {
            tracing::warn!("an instance ran wasm for over {cpu_limit:?} without pausing: stopping it");
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Yield(1))
    });
    store.set_epoch_deadline(1);
    store
}

impl HandlerState for ComponentRuntime {
    type StoreData = StoreData;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<StoreData, Expiration, Worker>> {
        let mut store = self.new_store();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.config.instances.inc();
        Ok(Instance {
            store,
            proxy,
            view: <StoreData as WasiHttpView>::http,
            expiration: Expiration {
                idle: IDLE_INSTANCE_TIMEOUT,
                request: self.limits.request_timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX / 4)),
            },
            state: Worker {
                id: self.id.clone(),
                limits: self.limits.clone(),
                instances: self.config.instances.clone(),
            },
        })
    }
}

/// An instance with no request for this long is dropped.
const IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(5);

/// When an instance expires: idle too long, or a request past its deadline.
pub struct Expiration {
    idle: Duration,
    request: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, status: WorkerStatus, start: Instant) -> Poll<()> {
        let me = self.get_mut();
        let limit = if status == WorkerStatus::Idle { me.idle } else { me.request };
        let Some(deadline) = start.checked_add(limit) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if me.sleep.deadline() != deadline {
            me.sleep.as_mut().reset(deadline);
        }
        me.sleep.as_mut().poll(cx)
    }
}

/// Reuse policy of one instance.
pub struct Worker {
    id: String,
    limits: Limits,
    instances: prometheus_client::metrics::gauge::Gauge,
}

impl WorkerState for Worker {
    type StoreData = StoreData;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.limits.instance_reuse {
            ShouldAccept::Never
        } else if concurrent >= self.limits.instance_concurrency {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, StoreData>,
        _data: (),
        _task: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        Box::pin(tokio::time::sleep(self.limits.request_timeout))
    }

    fn drop(&self, store: Store<StoreData>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(component = %self.id, "instance ended with an error: {e:?}");
        }
        drop(store);
        if self.instances.dec() == 1 {
            release_freed_heap();
        }
    }
}

/// Hands freed heap pages back to the system once the last instance is
/// gone (the app is idle, or a replaced app has drained). glibc's malloc
/// keeps them otherwise: after a load peak with two apps loaded, the
/// process stayed 18% above its earlier idle size without this.
/// At most one trim is pending; it runs a second after it was asked for,
/// so a server going idle between single requests does not trim each time.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static PENDING: AtomicBool = AtomicBool::new(false);
        if PENDING.swap(true, Ordering::AcqRel) {
            return;
        }
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            PENDING.store(false, Ordering::Release);
            // SAFETY: malloc_trim only returns free pages; it is thread-safe.
            unsafe { libc::malloc_trim(0) };
        });
    }
}

/// The handler type the server routes to.
pub type Handler = handler::ProxyHandler<ComponentRuntime>;

/// What one instance may still write to stdout and stderr this second.
struct OutputBudget {
    component: String,
    per_sec: u64,
    window: Instant,
    used: u64,
    warned: bool,
}

impl OutputBudget {
    fn new(component: &str, per_sec: u64) -> Self {
        OutputBudget { component: component.to_string(), per_sec, window: Instant::now(), used: 0, warned: false }
    }

    /// How many of `len` bytes written at `now` go out; the rest are
    /// dropped, and the first drop of the instance is reported.
    fn take(&mut self, len: usize, now: Instant) -> usize {
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        let allowed = self.per_sec.saturating_sub(self.used).min(len as u64);
        self.used += allowed;
        if allowed < len as u64 && !self.warned {
            self.warned = true;
            tracing::warn!(
                component = %self.component,
                "an instance wrote more than {} bytes a second to stdout/stderr: the excess is dropped \
                 (reported once per instance)",
                self.per_sec
            );
        }
        allowed as usize
    }
}

#[derive(Clone, Copy)]
enum Stdio {
    Out,
    Err,
    /// Nowhere, for tests.
    #[cfg(test)]
    Discard,
}

/// The host's stdout or stderr as an instance sees it, sharing the
/// instance's [`OutputBudget`]. Writes past the budget, and writes the host
/// fails, are dropped while the guest is told they succeeded: a log line
/// is never worth failing a request for. Serves both the WASI 0.2 stream
/// and the 0.3 one, writing synchronously as wasmtime-wasi's own stdio does.
#[derive(Clone)]
struct LimitedOutput {
    to: Stdio,
    budget: Arc<Mutex<OutputBudget>>,
}

impl LimitedOutput {
    fn write(&self, bytes: &[u8]) {
        let n = self.budget.lock().unwrap().take(bytes.len(), Instant::now());
        if n > 0 {
            let _ = match self.to {
                Stdio::Out => std::io::stdout().write_all(&bytes[..n]),
                Stdio::Err => std::io::stderr().write_all(&bytes[..n]),
                #[cfg(test)]
                Stdio::Discard => Ok(()),
            };
        }
    }

    fn flush(&self) {
        let _ = match self.to {
            Stdio::Out => std::io::stdout().flush(),
            Stdio::Err => std::io::stderr().flush(),
            #[cfg(test)]
            Stdio::Discard => Ok(()),
        };
    }
}

impl IsTerminal for LimitedOutput {
    fn is_terminal(&self) -> bool {
        match self.to {
            Stdio::Out => std::io::IsTerminal::is_terminal(&std::io::stdout()),
            Stdio::Err => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            #[cfg(test)]
            Stdio::Discard => false,
        }
    }
}

impl StdoutStream for LimitedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LimitedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        LimitedOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        LimitedOutput::flush(self);
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LimitedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LimitedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        LimitedOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        LimitedOutput::flush(&self);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_budget_is_dropped_until_the_next_second() {
        let start = Instant::now();
        let mut b = OutputBudget::new("c", 100);
        b.window = start;
        assert_eq!(b.take(60, start), 60);
        assert!(!b.warned);
        // The write that crosses the budget is cut, the next ones dropped.
        assert_eq!(b.take(60, start + Duration::from_millis(10)), 40);
        assert!(b.warned, "the first drop is reported");
        assert_eq!(b.take(1, start + Duration::from_millis(999)), 0);
        // A new second, a new budget; the warning is not repeated.
        assert_eq!(b.take(100, start + Duration::from_millis(1000)), 100);
        assert_eq!(b.take(1_000_000, start + Duration::from_millis(1500)), 0);
        assert_eq!(b.take(1_000_000, start + Duration::from_secs(5)), 100);
    }

    #[tokio::test]
    async fn both_streams_of_an_instance_share_one_budget() {
        use tokio::io::AsyncWriteExt;
        let budget = Arc::new(Mutex::new(OutputBudget::new("c", 8)));
        let out = LimitedOutput { to: Stdio::Discard, budget: budget.clone() };
        let err = LimitedOutput { to: Stdio::Discard, budget: budget.clone() };
        // WASI 0.2: the guest is told every byte was written.
        let mut p2 = out.p2_stream();
        p2.write(bytes::Bytes::from_static(b"12345")).unwrap();
        // WASI 0.3: likewise.
        let mut p3 = Box::into_pin(err.async_stream());
        assert_eq!(p3.write(b"67890").await.unwrap(), 5);
        p3.flush().await.unwrap();
        let b = budget.lock().unwrap();
        assert_eq!(b.used, 8);
        assert!(b.warned);
    }
}
