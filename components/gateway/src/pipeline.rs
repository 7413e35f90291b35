//! One answer, step by step: retrieve → rerank → prompt → generate, emitting
//! [`Event`]s as soon as each exists. Encoding-agnostic, so the SSE route (and
//! other encodings) share it.

use crate::api::ChatRequest;
use crate::bindings::{Message, Passage, Query, StepError, generator, prompt, reranker, retriever};
use crate::cache::{Cache, Cached, Lookup};
use crate::events::{CacheOutcome, Done, EXTRACTIVE, ErrorCode, Event, Gone, Meta, Sink, Source, Timings, Usage};
use crate::input_limits::{CANDIDATES_PER_SOURCE, MAX_CANDIDATES, MAX_TITLE_CHARS, MAX_URL_BYTES, SNIPPET_CHARS};
use spin_sdk::wit_bindgen::StreamResult;
use spindle_step::config::variable_u64;
use spindle_step::deadline::deadline;
use spindle_text::extractive;
use std::time::{Duration, Instant};

/// Most generator chunks taken by one read; more waiting take more reads.
/// Small: the buffer is lent to the host while the read waits, and
/// thousands of answers wait at once.
const READ_BATCH: usize = 16;

/// Per-step deadlines, from Spin variables (milliseconds).
pub struct Deadlines {
    pub retrieve: Duration,
    pub rerank: Duration,
    pub prompt: Duration,
}

impl Deadlines {
    pub async fn load() -> Result<Self, String> {
        let ms = |v: Result<u64, String>| v.map(Duration::from_millis);
        Ok(Deadlines {
            retrieve: ms(variable_u64("retrieve_timeout_ms", 10_000).await)?,
            rerank: ms(variable_u64("rerank_timeout_ms", 5_000).await)?,
            prompt: ms(variable_u64("prompt_timeout_ms", 5_000).await)?,
        })
    }
}

/// The steps whose failure ends an answer.
#[derive(Clone, Copy)]
enum Failing {
    Retriever,
    Prompt,
    Upstream,
}

/// Maps a step failure to the `error` event.
fn step_error(step: Failing, e: &StepError) -> Event {
    use ErrorCode::*;
    let codes = match step {
        Failing::Retriever => ("retriever", [RetrieverUnavailable, RetrieverTimeout, RetrieverError]),
        Failing::Prompt => ("prompt", [PromptUnavailable, PromptTimeout, PromptError]),
        Failing::Upstream => ("upstream", [UpstreamUnavailable, UpstreamTimeout, UpstreamError]),
    };
    let (name, [unavailable, timeout, internal]) = codes;
    let code = match e {
        StepError::InvalidInput(_) => InvalidInput,
        StepError::Unavailable(_) => unavailable,
        StepError::Timeout(_) => timeout,
        StepError::Internal(_) => internal,
    };
    Event::error(code, format!("{name}: {}", describe(e)))
}

fn describe(e: &StepError) -> String {
    match e {
        StepError::InvalidInput(m) | StepError::Unavailable(m) | StepError::Timeout(m) | StepError::Internal(m) => {
            m.clone()
        }
    }
}

fn timed_out(limit: Duration) -> StepError {
    StepError::Timeout(format!("no answer within {} ms", limit.as_millis()))
}

/// Milliseconds since `t`, rounded to the microsecond.
fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_micros() as f64 / 1000.0
}

fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// One answer in the making: what the stages so far produced that the
/// later ones and `done` need.
struct Answer {
    req: ChatRequest,
    start: Instant,
    timings: Timings,
    degraded: Vec<String>,
    /// The configured generator, if it is ready.
    generator: Option<generator::GeneratorInfo>,
    model: String,
    cache: Cache,
    lookup: Lookup,
}

impl Answer {
    /// Whether this answer will be cached: only then are its sources and
    /// text kept to the end (thousands of streams are open at once).
    fn caching(&self) -> bool {
        matches!(self.lookup, Lookup::Miss(_))
    }
}

/// What the generate stage produced.
struct Generated {
    /// The generator that wrote the text.
    generator: String,
    finish_reason: String,
    usage: Option<Usage>,
    /// Why the configured generator was not used, when it was not.
    fallback: Option<String>,
    /// The text, when the answer is to be cached.
    chunks: Vec<String>,
}

/// Runs the pipeline for `req`, sending every event to `sink`. Returns when
/// the stream is complete or the client has gone.
pub async fn run(req: ChatRequest, limits: &Deadlines, sink: &mut impl Sink) -> Result<(), Gone> {
    let Some(mut answer) = start(req, sink).await? else { return Ok(()) };
    let passages = match retrieve(&mut answer, limits).await {
        Ok(p) => p,
        Err(e) => return sink.send(e).await,
    };
    let t = Instant::now();
    let passages = rerank(&answer.req, passages, limits, &mut answer.degraded).await;
    answer.timings.rerank = ms_since(t);
    let sources = publish_sources(&answer, &passages, sink).await?;
    let messages = match build_prompt(&mut answer, &passages, limits).await {
        Ok(m) => m,
        Err(e) => return sink.send(e).await,
    };
    let Some(generated) = generate(&mut answer, messages, passages, sink).await? else { return Ok(()) };
    finish(answer, sources, generated, sink).await
}

/// Sends `meta`, then answers from the cache if it holds this question.
/// `None` when the answer is complete (a cache hit).
async fn start(req: ChatRequest, sink: &mut impl Sink) -> Result<Option<Answer>, Gone> {
    let start = Instant::now();
    let info = generator::info().await;
    let (generator_name, model) = if info.ready {
        (info.name.clone(), info.model.clone())
    } else {
        (EXTRACTIVE.to_string(), EXTRACTIVE.to_string())
    };
    sink.send(Event::Meta(Meta {
        request_id: req.request_id.clone(),
        model: model.clone(),
        generator: generator_name,
        revision: req.revision.clone(),
    }))
    .await?;
    let cache = Cache::open().await;
    let lookup = cache.lookup(&req, &model).await;
    if let Lookup::Hit(hit) = lookup {
        replay(*hit, start, sink).await?;
        return Ok(None);
    }
    let generator = info.ready.then_some(info);
    Ok(Some(Answer { req, start, timings: Timings::default(), degraded: Vec::new(), generator, model, cache, lookup }))
}

/// The candidates for the reranker: a few per source asked for.
async fn retrieve(answer: &mut Answer, limits: &Deadlines) -> Result<Vec<Passage>, Event> {
    let req = &answer.req;
    let candidates = (req.top_k * CANDIDATES_PER_SOURCE).min(MAX_CANDIDATES).max(req.top_k);
    let query = Query {
        text: req.query.clone(),
        history: req.history.clone(),
        top_k: candidates,
        filters: req.filters.clone(),
        request_id: req.request_id.clone(),
    };
    let t = Instant::now();
    let retrieved = deadline(limits.retrieve, retriever::retrieve(query)).await;
    answer.timings.retrieve = ms_since(t);
    match retrieved {
        Some(Ok(r)) => {
            answer.degraded.extend(r.degraded.into_iter().map(|d| format!("retriever: {d}")));
            Ok(r.passages)
        }
        Some(Err(e)) => Err(step_error(Failing::Retriever, &e)),
        None => Err(step_error(Failing::Retriever, &timed_out(limits.retrieve))),
    }
}

/// Sends the numbered sources; returns them when the answer is to be cached.
async fn publish_sources(answer: &Answer, passages: &[Passage], sink: &mut impl Sink) -> Result<Vec<Source>, Gone> {
    let sources = passages
        .iter()
        .enumerate()
        .map(|(i, p)| Source {
            n: i + 1,
            id: p.id.clone(),
            // Bounded whatever the index holds: a cut URL would be a wrong
            // link, so an overlong one is left out.
            title: p.title.as_deref().map(|t| spindle_text::truncate(t, MAX_TITLE_CHARS)),
            url: p.url.clone().filter(|u| u.len() <= MAX_URL_BYTES),
            score: p.score,
            snippet: snippet(&p.text),
        })
        .collect::<Vec<_>>();
    let kept = if answer.caching() { sources.clone() } else { Vec::new() };
    sink.send(Event::Sources(sources)).await?;
    Ok(kept)
}

async fn build_prompt(answer: &mut Answer, passages: &[Passage], limits: &Deadlines) -> Result<Vec<Message>, Event> {
    let req = &answer.req;
    let query = Query {
        text: req.query.clone(),
        history: req.history.clone(),
        top_k: req.top_k,
        filters: req.filters.clone(),
        request_id: req.request_id.clone(),
    };
    let t = Instant::now();
    let messages = deadline(limits.prompt, prompt::build(query, passages.to_vec())).await;
    answer.timings.prompt = ms_since(t);
    messages.unwrap_or_else(|| Err(timed_out(limits.prompt))).map_err(|e| step_error(Failing::Prompt, &e))
}

/// Streams the text: from the configured generator, or extractively from
/// the passages when there is none or it could not start. `None` when the
/// answer ended with an error.
async fn generate(
    answer: &mut Answer,
    messages: Vec<Message>,
    passages: Vec<Passage>,
    sink: &mut impl Sink,
) -> Result<Option<Generated>, Gone> {
    let t = Instant::now();
    let mut generated = Generated {
        generator: EXTRACTIVE.to_string(),
        finish_reason: "stop".to_string(),
        usage: None,
        fallback: None,
        chunks: Vec::new(),
    };
    let stream = match &answer.generator {
        Some(info) => {
            let options = generator::GenerateOptions {
                max_tokens: None,
                temperature: None,
                request_id: answer.req.request_id.clone(),
            };
            match generator::generate(messages, passages.clone(), options).await {
                Ok(rx) => {
                    generated.generator = info.name.clone();
                    Some(rx)
                }
                Err(e) => {
                    generated.fallback = Some(describe(&e));
                    None
                }
            }
        }
        None => {
            generated.fallback = Some("no language model is configured".to_string());
            None
        }
    };
    let complete = match stream {
        // A stream lives for seconds and thousands run at once: the
        // passages are dropped before it starts.
        Some(rx) => {
            drop(passages);
            relay(answer, rx, &mut generated, sink).await?
        }
        None => {
            extractive_answer(answer, &passages, &mut generated, sink).await?;
            true
        }
    };
    answer.timings.generate = ms_since(t);
    Ok(complete.then_some(generated))
}

/// Relays the generator's chunks as text events. `false` when the
/// generator failed mid-answer (the `error` event was sent).
async fn relay(
    answer: &mut Answer,
    mut rx: spin_sdk::wit_bindgen::StreamReader<generator::Chunk>,
    generated: &mut Generated,
    sink: &mut impl Sink,
) -> Result<bool, Gone> {
    let caching = answer.caching();
    loop {
        // Everything the generator has written since the last read, in
        // one piece (see `Sink::send_all`).
        let (result, batch) = rx.read(Vec::with_capacity(READ_BATCH)).await;
        let mut events = Vec::with_capacity(batch.len());
        for chunk in batch {
            match chunk {
                generator::Chunk::Text(text) => {
                    answer.timings.first_token.get_or_insert_with(|| ms_since(answer.start));
                    if caching {
                        generated.chunks.push(text.clone());
                    }
                    events.push(Event::Text(text));
                }
                generator::Chunk::Usage(u) => {
                    generated.usage =
                        Some(Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens })
                }
                generator::Chunk::Finish(reason) => generated.finish_reason = reason,
                generator::Chunk::Error(e) => {
                    events.push(step_error(Failing::Upstream, &e));
                    sink.send_all(events).await?;
                    return Ok(false);
                }
            }
        }
        if !events.is_empty() {
            sink.send_all(events).await?;
        }
        if !matches!(result, StreamResult::Complete(_)) {
            return Ok(true);
        }
    }
}

/// The answer built from the passages' own sentences.
async fn extractive_answer(
    answer: &mut Answer,
    passages: &[Passage],
    generated: &mut Generated,
    sink: &mut impl Sink,
) -> Result<(), Gone> {
    generated.generator = EXTRACTIVE.to_string();
    let srcs: Vec<extractive::Source<'_>> =
        passages.iter().map(|p| extractive::Source { title: p.title.as_deref(), text: &p.text }).collect();
    let pieces = extractive::answer(&answer.req.query, &srcs);
    if !pieces.is_empty() {
        answer.timings.first_token.get_or_insert_with(|| ms_since(answer.start));
    }
    if answer.caching() {
        generated.chunks.extend(pieces.iter().cloned());
    }
    sink.send_all(pieces.into_iter().map(Event::Text).collect()).await
}

/// Caches the answer when it may be, and sends `done`.
async fn finish(
    mut answer: Answer,
    sources: Vec<Source>,
    generated: Generated,
    sink: &mut impl Sink,
) -> Result<(), Gone> {
    answer.timings.total = ms_since(answer.start);
    let model = if generated.generator == EXTRACTIVE { EXTRACTIVE.to_string() } else { answer.model };
    let cache = answer.lookup.status();
    // A fallback after an LLM failure is transient: do not keep it.
    let transient = generated.fallback.is_some() && answer.generator.is_some();
    if let Lookup::Miss(key) = &answer.lookup
        && !transient
        && answer.degraded.is_empty()
    {
        let cached = Cached {
            query: crate::cache::normalise(&answer.req.query),
            stored_at: 0,
            model: model.clone(),
            generator: generated.generator.clone(),
            sources,
            chunks: generated.chunks,
            finish_reason: generated.finish_reason.clone(),
            usage: generated.usage,
        };
        answer.cache.put(key, cached).await;
    }
    sink.send(Event::Done(Done {
        finish_reason: generated.finish_reason,
        usage: generated.usage,
        timings_ms: answer.timings,
        generator: generated.generator,
        model,
        fallback: generated.fallback,
        degraded: answer.degraded,
        cache,
    }))
    .await
}

/// Reranks `retrieved` down to `top_k`; on a reranker failure keeps the
/// retrieval order and notes it in `degraded`. Takes the candidates by value
/// so they are freed before the answer streams.
async fn rerank(
    req: &ChatRequest,
    retrieved: Vec<Passage>,
    limits: &Deadlines,
    degraded: &mut Vec<String>,
) -> Vec<Passage> {
    if retrieved.is_empty() {
        return retrieved;
    }
    // Retrieval order is still a useful answer basis if the reranker fails:
    // keep the top of it (not a copy of every candidate).
    let fallback: Vec<Passage> = retrieved.iter().take(req.top_k as usize).cloned().collect();
    let reranked =
        deadline(limits.rerank, reranker::rerank(req.query.clone(), retrieved, req.top_k, req.request_id.clone()))
            .await;
    match reranked.unwrap_or_else(|| Err(timed_out(limits.rerank))) {
        Ok(p) => p,
        Err(e) => {
            degraded.push(format!("reranker: {}", describe(&e)));
            fallback
        }
    }
}

/// Streams a cached answer: its sources, its text in the pieces it was
/// generated in, and a `done` event that says it came from the cache.
async fn replay(hit: Cached, start: Instant, sink: &mut impl Sink) -> Result<(), Gone> {
    sink.send(Event::Sources(hit.sources)).await?;
    let first_token = Some(ms_since(start));
    sink.send_all(hit.chunks.into_iter().map(Event::Text).collect()).await?;
    let timings = Timings { first_token, total: ms_since(start), ..Timings::default() };
    sink.send(Event::Done(Done {
        finish_reason: hit.finish_reason,
        usage: hit.usage,
        timings_ms: timings,
        generator: hit.generator,
        model: hit.model,
        fallback: None,
        degraded: Vec::new(),
        cache: CacheOutcome::Hit,
    }))
    .await
}
