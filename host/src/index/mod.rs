//! `spindle index`: loads a JSON-lines corpus (`id`, `title`, `text`,
//! `url`, `metadata`) into the keyword index and the vector store that the
//! manifest's variables configure (the same `opensearch_*`, `vector_*` and
//! `embeddings_*` values the retrievers read, from defaults and
//! `SPIN_VARIABLE_*`), so the indexer and the app cannot disagree.
//!
//! Documents are split into overlapping chunks (`spindle_text::chunk`),
//! embedded in batches and written under stable chunk ids: re-running it
//! overwrites in place. `--recreate` drops the index and collection first,
//! which also removes chunks of documents that have since shrunk or gone.

mod http;
mod keyword;
mod vector;

use crate::manifest::App;
use crate::variables::Resolver;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use spindle_clients::auth;
use spindle_clients::opensearch;
use spindle_clients::stores::Store;
use spindle_text::chunk::{Chunk, Chunking, chunk_document};
use spindle_text::corpus::parse_jsonl;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct IndexArgs {
    /// JSON-lines corpus files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
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
    /// Timeout of one call to a store or the embeddings endpoint, seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
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
    if keyword.is_none() && vector.is_none() {
        bail!("nothing to index into: set opensearch_url and/or vector_url (e.g. SPIN_VARIABLE_OPENSEARCH_URL)");
    }
    Ok(Targets { keyword, vector })
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
    if targets.keyword.is_none() && targets.vector.is_none() {
        bail!("--stores leaves no configured store to write");
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }

    let cfg =
        Chunking { max_units: args.chunk_tokens, overlap_units: args.overlap_tokens.min(args.chunk_tokens / 2.0) };
    let mut documents = 0;
    let mut chunks: Vec<Chunk> = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let docs = parse_jsonl(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        documents += docs.len();
        chunks.extend(docs.iter().flat_map(|d| chunk_document(d, cfg)));
    }
    let mut metadata_keys: Vec<&str> = chunks.iter().flat_map(|c| c.metadata.iter().map(|(k, _)| k.as_str())).collect();
    metadata_keys.sort_unstable();
    metadata_keys.dedup();
    eprintln!("{documents} documents, {} chunks from {} file(s)", chunks.len(), args.files.len());

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
    let mut failures: Vec<String> = Vec::new();
    let mut vector_written = 0usize;
    let mut keyword_written = 0usize;
    let mut prepared = false;
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
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();

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
    if !failures.is_empty() {
        for f in failures.iter().take(20) {
            eprintln!("  failed: {f}");
        }
        bail!("{} chunk(s) failed to index", failures.len());
    }
    Ok(())
}
