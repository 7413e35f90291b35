//! The checks of each step kind. Every check names what it saw when it
//! passes and what to fix when it fails.

use super::contract::{Chunk, GenerateOptions, GeneratorInfo, Message, Passage, Query, Retrieval, Role, StepError};
use super::{CallError, Live, Outcome, Step, fail, heap_in_use, pass};
use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::StoreContextMut;
use wasmtime::component::{Source, StreamConsumer, StreamReader, StreamResult};

const QUESTION: &str = "how do I install a package";
const CJK_QUESTION: &str = "如何安装软件包？ 🚀";
/// Host heap a call may leave behind on average (noise from the
/// allocator's own bookkeeping stays well below it).
const MAX_HOST_BYTES_PER_CALL: i64 = 256;
/// Linear memory an instance may grow by over the growth check.
const MAX_GUEST_GROWTH: usize = 8 << 20;
/// Calls before the growth check starts measuring (caches fill, pools grow).
const WARM_UP: usize = 50;

fn request_id() -> String {
    "check-step".to_string()
}

fn passage(i: usize, text: String) -> Passage {
    Passage {
        id: format!("p{i}"),
        title: Some(format!("Passage {i}")),
        url: Some(format!("https://example.org/{i}")),
        score: 1.0 / (i + 1) as f32,
        metadata: vec![("lang".into(), "en".into())],
        text,
    }
}

/// `n` passages, half of them about installing packages.
fn passages(n: usize) -> Vec<Passage> {
    (0..n)
        .map(|i| {
            let text = if i % 2 == 0 {
                format!(
                    "To install a package run apt install NAME; package {i} is then installed with its dependencies."
                )
            } else {
                format!("Section {i} describes the history of the project and its release names.")
            };
            passage(i, text)
        })
        .collect()
}

fn cjk_passages() -> Vec<Passage> {
    [
        "使用 apt install 安装软件包，依赖会自动安装。",
        "Debian 的发行版以《玩具总动员》的角色命名。 🎬",
        "Ünïcödé tëxt with ẞ, ﬁ ligatures and 😀 emoji.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| passage(i, t.to_string()))
    .collect()
}

/// 1,000 passages of about 4 KB each.
fn huge_passages() -> Vec<Passage> {
    (0..1000).map(|i| passage(i, "install package dependencies ".repeat(140))).collect()
}

fn huge_question() -> String {
    "install package ".repeat(125)
}

fn query(text: &str, top_k: u32) -> Query {
    Query { text: text.to_string(), history: Vec::new(), top_k, filters: Vec::new(), request_id: request_id() }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// What a reranker or retriever returned, against what it was given.
fn check_passages(
    name: &'static str,
    given: Option<&[Passage]>,
    got: &[Passage],
    limit: u32,
    took: Duration,
) -> Outcome {
    if got.len() > limit as usize {
        return fail(
            name,
            format!("returned {} passages for a limit of {limit}: cut the list to the limit", got.len()),
        );
    }
    let mut seen = HashSet::new();
    for p in got {
        if p.id.is_empty() {
            return fail(name, "a passage has an empty id: ids identify passages for de-duplication and citations");
        }
        if !seen.insert(&p.id) {
            return fail(name, format!("passage {:?} is returned twice: return each at most once", p.id));
        }
        if let Some(given) = given {
            match given.iter().find(|g| g.id == p.id) {
                None => {
                    return fail(
                        name,
                        format!("passage {:?} was not among the input: return only given passages", p.id),
                    );
                }
                Some(g) if g.text != p.text => {
                    return fail(name, format!("passage {:?} came back with other text: keep text as given", p.id));
                }
                Some(_) => {}
            }
        }
        if !p.score.is_finite() {
            return fail(name, format!("passage {:?} has score {}: scores must be finite", p.id, p.score));
        }
    }
    let of = given.map(|g| format!(" of {}", g.len())).unwrap_or_default();
    pass(name, format!("{}{of} passages, limit {limit}, ids unique, in {}", got.len(), ms(took)))
}

/// Runs `call` `step.calls` times on one instance and compares the host
/// heap and the instance's memory before and after.
async fn growth<F>(step: &Step, mut call: F) -> Outcome
where
    F: AsyncFnMut(&mut Live) -> Result<(), String>,
{
    const NAME: &str = "no growth";
    let mut live = match step.instance().await {
        Ok(l) => l,
        Err(e) => return fail(NAME, format!("{e:#}")),
    };
    for _ in 0..WARM_UP {
        if let Err(e) = call(&mut live).await {
            return fail(NAME, e);
        }
    }
    let (heap0, mem0) = (heap_in_use(), live.store.data().memory_grown());
    for _ in 0..step.calls {
        if let Err(e) = call(&mut live).await {
            return fail(NAME, e);
        }
    }
    let (heap1, mem1) = (heap_in_use(), live.store.data().memory_grown());
    let guest = mem1 - mem0;
    if guest > MAX_GUEST_GROWTH {
        return fail(
            NAME,
            format!(
                "the instance's memory grew by {} KiB over {} calls: the step keeps something per call",
                guest >> 10,
                step.calls
            ),
        );
    }
    let per_call = match (heap0, heap1) {
        (Some(a), Some(b)) => Some((b as i64 - a as i64) / step.calls as i64),
        _ => None,
    };
    match per_call {
        Some(bytes) if bytes > MAX_HOST_BYTES_PER_CALL => fail(
            NAME,
            format!(
                "each call leaves about {bytes} bytes in the host: a call that returns without ever suspending \
                 keeps its task record until the instance is dropped; suspend once (await a yield) before returning"
            ),
        ),
        Some(bytes) => pass(
            NAME,
            format!("{} calls: host heap {bytes:+} B/call, instance memory +{} KiB", step.calls, guest >> 10),
        ),
        None => pass(
            NAME,
            format!("{} calls: instance memory +{} KiB (host heap not measurable here)", step.calls, guest >> 10),
        ),
    }
}

/// The outcome of a call that may return a step-error: `Ok` is the
/// step's own result.
fn returned<T>(
    name: &'static str,
    r: Result<((Result<T, StepError>,), Duration), CallError>,
) -> Result<(Result<T, StepError>, Duration), Outcome> {
    r.map(|((v,), t)| (v, t)).map_err(|e| fail(name, e.to_string()))
}

/// An input the step may refuse (with a step-error) but must not trap on.
fn tolerated<T>(
    name: &'static str,
    r: Result<((Result<T, StepError>,), Duration), CallError>,
    check: impl FnOnce(T, Duration) -> Outcome,
) -> Outcome {
    match returned(name, r) {
        Ok((Ok(v), t)) => check(v, t),
        Ok((Err(e), t)) => pass(name, format!("refused with {e} in {}", ms(t))),
        Err(o) => o,
    }
}

pub async fn reranker(step: &Step) -> Vec<Outcome> {
    type R = (Result<Vec<Passage>, StepError>,);
    let given = passages(8);
    let mut out = Vec::new();
    let r = step.call_once::<_, R>("rerank", (QUESTION.to_string(), given.clone(), 3u32, request_id())).await;
    out.push(match returned("typed result", r) {
        Ok((Ok(got), t)) => check_passages("typed result", Some(&given), &got, 3, t),
        Ok((Err(e), _)) => fail("typed result", format!("returned {e} for a plain question and 8 passages")),
        Err(o) => o,
    });
    let r = step.call_once::<_, R>("rerank", (QUESTION.to_string(), given.clone(), 1u32, request_id())).await;
    out.push(tolerated("top-n respected", r, |got, t| check_passages("top-n respected", Some(&given), &got, 1, t)));
    let r = step.call_once::<_, R>("rerank", (QUESTION.to_string(), Vec::<Passage>::new(), 3u32, request_id())).await;
    out.push(tolerated("no passages", r, |got, t| check_passages("no passages", Some(&[]), &got, 0, t)));
    let r = step.call_once::<_, R>("rerank", (String::new(), given.clone(), 3u32, request_id())).await;
    out.push(tolerated("empty query", r, |got, t| check_passages("empty query", Some(&given), &got, 3, t)));
    let cjk = cjk_passages();
    let r = step.call_once::<_, R>("rerank", (CJK_QUESTION.to_string(), cjk.clone(), 3u32, request_id())).await;
    out.push(tolerated("non-ASCII", r, |got, t| check_passages("non-ASCII", Some(&cjk), &got, 3, t)));
    let huge = huge_passages();
    let r = step.call_once::<_, R>("rerank", (huge_question(), huge.clone(), 10u32, request_id())).await;
    out.push(tolerated("huge input", r, |got, t| check_passages("huge input", Some(&huge), &got, 10, t)));
    out.push(
        growth(step, async |live: &mut Live| {
            let r = step.call::<_, R>(live, "rerank", (QUESTION.to_string(), given.clone(), 3u32, request_id())).await;
            r.map(|_| ()).map_err(|e| e.to_string())
        })
        .await,
    );
    out
}

pub async fn retriever(step: &Step) -> Vec<Outcome> {
    type R = (Result<Retrieval, StepError>,);
    let mut out = Vec::new();
    let r = step.call_once::<_, R>("retrieve", (query(QUESTION, 5),)).await;
    out.push(match returned("typed result", r) {
        Ok((Ok(got), t)) => check_passages("typed result", None, &got.passages, 5, t),
        Ok((Err(e), _)) => fail(
            "typed result",
            format!("returned {e}; if the step needs a service, give its settings with --var and --allow-outbound"),
        ),
        Err(o) => o,
    });
    let r = step.call_once::<_, R>("retrieve", (query(QUESTION, 1),)).await;
    out.push(tolerated("top-k respected", r, |got, t| check_passages("top-k respected", None, &got.passages, 1, t)));
    let r = step.call_once::<_, R>("retrieve", (query("", 5),)).await;
    out.push(tolerated("empty query", r, |got, t| check_passages("empty query", None, &got.passages, 5, t)));
    let r = step.call_once::<_, R>("retrieve", (query(CJK_QUESTION, 5),)).await;
    out.push(tolerated("non-ASCII", r, |got, t| check_passages("non-ASCII", None, &got.passages, 5, t)));
    let r = step.call_once::<_, R>("retrieve", (query(&huge_question(), 100),)).await;
    out.push(tolerated("huge input", r, |got, t| check_passages("huge input", None, &got.passages, 100, t)));
    out.push(
        growth(step, async |live: &mut Live| {
            let r = step.call::<_, R>(live, "retrieve", (query(QUESTION, 5),)).await;
            r.map(|_| ()).map_err(|e| e.to_string())
        })
        .await,
    );
    out
}

/// What a prompt step built, against the question it was given.
fn check_messages(name: &'static str, question: &str, sources: bool, got: &[Message], took: Duration) -> Outcome {
    let Some(last) = got.last() else {
        return fail(name, "returned no messages: at least the question, as the last user message");
    };
    if last.role != Role::User || !last.content.contains(question) {
        return fail(name, "the last message must be the user's question (role user, containing its text)");
    }
    if sources && !got.iter().any(|m| m.content.contains("[1]")) {
        return fail(name, "no message numbers the passages: number them [1], [2] ... so answers can cite them");
    }
    let chars: usize = got.iter().map(|m| m.content.chars().count()).sum();
    pass(name, format!("{} messages, {chars} characters, question last, in {}", got.len(), ms(took)))
}

pub async fn prompt(step: &Step) -> Vec<Outcome> {
    type R = (Result<Vec<Message>, StepError>,);
    let given = passages(3);
    let mut out = Vec::new();
    let r = step.call_once::<_, R>("build", (query(QUESTION, 5), given.clone())).await;
    out.push(match returned("typed result", r) {
        Ok((Ok(got), t)) => check_messages("typed result", QUESTION, true, &got, t),
        Ok((Err(e), _)) => fail("typed result", format!("returned {e} for a plain question and 3 passages")),
        Err(o) => o,
    });
    let mut with_history = query(QUESTION, 5);
    with_history.history = vec![
        Message { role: Role::User, content: "what is apt".into() },
        Message { role: Role::Assistant, content: "APT is Debian's package tool [1].".into() },
    ];
    let r = step.call_once::<_, R>("build", (with_history, given.clone())).await;
    out.push(tolerated("history", r, |got, t| check_messages("history", QUESTION, true, &got, t)));
    let r = step.call_once::<_, R>("build", (query(QUESTION, 5), Vec::<Passage>::new())).await;
    out.push(tolerated("no passages", r, |got, t| check_messages("no passages", QUESTION, false, &got, t)));
    let r = step.call_once::<_, R>("build", (query("", 5), given.clone())).await;
    out.push(tolerated("empty query", r, |got, t| {
        if got.is_empty() { fail("empty query", "returned no messages") } else { pass("empty query", ms(t)) }
    }));
    let r = step.call_once::<_, R>("build", (query(CJK_QUESTION, 5), cjk_passages())).await;
    out.push(tolerated("non-ASCII", r, |got, t| check_messages("non-ASCII", CJK_QUESTION, true, &got, t)));
    let r = step.call_once::<_, R>("build", (query(&huge_question(), 5), huge_passages())).await;
    out.push(tolerated("huge input", r, |got, t| check_messages("huge input", &huge_question(), true, &got, t)));
    out.push(
        growth(step, async |live: &mut Live| {
            let r = step.call::<_, R>(live, "build", (query(QUESTION, 5), given.clone())).await;
            r.map(|_| ()).map_err(|e| e.to_string())
        })
        .await,
    );
    out
}

/// Collects a generator's chunks into a channel; the channel closes when
/// the stream does.
struct Collect(tokio::sync::mpsc::UnboundedSender<Chunk>);

impl<D> StreamConsumer<D> for Collect {
    type Item = Chunk;

    fn poll_consume(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        store: StoreContextMut<D>,
        mut src: Source<'_, Chunk>,
        _finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let mut chunks = Vec::with_capacity(64);
        src.read(store, &mut chunks)?;
        for c in chunks {
            if self.0.send(c).is_err() {
                return Poll::Ready(Ok(StreamResult::Dropped));
            }
        }
        Poll::Ready(Ok(StreamResult::Completed))
    }
}

/// Calls `generate` and reads its stream to the end (or to its finish).
async fn generate(
    step: &Step,
    live: &mut Live,
    messages: Vec<Message>,
) -> Result<Result<Vec<Chunk>, StepError>, String> {
    type R = (Result<StreamReader<Chunk>, StepError>,);
    let options = GenerateOptions { max_tokens: Some(32), temperature: None, request_id: request_id() };
    let ((result,), _) =
        step.call::<_, R>(live, "generate", (messages, passages(3), options)).await.map_err(|e| e.to_string())?;
    let reader = match result {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    reader.pipe(&mut live.store, Collect(tx)).map_err(|e| format!("cannot read the stream: {e:#}"))?;
    let read = live.store.run_concurrent(async move |_| {
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            let last = matches!(c, Chunk::Finish(_) | Chunk::Error(_));
            chunks.push(c);
            if last {
                break;
            }
        }
        chunks
    });
    match tokio::time::timeout(step.deadline, read).await {
        Ok(Ok(chunks)) => Ok(Ok(chunks)),
        Ok(Err(e)) => Err(format!("trapped while streaming: {e:#} (end the stream with an error chunk instead)")),
        Err(_) => Err(format!("the stream did not end within {}", ms(step.deadline))),
    }
}

fn check_stream(name: &'static str, chunks: &[Chunk]) -> Outcome {
    let texts = chunks.iter().filter(|c| matches!(c, Chunk::Text(_))).count();
    match chunks.last() {
        Some(Chunk::Finish(reason)) if !reason.is_empty() => {
            pass(name, format!("{texts} text chunks, then finish {reason:?}"))
        }
        Some(Chunk::Finish(_)) => fail(name, "the finish chunk has an empty reason: say why (stop, length ...)"),
        Some(Chunk::Error(e)) => pass(name, format!("{texts} text chunks, then an error chunk ({e})")),
        _ => fail(name, "the stream ended without a finish chunk: end every stream with finish(reason) or error"),
    }
}

fn messages(question: &str) -> Vec<Message> {
    vec![
        Message { role: Role::System, content: "Answer from the sources [1] [2] [3].".into() },
        Message { role: Role::User, content: question.into() },
    ]
}

pub async fn generator(step: &Step) -> Vec<Outcome> {
    let mut out = Vec::new();
    let info = step.call_once::<(), (GeneratorInfo,)>("info", ()).await;
    out.push(match info {
        Ok(((i,), t)) if !i.name.is_empty() => {
            pass("info", format!("{} (model {:?}, ready: {}) in {}", i.name, i.model, i.ready, ms(t)))
        }
        Ok(_) => fail("info", "the name is empty: name the generator (it is shown in `meta`)"),
        Err(e) => fail("info", e.to_string()),
    });
    for (name, msgs, must_answer) in [
        ("stream ends", messages(QUESTION), true),
        ("no messages", Vec::new(), false),
        ("non-ASCII", messages(CJK_QUESTION), false),
    ] {
        let mut live = match step.instance().await {
            Ok(l) => l,
            Err(e) => {
                out.push(fail(name, format!("{e:#}")));
                continue;
            }
        };
        out.push(match generate(step, &mut live, msgs).await {
            Ok(Ok(chunks)) => check_stream(name, &chunks),
            Ok(Err(e)) if must_answer => fail(
                name,
                format!("returned {e}; if the step needs an upstream, give it with --var and --allow-outbound"),
            ),
            Ok(Err(e)) => pass(name, format!("refused with {e}")),
            Err(e) => fail(name, e),
        });
    }
    out.push(
        growth(step, async |live: &mut Live| match generate(step, live, messages(QUESTION)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        })
        .await,
    );
    out
}
