//! `spindle index`: loads documents (Markdown, HTML, plain text and
//! JSON-lines files, or folders of them: [`files`]) into the keyword index
//! and the vector store that the manifest's variables configure (the same
//! `opensearch_*`, `vector_*` and `embeddings_*` values the retrievers
//! read, from defaults and `SPIN_VARIABLE_*`), so the indexer and the app
//! cannot disagree.
//!
//! Documents are split into overlapping chunks (`spindle_text::chunk`),
//! embedded in batches and written under stable chunk ids. Re-running is
//! incremental ([`state`]): unchanged files are skipped, changed ones
//! replaced and deleted ones removed from every store. `--recreate` drops
//! the index and collection and starts over. `--embedded OUT.wasm` also
//! writes the chunks into a copy of the embedded retriever ([`embedded`]),
//! rebuilt from every file on each run (parsing is cheap; it is the
//! engines' writes and the embeddings that incremental runs save).

mod embedded;
mod files;
mod http;
mod keyword;
mod state;
mod vector;
mod vector_cache;

use crate::manifest::App;
use crate::variables::Resolver;
use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use spindle_clients::auth;
use spindle_clients::opensearch;
use spindle_clients::stores::Store;
use spindle_text::chunk::{Chunk, Chunking, chunk_document};
use state::State;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Files and folders (searched recursively) of Markdown (.md), HTML
    /// (.html), PDF (.pdf), plain text (.txt) and JSON lines (.jsonl).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Files and folders to skip: globs matched against the path or the
    /// file name (e.g. `--exclude 'drafts/**' --exclude '*.tmp.md'`).
    #[arg(long)]
    exclude: Vec<String>,
    /// Where the files are published: their links become
    /// `BASE_URL/<path>#<section>`. Default: `file://` links.
    #[arg(long)]
    base_url: Option<String>,
    /// The application manifest whose variables name the stores.
    #[arg(long, short = 'f', default_value = "spin.toml")]
    manifest: PathBuf,
    /// Drop the index and the collection first.
    #[arg(long)]
    recreate: bool,
    /// Chunks per embeddings request and per write.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Chunk size and overlap, in estimated tokens (a CJK character is
    /// one, other text four characters a token).
    #[arg(long, default_value_t = Chunking::default().max_units)]
    chunk_tokens: f32,
    #[arg(long, default_value_t = Chunking::default().overlap_units)]
    overlap_tokens: f32,
    /// Analyzer of the `text` field when the index is created (`cjk`
    /// splits Chinese into bigrams and handles English too).
    #[arg(long, default_value = "cjk")]
    analyzer: String,
    /// Per-language copies of the text, `LANG=ANALYZER,...`: a chunk whose
    /// `lang` metadata is LANG is also indexed in `text_<LANG>` with that
    /// analyzer. Empty: none.
    #[arg(long, default_value = "en=english,zh=cjk")]
    lang_analyzers: String,
    /// Which configured stores to write: `keyword`, `vector` or both
    /// (e.g. re-index only the keyword store after changing its analyzers).
    #[arg(long, value_delimiter = ',', default_value = "keyword,vector")]
    stores: Vec<StoreKind>,
    /// Also write the chunks into a copy of the embedded retriever at this
    /// path (e.g. `.spindle/retriever-docs.wasm`), for a manifest whose
    /// retriever slot names a component with that `source`: no Rust
    /// toolchain needed, and `spin up` serves it as is.
    #[arg(long, value_name = "OUT.wasm")]
    embedded: Option<PathBuf>,
    /// The built embedded retriever to copy. Default: the manifest's
    /// `retriever-bm25` component.
    #[arg(long, value_name = "FILE.wasm", requires = "embedded")]
    embedded_from: Option<PathBuf>,
    /// The app's runtime config: when its key-value store `default` is
    /// Redis, the passage vectors computed for the vector store are also
    /// written there, under the keys `reranker-embedding` caches them by,
    /// so reranking never embeds an indexed passage again.
    #[arg(long, value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Timeout of one call to a store or the embeddings endpoint, seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_without_a_language_get_the_one_of_their_text() {
        let chunk = |text: &str, meta: &[(&str, &str)]| Chunk {
            id: "d#0".into(),
            doc_id: "d".into(),
            text: text.into(),
            title: None,
            url: None,
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let mut chunks = vec![
            chunk("How do I install a package?", &[]),
            chunk("如何安装软件包？", &[]),
            chunk("Already labelled", &[("lang", "fr")]),
            chunk("1234", &[]),
        ];
        assert_eq!(label_languages(&mut chunks), 2);
        let lang = |c: &Chunk| c.metadata.iter().find(|(k, _)| k == "lang").map(|(_, v)| v.clone());
        assert_eq!(
            chunks.iter().map(lang).collect::<Vec<_>>(),
            [Some("en".into()), Some("zh".into()), Some("fr".into()), None]
        );
    }

    #[test]
    fn progress_lines_say_how_far_and_how_fast() {
        assert_eq!(
            progress_line(50, 200, Duration::from_secs(10)),
            "indexed 50/200 chunks (25%), 5.0 chunks/s, about 30 s left"
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Keyword,
    Vector,
}

struct Targets {
    keyword: Option<keyword::KeywordIndex>,
    vector: Option<(vector::VectorIndex, vector::Embedder)>,
}

impl Targets {
    /// Names the stores written, so each set keeps its own [`State`].
    fn signature(&self) -> String {
        let keyword = self.keyword.as_ref().map(|k| format!("keyword {} {}", k.service.shown(), k.index));
        let vector = self
            .vector
            .as_ref()
            .map(|(v, e)| format!("vector {:?} {} {} {}", v.store, v.service.shown(), v.collection, e.model));
        [keyword, vector].into_iter().flatten().collect::<Vec<_>>().join("; ")
    }
}

fn analysis(args: &IndexArgs) -> anyhow::Result<opensearch::Analysis> {
    let per_language = args
        .lang_analyzers
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((lang, analyzer)) if !lang.trim().is_empty() && !analyzer.trim().is_empty() => {
                Ok((lang.trim().to_string(), analyzer.trim().to_string()))
            }
            _ => bail!("--lang-analyzers: expected LANG=ANALYZER, got `{pair}`"),
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(opensearch::Analysis { default: args.analyzer.clone(), per_language })
}

fn targets(vars: &Resolver, timeout: Duration, analysis: opensearch::Analysis) -> anyhow::Result<Targets> {
    let get = |name: &str| vars.get(name).unwrap_or("").trim().to_string();
    let keyword = (!get("opensearch_url").is_empty()).then(|| {
        let headers =
            auth::opensearch(&get("opensearch_username"), &get("opensearch_password"), &get("opensearch_api_key"));
        keyword::KeywordIndex {
            service: http::Service::new("OpenSearch", &get("opensearch_url"), headers, timeout),
            index: get("opensearch_index"),
            analysis,
        }
    });
    let vector = if get("vector_url").is_empty() {
        None
    } else {
        if get("embeddings_url").is_empty() {
            bail!("vector_url is set but embeddings_url is not: the vector store needs embeddings");
        }
        let store: Store = get("vector_store").parse().map_err(anyhow::Error::msg)?;
        let headers = auth::vector_store(store, &get("vector_api_key"));
        let embedder = vector::Embedder {
            service: http::Service::new(
                "the embeddings endpoint",
                &get("embeddings_url"),
                auth::bearer(&get("embeddings_api_key")),
                timeout,
            ),
            path: get("embeddings_path"),
            model: get("embeddings_model"),
            passage_type: get("embeddings_passage_type"),
            dimension: get("embeddings_dimension").parse().unwrap_or(0),
        };
        let service = http::Service::new("the vector store", &get("vector_url"), headers, timeout);
        Some((vector::VectorIndex::new(store, service, get("vector_collection")), embedder))
    };
    Ok(Targets { keyword, vector })
}

/// What one run does.
#[derive(Default)]
struct Plan {
    added: usize,
    changed: usize,
    unchanged: usize,
    documents: usize,
    /// Chunks to write.
    chunks: Vec<Chunk>,
    /// Chunk ids to remove: of deleted files, and those a changed file no
    /// longer produces.
    stale: Vec<String>,
    /// The state of each written file, recorded once the writes succeed.
    next: Vec<(String, state::FileState)>,
    failed: Vec<String>,
    /// Chunks of unchanged files, for the embedded index (rebuilt whole).
    kept: Vec<Chunk>,
}

/// A file's key in the state: its path as found, with `/` separators.
fn key(path: &std::path::Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// How often a progress line is printed when stderr is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

fn progress_line(done: usize, total: usize, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let left = (total - done.min(total)) as f64 / rate.max(0.001);
    format!(
        "indexed {done}/{total} chunks ({:.0}%), {rate:.1} chunks/s, about {:.0} s left",
        done as f64 * 100.0 / total.max(1) as f64,
        left
    )
}

/// Gives every chunk without `lang` metadata the language of its text,
/// where it can be told, so it gets its per-language keyword field; returns
/// how many were labelled.
fn label_languages(chunks: &mut [Chunk]) -> usize {
    let mut labelled = 0;
    for c in chunks.iter_mut().filter(|c| !c.metadata.iter().any(|(k, _)| k == "lang")) {
        if let Some(lang) = spindle_text::lang::detect(&c.text) {
            c.metadata.push(("lang".to_string(), lang.to_string()));
            labelled += 1;
        }
    }
    labelled
}

pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let app = App::load(&args.manifest)?;
    let vars = Resolver::new(&app.manifest, |k| std::env::var(k).ok())?;
    let mut targets = targets(&vars, Duration::from_secs(args.timeout_secs), analysis(&args)?)?;
    if !args.stores.contains(&StoreKind::Keyword) {
        targets.keyword = None;
    }
    if !args.stores.contains(&StoreKind::Vector) {
        targets.vector = None;
    }
    if targets.keyword.is_none() && targets.vector.is_none() && args.embedded.is_none() {
        bail!(
            "nothing to index into: set opensearch_url and/or vector_url (e.g. SPIN_VARIABLE_OPENSEARCH_URL), \
             or give --embedded OUT.wasm"
        );
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }

    let cfg =
        Chunking { max_units: args.chunk_tokens, overlap_units: args.overlap_tokens.min(args.chunk_tokens / 2.0) };
    let state_path = State::path(&app.dir, &targets.signature());
    let mut state = if args.recreate { State::default() } else { State::load(&state_path)? };
    let found = files::collect(&args.files, &args.exclude)?;
    let found_keys: Vec<String> = found.iter().map(|f| key(f)).collect();
    let mut plan = Plan::default();
    for (file, file_key) in found.iter().zip(&found_keys) {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                plan.failed.push(format!("{}: cannot read: {e}", file.display()));
                continue;
            }
        };
        let hash = state::hash(&bytes);
        let before = state.files.get(file_key);
        let unchanged = before.is_some_and(|b| b.hash == hash);
        if unchanged && args.embedded.is_none() {
            plan.unchanged += 1;
            continue;
        }
        let docs = match files::documents(file, &bytes, args.base_url.as_deref()) {
            Ok(d) => d,
            Err(e) => {
                plan.failed.push(format!("{}: {e:#}", file.display()));
                continue;
            }
        };
        let new: Vec<Chunk> = docs.iter().flat_map(|d| chunk_document(d, cfg)).collect();
        if unchanged {
            plan.unchanged += 1;
            plan.kept.extend(new);
            continue;
        }
        plan.documents += docs.len();
        let ids: Vec<String> = new.iter().map(|c| c.id.clone()).collect();
        if let Some(before) = before {
            plan.changed += 1;
            plan.stale.extend(before.chunks.iter().filter(|id| !ids.contains(id)).cloned());
        } else {
            plan.added += 1;
        }
        plan.chunks.extend(new);
        plan.next.push((file_key.clone(), state::FileState { hash, chunks: ids }));
    }
    let gone: Vec<String> = state
        .gone(&args.files.iter().map(|p| key(p)).collect::<Vec<_>>(), &found_keys)
        .into_iter()
        .map(String::from)
        .collect();
    for file in &gone {
        plan.stale.extend(state.files[file].chunks.iter().cloned());
    }
    let mut chunks = std::mem::take(&mut plan.chunks);
    let detected = label_languages(&mut chunks) + label_languages(&mut plan.kept);
    if detected > 0 {
        eprintln!("{detected} chunk(s) had no `lang`: detected from their text");
    }
    let mut metadata_keys: Vec<&str> = chunks.iter().flat_map(|c| c.metadata.iter().map(|(k, _)| k.as_str())).collect();
    metadata_keys.sort_unstable();
    metadata_keys.dedup();
    let documents = plan.documents;
    println!(
        "{} file(s): {} new, {} changed, {} unchanged, {} removed, {} failed; {documents} documents, {} chunks to write, {} to remove",
        found.len() + gone.len(),
        plan.added,
        plan.changed,
        plan.unchanged,
        gone.len(),
        plan.failed.len(),
        chunks.len(),
        plan.stale.len()
    );

    if let Some(out) = &args.embedded {
        let from = match &args.embedded_from {
            Some(path) => path.clone(),
            None if app.manifest.component.contains_key("retriever-bm25") => app.source_path("retriever-bm25"),
            None => bail!("the manifest has no retriever-bm25 component: name the built one with --embedded-from"),
        };
        // In one order whatever changed, so an unchanged set of files gives
        // the same bytes.
        let mut all: Vec<&Chunk> = plan.kept.iter().chain(&chunks).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let written = embedded::write(&from, out, &all)?;
        println!("{written}");
    }
    if let Some(k) = &targets.keyword {
        k.prepare(args.recreate, &metadata_keys)?;
    }
    let bar = ProgressBar::new(chunks.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} chunks ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    // Not a terminal (CI, a log file): a progress line every few seconds
    // instead of the bar.
    let lines = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = Instant::now();
    let mut done = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let mut vector_written = 0usize;
    let mut keyword_written = 0usize;
    let mut prepared = false;
    let mut warm = match (&args.runtime_config_file, &targets.vector) {
        (Some(rc), Some(_)) => vector_cache::VectorCache::open(rc)?,
        _ => None,
    };
    for batch in chunks.chunks(args.batch) {
        if let Some(k) = &targets.keyword {
            let failed = k.write(batch)?;
            keyword_written += batch.len() - failed.len();
            failures.extend(failed.into_iter().map(|f| format!("keyword: {f}")));
        }
        if let Some((index, embedder)) = &mut targets.vector {
            let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
            let vectors = embedder.embed(&texts)?;
            if !prepared {
                index.prepare(args.recreate, vectors.first().map_or(0, Vec::len))?;
                prepared = true;
            }
            index.write(batch, &vectors)?;
            vector_written += batch.len();
            if let Some(cache) = &mut warm {
                cache.put(&embedder.model, &embedder.passage_type, &texts, &vectors);
            }
        }
        bar.inc(batch.len() as u64);
        done += batch.len();
        if lines && last_line.elapsed() >= PROGRESS_EVERY {
            last_line = Instant::now();
            eprintln!("{}", progress_line(done, chunks.len(), started.elapsed()));
        }
    }
    bar.finish_and_clear();
    let stale: Vec<&str> = plan.stale.iter().map(String::as_str).collect();
    if let Some(k) = &targets.keyword {
        k.delete(&stale)?;
    }
    if let Some((index, _)) = &mut targets.vector {
        index.delete(&stale)?;
    }
    // Recorded only when every write went through: a failed chunk's file
    // is tried again by the next run.
    if failures.is_empty() {
        for file in &gone {
            state.files.remove(file);
        }
        state.files.extend(plan.next);
        state.save(&state_path)?;
    }

    println!("Indexed {documents} documents as {} chunks in {:.1} s", chunks.len(), started.elapsed().as_secs_f64());
    if let Some(k) = &targets.keyword {
        let total = k.finish()?;
        println!(
            "  keyword  {} index `{}`: {keyword_written} chunks written, {total} in the index",
            k.service.shown(),
            k.index
        );
    }
    if let Some((index, embedder)) = &targets.vector {
        let total = index.count()?.map(|n| format!(", {n} in the collection")).unwrap_or_default();
        println!(
            "  vector   {:?} {} collection `{}` ({} via {}): {vector_written} chunks written{total}",
            index.store,
            index.service.shown(),
            index.collection,
            embedder.model,
            embedder.service.shown()
        );
    }
    if let Some(cache) = &warm {
        println!("{}", cache.summary());
    }
    for f in &plan.failed {
        eprintln!("  not indexed: {f}");
    }
    if !failures.is_empty() {
        for f in failures.iter().take(20) {
            eprintln!("  failed: {f}");
        }
        bail!("{} chunk(s) failed to index", failures.len());
    }
    if !plan.failed.is_empty() {
        bail!("{} file(s) could not be read (listed above)", plan.failed.len());
    }
    Ok(())
}
