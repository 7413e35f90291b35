//! What every exported step function (retrieve, rerank, build, info,
//! generate) does when it starts.

/// Keeps the calling task alive for one turn of the instance's event loop
/// after the step returns its value: the value goes back at once, and the
/// task exits a moment later.
///
/// Why: wasmtime 48.0.8 never deletes the callee's task record when an
/// async-lowered call between two components returns before the call
/// intrinsic does. `Instance::start_call` takes the callee's `Returned`
/// event and hands the caller no subtask handle (so there is no
/// `subtask.drop`), and deletes the task only for sync-lowered callers;
/// 50.0.1 reads the same. A step that computes without awaiting (BM25, the
/// lexical reranker, the prompt, `info`, the extractive generator, any
/// validation error) did exactly that, and each call left its task in the
/// instance's store until the instance was dropped: about 2 KB of host heap
/// per request (heaptrack: `GuestTask::new` under `prepare_call` held every
/// allocation it made). A task that exits *after* its caller took the
/// `Returned` event is deleted when it exits.
///
/// Not a yield before the work: a yielded task waits in wasmtime's
/// low-priority queue, which runs only when no other work is ready, and at
/// 9,000 open streams steps waited there past their deadlines (5 and 10 s).
/// Here only the exit waits; the answer does not.
pub fn exit_after_returning() {
    wit_bindgen::spawn(wit_bindgen::yield_async());
}
