//! One answer, step by step: retrieve → rerank → prompt → generate, emitting
//! [`Event`]s as soon as each exists. Encoding-agnostic, so the SSE route (and
//! other encodings) share it.

use crate::api::ChatRequest;
use crate::bindings::{Passage, Query, StepError, generator, prompt, reranker, retriever};
use crate::cache::{Cache, Cached, Lookup};
use crate::events::{Done, Event, Meta, Source, Timings, Usage};
use crate::limits::{CANDIDATES_PER_SOURCE, MAX_CANDIDATES, SNIPPET_CHARS};
use guest_common::extractive;
use guest_common::runtime::{deadline, variable_u64};
use spin_sdk::wit_bindgen::StreamResult;
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

/// The client went away; stop all work.
pub struct Gone;

/// Where events go.
pub trait Sink {
    async fn send(&mut self, event: Event) -> Result<(), Gone>;

    /// Sends events that exist at the same moment (the tokens of one
    /// upstream read). Sinks that write bytes override this to write them
    /// all at once: one body write instead of one per token.
    async fn send_all(&mut self, events: Vec<Event>) -> Result<(), Gone> {
        for event in events {
            self.send(event).await?;
        }
        Ok(())
    }
}

/// Maps a step failure to the `error` event's code.
fn step_error(step: &str, e: &StepError) -> Event {
    let (kind, message) = match e {
        StepError::InvalidInput(m) => return Event::error("invalid_input", format!("{step}: {m}")),
        StepError::Unavailable(m) => ("unavailable", m),
        StepError::Timeout(m) => ("timeout", m),
        StepError::Internal(m) => ("error", m),
    };
    Event::error(format!("{step}_{kind}"), format!("{step}: {message}"))
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

/// Runs the pipeline for `req`, sending every event to `sink`. Returns when
/// the stream is complete or the client has gone.
pub async fn run(req: ChatRequest, limits: &Deadlines, sink: &mut impl Sink) -> Result<(), Gone> {
    let start = Instant::now();
    let mut timings = Timings::default();
    let mut degraded = Vec::new();

    let info = generator::info().await;
    let (generator_name, model) = if info.ready {
        (info.name.clone(), info.model.clone())
    } else {
        ("extractive".to_string(), "extractive".to_string())
    };
    sink.send(Event::Meta(Meta {
        request_id: req.request_id.clone(),
        model: model.clone(),
        generator: generator_name.clone(),
    }))
    .await?;

    let cache = Cache::open().await;
    let lookup = cache.lookup(&req, &model).await;
    if let Lookup::Hit(hit) = lookup {
        return replay(*hit, start, sink).await;
    }

    let candidates = (req.top_k * CANDIDATES_PER_SOURCE).min(MAX_CANDIDATES).max(req.top_k);
    let query = Query {
        text: req.query.clone(),
        history: req.history.clone(),
        top_k: candidates,
        filters: req.filters.clone(),
    };
    let t = Instant::now();
    let retrieved = deadline(limits.retrieve, retriever::retrieve(query.clone())).await;
    timings.retrieve = ms_since(t);
    let retrieved = match retrieved {
        Some(Ok(r)) => {
            degraded.extend(r.degraded.into_iter().map(|d| format!("retriever: {d}")));
            r.passages
        }
        Some(Err(e)) => return sink.send(step_error("retriever", &e)).await,
        None => return sink.send(step_error("retriever", &timed_out(limits.retrieve))).await,
    };

    let t = Instant::now();
    let passages = rerank(&req, retrieved, limits, &mut degraded).await;
    timings.rerank = ms_since(t);

    let sources = passages
        .iter()
        .enumerate()
        .map(|(i, p)| Source {
            n: i + 1,
            id: p.id.clone(),
            title: p.title.clone(),
            url: p.url.clone(),
            score: p.score,
            snippet: snippet(&p.text),
        })
        .collect::<Vec<_>>();
    // Only an answer that may be cached keeps its sources and text to the
    // end; thousands of streams are open at once.
    let caching = matches!(lookup, Lookup::Miss(_));
    let cached_sources = if caching { sources.clone() } else { Vec::new() };
    sink.send(Event::Sources(sources)).await?;

    let t = Instant::now();
    let messages = deadline(limits.prompt, prompt::build(Query { top_k: req.top_k, ..query }, passages.clone())).await;
    timings.prompt = ms_since(t);
    let messages = match messages.unwrap_or_else(|| Err(timed_out(limits.prompt))) {
        Ok(m) => m,
        Err(e) => return sink.send(step_error("prompt", &e)).await,
    };

    let t = Instant::now();
    let mut finish_reason = "stop".to_string();
    let mut usage = None;
    let mut used = generator_name.clone();
    let mut fallback = None;
    let mut chunks = Vec::new();
    let stream = if info.ready {
        let options =
            generator::GenerateOptions { max_tokens: None, temperature: None, request_id: req.request_id.clone() };
        match generator::generate(messages, passages.clone(), options).await {
            Ok(rx) => Some(rx),
            Err(e) => {
                fallback = Some(describe(&e));
                None
            }
        }
    } else {
        fallback = Some("no language model is configured".to_string());
        None
    };
    // A stream lives for seconds and thousands run at once: keep only what
    // the rest of it needs (the extractive fallback needs the passages).
    let passages = if stream.is_some() { Vec::new() } else { passages };
    match stream {
        Some(mut rx) => loop {
            // Everything the generator has written since the last read, in
            // one piece (see `Sink::send_all`).
            let (result, batch) = rx.read(Vec::with_capacity(READ_BATCH)).await;
            let mut events = Vec::with_capacity(batch.len());
            for chunk in batch {
                match chunk {
                    generator::Chunk::Text(text) => {
                        timings.first_token.get_or_insert_with(|| ms_since(start));
                        if caching {
                            chunks.push(text.clone());
                        }
                        events.push(Event::Text(text));
                    }
                    generator::Chunk::Usage(u) => {
                        usage = Some(Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens })
                    }
                    generator::Chunk::Finish(reason) => finish_reason = reason,
                    generator::Chunk::Error(e) => {
                        events.push(step_error("upstream", &e));
                        return sink.send_all(events).await;
                    }
                }
            }
            if !events.is_empty() {
                sink.send_all(events).await?;
            }
            if !matches!(result, StreamResult::Complete(_)) {
                break;
            }
        },
        None => {
            used = "extractive".to_string();
            let srcs: Vec<extractive::Source<'_>> =
                passages.iter().map(|p| extractive::Source { title: p.title.as_deref(), text: &p.text }).collect();
            let pieces = extractive::answer(&req.query, &srcs);
            if !pieces.is_empty() {
                timings.first_token.get_or_insert_with(|| ms_since(start));
            }
            if caching {
                chunks.extend(pieces.iter().cloned());
            }
            sink.send_all(pieces.into_iter().map(Event::Text).collect()).await?;
        }
    }
    timings.generate = ms_since(t);
    timings.total = ms_since(start);
    let model = if used == "extractive" { "extractive".to_string() } else { model };
    let cache_status = lookup.status();
    // A fallback after an LLM failure is transient: do not keep it.
    if let Lookup::Miss(key) = &lookup
        && (fallback.is_none() || !info.ready)
        && degraded.is_empty()
    {
        let answer = Cached {
            query: crate::cache::normalise(&req.query),
            stored_at: 0,
            model: model.clone(),
            generator: used.clone(),
            sources: cached_sources,
            chunks,
            finish_reason: finish_reason.clone(),
            usage,
        };
        cache.put(key, answer).await;
    }
    sink.send(Event::Done(Done {
        finish_reason,
        usage,
        timings_ms: timings,
        generator: used,
        model,
        fallback,
        degraded,
        cache: cache_status,
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
    let reranked = deadline(limits.rerank, reranker::rerank(req.query.clone(), retrieved, req.top_k)).await;
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
        cache: "hit",
    }))
    .await
}
