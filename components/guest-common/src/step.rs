//! What every exported step function (retrieve, rerank, build, info,
//! generate) does before its own work.

/// Suspends the calling task once, so that the step never returns to its
/// caller within the call itself.
///
/// Why: wasmtime 48.0.8 never deletes the callee's task record when an
/// async-lowered call between two components returns before the call
/// intrinsic does. `Instance::start_call` takes the callee's `Returned`
/// event and hands the caller no subtask handle (so there is no
/// `subtask.drop`), and deletes the task only for sync-lowered callers;
/// 50.0.1 reads the same. A step that computes without awaiting (BM25, the
/// lexical reranker, the prompt, `info`, the extractive generator, any
/// validation error) did exactly that, and each call left its task in the
/// instance's store until the instance was dropped: about 1.8 KB of host
/// heap per request at C = 100 (heaptrack: `GuestTask::new` under
/// `prepare_call` held every allocation it made). Suspending once makes the
/// caller take the subtask handle, whose `subtask.drop` frees the record.
/// The cost is one extra turn of the instance's event loop per step.
pub async fn yield_before_work() {
    wit_bindgen::yield_async().await;
}
