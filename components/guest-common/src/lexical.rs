//! Lexical reranking: BM25 over the candidate set itself (so IDF reflects
//! what was retrieved, whatever retriever produced it) blended with how many
//! distinct query terms each passage covers.

use crate::bm25::Index;
use crate::corpus::Document;
use crate::tokenize::tokenize;
use std::collections::HashSet;

/// Weight of normalised BM25 in the blend; the rest is query-term coverage.
const BM25_WEIGHT: f32 = 0.7;

/// Returns `(index into texts, score)` for every text, best first.
pub fn rerank(query: &str, texts: &[&str]) -> Vec<(usize, f32)> {
    let index = Index::build(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Document {
                id: i.to_string(),
                title: None,
                text: t.to_string(),
                url: None,
                metadata: Default::default(),
            })
            .collect(),
    );
    let mut bm25 = vec![0.0f32; texts.len()];
    for hit in index.search(query, texts.len(), |_| true) {
        bm25[hit.doc] = hit.score;
    }
    let max = bm25.iter().cloned().fold(0.0f32, f32::max);
    let q: HashSet<String> = tokenize(query).into_iter().collect();
    let mut scored: Vec<(usize, f32)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let terms: HashSet<String> = tokenize(t).into_iter().collect();
            let coverage = if q.is_empty() { 0.0 } else { q.intersection(&terms).count() as f32 / q.len() as f32 };
            let norm = if max > 0.0 { bm25[i] / max } else { 0.0 };
            (i, BM25_WEIGHT * norm + (1.0 - BM25_WEIGHT) * coverage)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

#[cfg(test)]
mod tests {
    #[test]
    fn passage_covering_the_query_wins() {
        let r = super::rerank("install package apt", &["the kernel", "apt can install a package", "a package"]);
        assert_eq!(r[0].0, 1);
        assert_eq!(r.len(), 3);
    }
}
