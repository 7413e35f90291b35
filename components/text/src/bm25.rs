//! An Okapi BM25 inverted index, built once (at component build time) and
//! queried by the embedded retriever and used for lexical reranking.

use crate::corpus::Document;
use crate::tokenize::tokenize;
use std::collections::{BTreeMap, HashMap};

/// Term-frequency saturation.
pub const K1: f32 = 1.2;
/// Document-length normalisation.
pub const B: f32 = 0.75;

/// Inverted index over a set of documents.
#[derive(Debug)]
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

    /// Rust source of a [`StaticIndex`] named `INDEX` with this content.
    /// Compiled into a component, the index lives in the module's data
    /// segment: no parsing at start-up, and every instance shares the same
    /// copy-on-write pages instead of holding its own heap copy.
    pub fn to_rust_source(&self) -> String {
        use std::fmt::Write;
        let opt = |o: &Option<String>| match o {
            Some(s) => format!("Some({s:?})"),
            None => "None".to_string(),
        };
        let mut out = String::from("pub static INDEX: StaticIndex = StaticIndex {\n    docs: &[\n");
        for d in &self.docs {
            let meta: Vec<String> = d.metadata.iter().map(|(k, v)| format!("({k:?}, {v:?})")).collect();
            let _ = writeln!(
                out,
                "        StaticDoc {{ id: {:?}, title: {}, text: {:?}, url: {}, metadata: &[{}] }},",
                d.id,
                opt(&d.title),
                d.text,
                opt(&d.url),
                meta.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "    ],\n    doc_len: &{:?},\n    avg_len: {:?}_f32,\n    terms: &[",
            self.doc_len, self.avg_len
        );
        for (term, list) in &self.postings {
            let _ = writeln!(out, "        ({term:?}, &{list:?}),");
        }
        out.push_str("    ],\n};\n");
        out
    }
}

/// Read access to an index, whether built in memory or compiled in.
pub trait IndexData {
    fn doc_count(&self) -> usize;
    fn doc_len(&self, doc: u32) -> u32;
    fn avg_len(&self) -> f32;
    fn postings(&self, term: &str) -> Option<&[(u32, u32)]>;
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
    fn postings(&self, term: &str) -> Option<&[(u32, u32)]> {
        self.postings.get(term).map(Vec::as_slice)
    }
}

/// A document of a [`StaticIndex`].
#[derive(Debug)]
pub struct StaticDoc {
    pub id: &'static str,
    pub title: Option<&'static str>,
    pub text: &'static str,
    pub url: Option<&'static str>,
    pub metadata: &'static [(&'static str, &'static str)],
}

/// An index compiled into the program (see [`Index::to_rust_source`]).
#[derive(Debug)]
pub struct StaticIndex {
    pub docs: &'static [StaticDoc],
    pub doc_len: &'static [u32],
    pub avg_len: f32,
    /// Sorted by term.
    pub terms: &'static [(&'static str, &'static [(u32, u32)])],
}

impl IndexData for StaticIndex {
    fn doc_count(&self) -> usize {
        self.docs.len()
    }
    fn doc_len(&self, doc: u32) -> u32 {
        self.doc_len[doc as usize]
    }
    fn avg_len(&self) -> f32 {
        self.avg_len
    }
    fn postings(&self, term: &str) -> Option<&[(u32, u32)]> {
        self.terms.binary_search_by(|(t, _)| (*t).cmp(term)).ok().map(|i| self.terms[i].1)
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
    let lists: Vec<&[(u32, u32)]> = terms.iter().filter_map(|t| index.postings(t)).collect();
    let postings: usize = lists.iter().map(|l| l.len()).sum();
    let mut scores: foldhash::HashMap<u32, f32> =
        foldhash::HashMap::with_capacity_and_hasher(postings.min(index.doc_count()), Default::default());
    for list in lists {
        let df = list.len() as f32;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        for &(d, tf) in list {
            let tf = tf as f32;
            let len_norm = 1.0 - B + B * index.doc_len(d) as f32 / avg;
            *scores.entry(d).or_default() += idf * tf * (K1 + 1.0) / (tf + K1 * len_norm);
        }
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

    #[test]
    fn static_index_answers_like_the_built_one() {
        let built = Index::build(vec![
            doc("a", "apt installs packages"),
            doc("b", "软件包管理"),
            doc("c", "packages and more packages"),
        ]);
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let docs: Vec<StaticDoc> = (0..built.len())
            .map(|i| StaticDoc {
                id: leak(&built.doc(i).id),
                title: None,
                text: leak(&built.doc(i).text),
                url: None,
                metadata: &[],
            })
            .collect();
        let terms: Vec<(&'static str, &'static [(u32, u32)])> =
            built.postings.iter().map(|(t, l)| (leak(t), &*Box::leak(l.clone().into_boxed_slice()))).collect();
        let fixed = StaticIndex {
            docs: Box::leak(docs.into_boxed_slice()),
            doc_len: Box::leak(built.doc_len.clone().into_boxed_slice()),
            avg_len: built.avg_len,
            terms: Box::leak(terms.into_boxed_slice()),
        };
        for q in ["packages", "软件包", "apt packages", "nothing"] {
            assert_eq!(search(&fixed, q, 10, |_| true), built.search(q, 10, |_| true), "{q}");
        }
        let src = built.to_rust_source();
        assert!(src.starts_with("pub static INDEX: StaticIndex"));
        assert!(src.contains(r#"("packag", &[(0, 1), (2, 2)])"#), "{src}");
    }
}
