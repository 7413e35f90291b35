//! An Okapi BM25 inverted index, built once (at component build time) and
//! queried by the embedded retriever and used for lexical reranking.

use crate::corpus::Document;
use crate::tokenize::tokenize;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Term-frequency saturation.
pub const K1: f32 = 1.2;
/// Document-length normalisation.
pub const B: f32 = 0.75;

/// Inverted index over a set of documents.
#[derive(Debug, Serialize, Deserialize)]
pub struct Index {
    docs: Vec<Document>,
    doc_len: Vec<u32>,
    avg_len: f32,
    /// term -> (document number, term frequency), ascending by document.
    postings: BTreeMap<String, Vec<(u32, u32)>>,
}

/// A scored hit: document number and BM25 score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: usize,
    pub score: f32,
}

impl Index {
    /// Tokenises and indexes `docs`. Only `text` is indexed: titles are
    /// display data (see corpus/README).
    pub fn build(docs: Vec<Document>) -> Self {
        let mut postings: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
        let mut doc_len = Vec::with_capacity(docs.len());
        for (n, doc) in docs.iter().enumerate() {
            let terms = tokenize(&doc.text);
            doc_len.push(terms.len() as u32);
            let mut tf: HashMap<String, u32> = HashMap::new();
            for t in terms {
                *tf.entry(t).or_default() += 1;
            }
            for (t, f) in tf {
                postings.entry(t).or_default().push((n as u32, f));
            }
        }
        let total: u64 = doc_len.iter().map(|&l| u64::from(l)).sum();
        let avg_len = if docs.is_empty() { 0.0 } else { total as f32 / docs.len() as f32 };
        Index { docs, doc_len, avg_len, postings }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("an in-memory index always serialises")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| format!("corrupt BM25 index: {e}"))
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn doc(&self, n: usize) -> &Document {
        &self.docs[n]
    }

    /// Scores every document that shares a term with `query` and keeps the
    /// best `k` of those that `keep` accepts, best first.
    pub fn search(&self, query: &str, k: usize, keep: impl Fn(&Document) -> bool) -> Vec<Hit> {
        let mut terms = tokenize(query);
        terms.sort();
        terms.dedup();
        let n = self.docs.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for term in &terms {
            let Some(list) = self.postings.get(term) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(d, tf) in list {
                let tf = tf as f32;
                let len_norm = 1.0 - B + B * self.doc_len[d as usize] as f32 / self.avg_len.max(1.0);
                *scores.entry(d).or_default() += idf * tf * (K1 + 1.0) / (tf + K1 * len_norm);
            }
        }
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .filter(|(d, _)| keep(&self.docs[*d as usize]))
            .map(|(d, score)| Hit { doc: d as usize, score })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
        hits.truncate(k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: &str) -> Document {
        Document { id: id.into(), title: None, text: text.into(), url: None, metadata: Default::default() }
    }

    #[test]
    fn ranks_matching_documents_first_and_round_trips() {
        let index = Index::build(vec![
            doc("a", "apt installs packages from the Debian archive"),
            doc("b", "the kernel boots the machine"),
            doc("c", "使用 apt 安装软件包"),
        ]);
        let index = Index::from_bytes(&index.to_bytes()).unwrap();
        let hits = index.search("how to install packages", 10, |_| true);
        assert_eq!(index.doc(hits[0].doc).id, "a");
        assert_eq!(hits.len(), 1);
        let hits = index.search("怎么安装软件", 10, |_| true);
        assert_eq!(index.doc(hits[0].doc).id, "c");
        assert!(index.search("kernel", 10, |d| d.id != "b").is_empty());
    }
}
