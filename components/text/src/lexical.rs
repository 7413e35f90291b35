//! Lexical reranking: the retriever's own score (it saw the whole corpus)
//! blended with BM25 over the candidate set itself (so IDF reflects what
//! was retrieved, whatever retriever produced it) and with how many
//! distinct query terms each passage covers.
//!
//! Each passage is tokenised once and only its first [`MAX_CHARS`]
//! characters are read, as a cross-encoder reads only its first 512 tokens:
//! reranking cost stays bounded however long the passages are.

use crate::bm25::{B, K1};
use crate::tokenize::tokenize;
use foldhash::{HashMap, HashMapExt, HashSet};
use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::Rc;

/// What the reranker needs of a passage: its length in tokens and how often
/// each distinct token occurs. Scoring then looks up the few query terms
/// per passage instead of hashing every token of every candidate again.
struct Stats {
    len: usize,
    tf: HashMap<String, u32>,
}

/// Statistics of passages, by (hash, length) of their text.
type StatsCache = HashMap<(u64, usize), Rc<Stats>>;

/// Most passages whose statistics an instance keeps.
const CACHE_ENTRIES: usize = 4096;

thread_local! {
    /// Statistics of passages seen before, by a hash of their text.
    /// Tokenising (stemming, CJK bigrams) the candidates was the largest
    /// single cost of a request under load (a perf profile at 1,000
    /// concurrent streams: 18% of spindle's CPU in this reranker), and an
    /// instance serves many requests whose candidates mostly repeat.
    static STATS: RefCell<StatsCache> = RefCell::new(HashMap::new());
}

fn stats_of(text: &str) -> Rc<Stats> {
    // foldhash rather than std's SipHash: every candidate's text is hashed
    // on every request (SipHash alone was 1% of the CPU of a short answer).
    let key = (foldhash::quality::FixedState::default().hash_one(text), text.len());
    if let Some(s) = STATS.with(|c| c.borrow().get(&key).cloned()) {
        return s;
    }
    let tokens = tokenize(text);
    let mut tf: HashMap<String, u32> = HashMap::new();
    for t in &tokens {
        *tf.entry(t.clone()).or_default() += 1;
    }
    let stats = Rc::new(Stats { len: tokens.len(), tf });
    STATS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_ENTRIES {
            c.clear();
        }
        c.insert(key, stats.clone());
    });
    stats
}

/// Weights of the normalised retriever score and candidate BM25 in the
/// blend; the rest is query-term coverage.
const PRIOR_WEIGHT: f32 = 0.4;
const BM25_WEIGHT: f32 = 0.4;
/// Characters of each passage taken into account.
pub const MAX_CHARS: usize = 2_000;

fn head(text: &str) -> &str {
    if text.len() <= MAX_CHARS {
        return text; // no more characters than bytes
    }
    match text.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Returns `(index into texts, score)` for every text, best first.
/// `prior` holds the retriever's scores, in the same order as `texts`.
pub fn rerank(query: &str, texts: &[&str], prior: &[f32]) -> Vec<(usize, f32)> {
    let q: HashSet<String> = tokenize(query).into_iter().collect();
    // Term frequencies of the query terms only, per passage, and lengths.
    let mut tfs: Vec<HashMap<&str, u32>> = Vec::with_capacity(texts.len());
    let mut lens: Vec<usize> = Vec::with_capacity(texts.len());
    let mut df: HashMap<&str, u32> = HashMap::new();
    for text in texts {
        let stats = stats_of(head(text));
        lens.push(stats.len);
        let tf: HashMap<&str, u32> = q.iter().filter_map(|qt| stats.tf.get(qt).map(|&f| (qt.as_str(), f))).collect();
        for t in tf.keys() {
            *df.entry(t).or_default() += 1;
        }
        tfs.push(tf);
    }
    let n = texts.len() as f32;
    let avg = (lens.iter().sum::<usize>() as f32 / n.max(1.0)).max(1.0);
    let bm25: Vec<f32> = tfs
        .iter()
        .zip(&lens)
        .map(|(tf, &len)| {
            tf.iter()
                .map(|(t, &f)| {
                    let df = df[t] as f32;
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    let f = f as f32;
                    idf * f * (K1 + 1.0) / (f + K1 * (1.0 - B + B * len as f32 / avg))
                })
                .sum()
        })
        .collect();
    let max = bm25.iter().cloned().fold(0.0f32, f32::max);
    let max_prior = prior.iter().cloned().fold(0.0f32, f32::max);
    let mut scored: Vec<(usize, f32)> = tfs
        .iter()
        .enumerate()
        .map(|(i, tf)| {
            let coverage = if q.is_empty() { 0.0 } else { tf.len() as f32 / q.len() as f32 };
            let norm = if max > 0.0 { bm25[i] / max } else { 0.0 };
            let prior = match prior.get(i) {
                Some(&p) if max_prior > 0.0 => p.max(0.0) / max_prior,
                _ => 0.0,
            };
            (i, PRIOR_WEIGHT * prior + BM25_WEIGHT * norm + (1.0 - PRIOR_WEIGHT - BM25_WEIGHT) * coverage)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

#[cfg(test)]
mod tests {
    #[test]
    fn passage_covering_the_query_wins() {
        let r = super::rerank(
            "install package apt",
            &["the kernel", "apt can install a package", "a package"],
            &[1.0, 1.0, 1.0],
        );
        assert_eq!(r[0].0, 1);
        assert_eq!(r.len(), 3);
    }
}
