//! How a corpus document becomes indexed chunks: the one schema the indexer
//! writes and the remote retrievers read, so the two cannot drift apart.
//!
//! Each chunk is stored with the fields `text`, `title`, `url`, `doc_id`
//! and every metadata key of its document as a field of its own (so a
//! request filter `lang=en` is a term filter on the field `lang`).

/// Stored field names.
pub const TEXT: &str = "text";
pub const TITLE: &str = "title";
pub const URL: &str = "url";
pub const DOC_ID: &str = "doc_id";

/// One chunk of a document, ready to index.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// `<document id>#<n>`, stable across runs, so re-indexing overwrites.
    pub id: String,
    pub doc_id: String,
    pub text: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// Chunk size limits in "units", an estimate of model tokens that needs no
/// tokenizer: a CJK character is about one token, other text about four
/// characters a token. The default fits the 512-token window of
/// multilingual-e5 with room for the `passage: ` prefix.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    pub max_units: f32,
    pub overlap_units: f32,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking { max_units: 400.0, overlap_units: 60.0 }
    }
}

fn units(c: char) -> f32 {
    if crate::tokenize::is_cjk(c) { 1.0 } else { 0.25 }
}

/// A place a chunk may end after `c`: whitespace or sentence punctuation.
fn is_break(c: char) -> bool {
    c.is_whitespace() || matches!(c, '。' | '！' | '？' | '；' | '，' | '、' | '.' | '!' | '?' | ';' | ',')
}

/// Splits `text` into overlapping pieces of at most `cfg.max_units`, ending
/// each at the last break in its final fifth where there is one.
pub fn split(text: &str, cfg: Chunking) -> Vec<String> {
    let chars: Vec<char> = text.trim().chars().collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = start;
        let mut used = 0.0;
        while end < chars.len() && used + units(chars[end]) <= cfg.max_units {
            used += units(chars[end]);
            end += 1;
        }
        if end < chars.len() {
            let floor = start + (end - start) * 4 / 5;
            if let Some(b) = (floor..end).rev().find(|&i| is_break(chars[i])) {
                end = b + 1;
            }
        }
        end = end.max(start + 1);
        let piece: String = chars[start..end].iter().collect::<String>().trim().to_string();
        if !piece.is_empty() {
            pieces.push(piece);
        }
        if end >= chars.len() {
            break;
        }
        // Step back by the overlap, but always move forward.
        let mut back = end;
        let mut overlap = 0.0;
        while back > start + 1 && overlap + units(chars[back - 1]) <= cfg.overlap_units {
            overlap += units(chars[back - 1]);
            back -= 1;
        }
        // Start the overlap at a word boundary.
        while back < end && !is_break(chars[back - 1]) {
            back += 1;
        }
        start = back.max(start + 1);
    }
    pieces
}

/// The chunks of one corpus document.
pub fn chunk_document(doc: &crate::corpus::Document, cfg: Chunking) -> Vec<Chunk> {
    split(&doc.text, cfg)
        .into_iter()
        .enumerate()
        .map(|(n, text)| Chunk {
            id: format!("{}#{n}", doc.id),
            doc_id: doc.id.clone(),
            text,
            title: doc.title.clone(),
            url: doc.url.clone(),
            metadata: doc.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split("  Debian is free.  ", Chunking::default()), ["Debian is free."]);
    }

    #[test]
    fn long_text_is_split_at_breaks_with_overlap_and_covers_everything() {
        let text = (0..400).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ");
        let cfg = Chunking { max_units: 100.0, overlap_units: 20.0 };
        let pieces = split(&text, cfg);
        assert!(pieces.len() > 3, "{}", pieces.len());
        for p in &pieces {
            assert!(p.chars().count() <= 400, "{}", p.len());
            assert!(!p.starts_with(|c: char| c.is_ascii_digit()), "split inside a word: {p}");
        }
        for w in ["word0", "word200", "word399"] {
            assert!(pieces.iter().any(|p| p.split(' ').any(|x| x == w)), "{w} lost");
        }
        // Consecutive chunks share their boundary words.
        let last_of_first = pieces[0].split(' ').next_back().unwrap();
        assert!(pieces[1].split(' ').any(|x| x == last_of_first));
    }

    #[test]
    fn cjk_counts_one_unit_a_character() {
        let text = "软件包管理。".repeat(200);
        let pieces = split(&text, Chunking::default());
        assert!(pieces.len() >= 3);
        let cjk = |p: &String| p.chars().filter(|&c| crate::tokenize::is_cjk(c)).count();
        assert!(pieces.iter().all(|p| cjk(p) <= 400));
        assert!(pieces[0].ends_with('。'));
    }
}
