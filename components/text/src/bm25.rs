//! An Okapi BM25 inverted index: built by `spindle index` or the embedded
//! retriever's build script and read in place from its packed form
//! ([`crate::packed`]), or built per query for lexical reranking.

use crate::corpus::Document;
use crate::tokenize::tokenize;
use std::collections::{BTreeMap, HashMap};

/// Term-frequency saturation.
pub const K1: f32 = 1.2;
/// Document-length normalisation.
pub const B: f32 = 0.75;

/// term -> (document number, term frequency), ascending by document.
pub(crate) type PostingLists = BTreeMap<String, Vec<(u32, u32)>>;

/// Inverted index over a set of documents.
#[derive(Debug)]
pub struct Index {
    docs: Vec<Document>,
    doc_len: Vec<u32>,
    avg_len: f32,
    postings: PostingLists,
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
        let mut postings = PostingLists::new();
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

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    pub fn doc(&self, n: usize) -> &Document {
        &self.docs[n]
    }

    /// Best `k` documents for `query` among those `keep` accepts.
    pub fn search(&self, query: &str, k: usize, keep: impl Fn(&Document) -> bool) -> Vec<Hit> {
        search(self, query, k, |d| keep(&self.docs[d]))
    }

    /// The index as bytes that [`crate::packed::PackedIndex`] reads in place.
    pub fn to_packed(&self) -> Result<Vec<u8>, crate::packed::FormatError> {
        crate::packed::write(self)
    }

    /// Documents, their lengths, the average length and the postings.
    pub(crate) fn parts(&self) -> (&[Document], &[u32], f32, &PostingLists) {
        (&self.docs, &self.doc_len, self.avg_len, &self.postings)
    }
}

/// Read access to an index, whether built in memory or compiled in.
pub trait IndexData {
    fn doc_count(&self) -> usize;
    fn doc_len(&self, doc: u32) -> u32;
    fn avg_len(&self) -> f32;
    fn postings(&self, term: &str) -> Option<Postings<'_>>;
}

/// A term's postings: (document number, term frequency), ascending.
#[derive(Debug, Clone, Copy)]
pub enum Postings<'a> {
    Pairs(&'a [(u32, u32)]),
    /// Little-endian u32 pairs, as [`crate::packed`] stores them.
    Packed(&'a [u8]),
}

impl<'a> Postings<'a> {
    pub fn len(&self) -> usize {
        match self {
            Postings::Pairs(p) => p.len(),
            Postings::Packed(b) => b.len() / 8,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn for_each(&self, mut f: impl FnMut(u32, u32)) {
        match self {
            Postings::Pairs(p) => p.iter().for_each(|&(d, tf)| f(d, tf)),
            Postings::Packed(b) => b.chunks_exact(8).for_each(|c| {
                f(u32::from_le_bytes([c[0], c[1], c[2], c[3]]), u32::from_le_bytes([c[4], c[5], c[6], c[7]]))
            }),
        }
    }
}

impl IndexData for Index {
    fn doc_count(&self) -> usize {
        self.docs.len()
    }
    fn doc_len(&self, doc: u32) -> u32 {
        self.doc_len[doc as usize]
    }
    fn avg_len(&self) -> f32 {
        self.avg_len
    }
    fn postings(&self, term: &str) -> Option<Postings<'_>> {
        self.postings.get(term).map(|p| Postings::Pairs(p))
    }
}

/// Scores every document sharing a term with `query` and keeps the best
/// `k` of those `keep` accepts (by document number), best first.
pub fn search(index: &impl IndexData, query: &str, k: usize, keep: impl Fn(usize) -> bool) -> Vec<Hit> {
    let mut terms = tokenize(query);
    terms.sort();
    terms.dedup();
    let n = index.doc_count() as f32;
    let avg = index.avg_len().max(1.0);
    // Sized for every posting up front (each document once at most), and
    // hashed with foldhash: growing and SipHashing this map was about a
    // fifth of the retriever's time (perf, `spindle-bench --tokens 1`).
    let lists: Vec<Postings<'_>> = terms.iter().filter_map(|t| index.postings(t)).collect();
    let postings: usize = lists.iter().map(|l| l.len()).sum();
    let mut scores: foldhash::HashMap<u32, f32> =
        foldhash::HashMap::with_capacity_and_hasher(postings.min(index.doc_count()), Default::default());
    for list in lists {
        let df = list.len() as f32;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        list.for_each(|d, tf| {
            let tf = tf as f32;
            let len_norm = 1.0 - B + B * index.doc_len(d) as f32 / avg;
            *scores.entry(d).or_default() += idf * tf * (K1 + 1.0) / (tf + K1 * len_norm);
        });
    }
    let mut hits: Vec<Hit> = scores
        .into_iter()
        .filter(|(d, _)| keep(*d as usize))
        .map(|(d, score)| Hit { doc: d as usize, score })
        .collect();
    let order = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc));
    // Only the best `k` need sorting.
    if k < hits.len() {
        hits.select_nth_unstable_by(k, order);
        hits.truncate(k);
    }
    hits.sort_by(order);
    hits
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
        let hits = index.search("how to install packages", 10, |_| true);
        assert_eq!(index.doc(hits[0].doc).id, "a");
        assert_eq!(hits.len(), 1);
        let hits = index.search("怎么安装软件", 10, |_| true);
        assert_eq!(index.doc(hits[0].doc).id, "c");
        assert!(index.search("kernel", 10, |d| d.id != "b").is_empty());
    }
}
