//! The BM25 index as one flat byte string, read in place.
//!
//! The embedded retriever serves an index that is part of its linear
//! memory's initial image: the bundled one through `include_bytes!`, or one
//! `spindle index --embedded` placed in a data segment of a copy of the
//! component. Either way every instance maps the same copy-on-write pages,
//! and each request opens the index in O(1): [`PackedIndex::open`] checks
//! the header and the section bounds, and every later read is bounds-checked,
//! so a damaged index gives wrong or no hits, never a trap.
//!
//! Hand-written rather than rkyv or similar: their checked access validates
//! the whole archive (every request runs in a fresh instance, so that would
//! be per request), their unchecked access is `unsafe` on bytes a user may
//! have edited, and this layout is five arrays.
//!
//! Layout, little-endian, every section 4-byte aligned:
//!
//! ```text
//! header   magic "SPXBM25" + version (8 bytes), doc count, term count,
//!          avg_len (f32 bits), and the offset of each section below
//! lens     doc count × u32: tokens per document
//! docs     doc count × u32: offset of the document's record in `strings`
//! terms    term count × (term offset, term length, postings offset, count)
//!          sorted by the term's bytes
//! postings (document, term frequency) pairs, u32 each, ascending by document
//! strings  records: id, title, text, url (u32 length + UTF-8 bytes; a
//!          length of u32::MAX is "none"), metadata count, then key/value
//!          pairs; and the terms' bytes
//! ```

use crate::bm25::{Index, IndexData, Postings};
use thiserror::Error;

const MAGIC: &[u8; 7] = b"SPXBM25";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 48;
const NONE: u32 = u32::MAX;

/// Marks the descriptor (16 bytes magic, then offset and length as u32)
/// that a retriever keeps in its data so `spindle index --embedded` can
/// find it and point it at the index it adds to the component.
pub const SLOT_MAGIC: [u8; 16] = *b"spindle-index-v1";

/// Where a patched component's index is: [`SLOT_MAGIC`], then the index's
/// address in linear memory and its length (0: none, use the bundled one).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub magic: [u8; 16],
    pub offset: u32,
    pub len: u32,
}

impl Slot {
    pub const EMPTY: Slot = Slot { magic: SLOT_MAGIC, offset: 0, len: 0 };
    /// Byte position of `offset` and `len` within the slot.
    pub const OFFSET_AT: usize = 16;
    pub const LEN_AT: usize = 20;
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a Spindle BM25 index (bad magic)")]
    Magic,
    #[error("index format version {0} is not supported (this build reads {VERSION})")]
    Version(u8),
    #[error("the index is damaged: {0}")]
    Damaged(&'static str),
}

/// An index read in place from bytes written by [`Index::to_packed`].
#[derive(Debug, Clone, Copy)]
pub struct PackedIndex<'a> {
    doc_count: usize,
    term_count: usize,
    avg_len: f32,
    lens: &'a [u8],
    docs: &'a [u8],
    terms: &'a [u8],
    postings: &'a [u8],
    strings: &'a [u8],
}

/// One document of a [`PackedIndex`], borrowed from it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocRef<'a> {
    pub id: &'a str,
    pub title: Option<&'a str>,
    pub text: &'a str,
    pub url: Option<&'a str>,
    pub metadata: Vec<(&'a str, &'a str)>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> PackedIndex<'a> {
    /// Checks the header and that every section lies within `bytes`.
    pub fn open(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_LEN || &bytes[..7] != MAGIC {
            return Err(FormatError::Magic);
        }
        if bytes[7] != VERSION {
            return Err(FormatError::Version(bytes[7]));
        }
        let field = |n: usize| u32_at(bytes, 8 + 4 * n).unwrap_or(0) as usize;
        let (doc_count, term_count) = (field(0), field(1));
        let avg_len = f32::from_bits(field(2) as u32);
        let bounds = [field(3), field(4), field(5), field(6), field(7), field(8)];
        let section = |n: usize, want: Option<usize>| -> Result<&'a [u8], FormatError> {
            let (start, end) = (bounds[n], bounds[n + 1]);
            let s = bytes.get(start..end).ok_or(FormatError::Damaged("a section lies outside the index"))?;
            match want {
                Some(len) if len != s.len() => Err(FormatError::Damaged("a section has the wrong size")),
                _ => Ok(s),
            }
        };
        let index = PackedIndex {
            doc_count,
            term_count,
            avg_len,
            lens: section(0, doc_count.checked_mul(4))?,
            docs: section(1, doc_count.checked_mul(4))?,
            terms: section(2, term_count.checked_mul(16))?,
            postings: section(3, None)?,
            strings: section(4, None)?,
        };
        if !index.postings.len().is_multiple_of(8) {
            return Err(FormatError::Damaged("postings are not whole pairs"));
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.doc_count
    }

    pub fn is_empty(&self) -> bool {
        self.doc_count == 0
    }

    /// Document `n`.
    pub fn doc(&self, n: usize) -> Result<DocRef<'a>, FormatError> {
        let start = u32_at(self.docs, n * 4).ok_or(FormatError::Damaged("no such document"))? as usize;
        let mut r = Reader { bytes: self.strings, at: start };
        let id = r.str()?.ok_or(FormatError::Damaged("a document has no id"))?;
        let title = r.str()?;
        let text = r.str()?.unwrap_or_default();
        let url = r.str()?;
        let pairs = r.u32()? as usize;
        let mut metadata = Vec::with_capacity(pairs.min(64));
        for _ in 0..pairs {
            let k = r.str()?.unwrap_or_default();
            let v = r.str()?.unwrap_or_default();
            metadata.push((k, v));
        }
        Ok(DocRef { id, title, text, url, metadata })
    }

    /// Whether document `n` has every `(key, value)` of `filters` in its
    /// metadata, read without decoding its text.
    pub fn matches(&self, n: usize, filters: &[(String, String)]) -> bool {
        filters.is_empty()
            || self
                .doc(n)
                .is_ok_and(|d| filters.iter().all(|(k, v)| d.metadata.iter().any(|(mk, mv)| mk == k && mv == v)))
    }

    fn term(&self, i: usize) -> Option<(&'a [u8], usize, usize)> {
        let at = i * 16;
        let (off, len) = (u32_at(self.terms, at)? as usize, u32_at(self.terms, at + 4)? as usize);
        let (post, count) = (u32_at(self.terms, at + 8)? as usize, u32_at(self.terms, at + 12)? as usize);
        Some((self.strings.get(off..off.checked_add(len)?)?, post, count))
    }
}

impl IndexData for PackedIndex<'_> {
    fn doc_count(&self) -> usize {
        self.doc_count
    }
    fn doc_len(&self, doc: u32) -> u32 {
        u32_at(self.lens, doc as usize * 4).unwrap_or(0)
    }
    fn avg_len(&self) -> f32 {
        self.avg_len
    }
    fn postings(&self, term: &str) -> Option<Postings<'_>> {
        let (mut lo, mut hi) = (0, self.term_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (bytes, post, count) = self.term(mid)?;
            match bytes.cmp(term.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let end = post.checked_add(count.checked_mul(8)?)?;
                    return self.postings.get(post..end).map(Postings::Packed);
                }
            }
        }
        None
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, FormatError> {
        let v = u32_at(self.bytes, self.at).ok_or(FormatError::Damaged("a record runs past the index"))?;
        self.at += 4;
        Ok(v)
    }

    fn str(&mut self) -> Result<Option<&'a str>, FormatError> {
        let len = self.u32()?;
        if len == NONE {
            return Ok(None);
        }
        let end = self.at.checked_add(len as usize).ok_or(FormatError::Damaged("a string runs past the index"))?;
        let bytes = self.bytes.get(self.at..end).ok_or(FormatError::Damaged("a string runs past the index"))?;
        self.at = end;
        std::str::from_utf8(bytes).map(Some).map_err(|_| FormatError::Damaged("a string is not UTF-8"))
    }
}

/// Appends `len` as u32 then `bytes`, or [`NONE`] for `None`.
fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.extend_from_slice(&NONE.to_le_bytes()),
    }
}

fn align4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Writes `index` in the layout above. Fails past 4 GiB, the limit of a
/// wasm32 memory anyway.
pub(crate) fn write(index: &Index) -> Result<Vec<u8>, FormatError> {
    let (docs, lens, avg_len, postings) = index.parts();
    let mut strings = Vec::new();
    let mut doc_offsets = Vec::with_capacity(docs.len());
    for d in docs {
        doc_offsets.push(strings.len());
        put_str(&mut strings, Some(&d.id));
        put_str(&mut strings, d.title.as_deref());
        put_str(&mut strings, Some(&d.text));
        put_str(&mut strings, d.url.as_deref());
        strings.extend_from_slice(&(d.metadata.len() as u32).to_le_bytes());
        for (k, v) in &d.metadata {
            put_str(&mut strings, Some(k));
            put_str(&mut strings, Some(v));
        }
    }
    let mut terms = Vec::with_capacity(postings.len() * 16);
    let mut pairs = Vec::new();
    for (term, list) in postings {
        for v in [strings.len(), term.len(), pairs.len(), list.len()] {
            terms.extend_from_slice(
                &u32::try_from(v).map_err(|_| FormatError::Damaged("index over 4 GiB"))?.to_le_bytes(),
            );
        }
        strings.extend_from_slice(term.as_bytes());
        for &(d, tf) in list {
            pairs.extend_from_slice(&d.to_le_bytes());
            pairs.extend_from_slice(&tf.to_le_bytes());
        }
    }

    let mut out = Vec::with_capacity(HEADER_LEN + strings.len() + pairs.len() + terms.len() + docs.len() * 8);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.resize(HEADER_LEN, 0);
    let mut bounds = Vec::new();
    let mut section = |out: &mut Vec<u8>, bytes: &[u8]| {
        align4(out);
        bounds.push(out.len());
        out.extend_from_slice(bytes);
    };
    section(&mut out, &lens.iter().flat_map(|l| l.to_le_bytes()).collect::<Vec<_>>());
    section(&mut out, &doc_offsets.iter().flat_map(|&o| (o as u32).to_le_bytes()).collect::<Vec<_>>());
    section(&mut out, &terms);
    section(&mut out, &pairs);
    section(&mut out, &strings);
    bounds.push(out.len());
    if out.len() > u32::MAX as usize {
        return Err(FormatError::Damaged("index over 4 GiB"));
    }
    let header = [docs.len(), postings.len(), avg_len.to_bits() as usize].into_iter().chain(bounds);
    for (n, v) in header.enumerate() {
        out[8 + 4 * n..12 + 4 * n].copy_from_slice(&(v as u32).to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bm25::search;
    use crate::corpus::Document;

    fn doc(id: &str, text: &str, meta: &[(&str, &str)]) -> Document {
        Document {
            id: id.into(),
            title: (id == "a").then(|| "Installing".to_string()),
            text: text.into(),
            url: (id == "b").then(|| "https://example.org/b".to_string()),
            metadata: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn built() -> Index {
        Index::build(vec![
            doc("a", "apt installs packages", &[("lang", "en")]),
            doc("b", "软件包管理", &[("lang", "zh")]),
            doc("c", "packages and more packages", &[("lang", "en"), ("section", "x")]),
        ])
    }

    #[test]
    fn packed_index_answers_like_the_built_one() {
        let index = built();
        let bytes = index.to_packed().unwrap();
        let packed = PackedIndex::open(&bytes).unwrap();
        for q in ["packages", "软件包", "apt packages", "nothing", ""] {
            assert_eq!(search(&packed, q, 10, |_| true), index.search(q, 10, |_| true), "{q}");
        }
        let b = packed.doc(1).unwrap();
        assert_eq!((b.id, b.title, b.text, b.url), ("b", None, "软件包管理", Some("https://example.org/b")));
        assert_eq!(packed.doc(0).unwrap().title, Some("Installing"));
        assert_eq!(packed.doc(2).unwrap().metadata, [("lang", "en"), ("section", "x")]);
        let zh = [("lang".to_string(), "zh".to_string())];
        assert!(packed.matches(1, &zh) && !packed.matches(0, &zh) && packed.matches(0, &[]));
    }

    #[test]
    fn damaged_bytes_are_refused_or_read_safely() {
        let bytes = built().to_packed().unwrap();
        assert_eq!(
            PackedIndex::open(b"not an index at all, not at all, no no no no no").unwrap_err(),
            FormatError::Magic
        );
        let mut newer = bytes.clone();
        newer[7] = 9;
        assert_eq!(PackedIndex::open(&newer).unwrap_err(), FormatError::Version(9));
        assert!(matches!(PackedIndex::open(&bytes[..bytes.len() - 1]), Err(FormatError::Damaged(_))));
        // Any byte flipped anywhere: open or read may fail, never panic.
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0xa5;
            if let Ok(p) = PackedIndex::open(&bad) {
                let _ = search(&p, "apt packages 软件包", 10, |_| true);
                let _ = (0..4).map(|n| p.doc(n)).collect::<Vec<_>>();
            }
        }
    }
}
