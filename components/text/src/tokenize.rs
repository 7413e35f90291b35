//! Tokenisation for mixed Chinese and English text.
//!
//! Latin-script words are lower-cased, stop words dropped and stemmed with
//! the Snowball English stemmer. Han, Kana and Hangul runs have no spaces, so
//! they become overlapping character bigrams (the approach of Lucene's `cjk`
//! analyzer), with a lone character kept as a unigram.

use rust_stemmers::{Algorithm, Stemmer};
use std::sync::OnceLock;

/// English stop words: frequent enough to carry no ranking signal.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from", "how", "i", "if", "in",
    "into", "is", "it", "its", "of", "on", "or", "so", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", "my",
    "me", "we", "our",
];

/// Chinese function characters dropped as unigrams; they still take part in bigrams.
const CJK_STOP_CHARS: &[char] = &['的', '了', '是', '在', '和', '与', '或', '吗', '呢', '么', '我', '你', '个'];

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// True for characters written without spaces between words.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3400..=0x4DBF // CJK Extension A
        | 0x4E00..=0x9FFF // CJK Unified Ideographs
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0x20000..=0x2FA1F)
}

/// Splits `text` into index terms.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk: Vec<char> = Vec::new();
    for c in text.chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            cjk.push(c);
        } else if c.is_alphanumeric() {
            flush_cjk(&mut cjk, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_word(&mut word, &mut out);
            flush_cjk(&mut cjk, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_cjk(&mut cjk, &mut out);
    out
}

/// Most distinct words whose stems are remembered.
const STEM_CACHE_LIMIT: usize = 20_000;

thread_local! {
    /// Stemming dominates tokenisation and corpus vocabularies are small:
    /// remember each word's stem.
    static STEMS: std::cell::RefCell<std::collections::HashMap<String, String>> = Default::default();
}

fn flush_word(word: &mut String, out: &mut Vec<String>) {
    if !word.is_empty() && !STOP_WORDS.contains(&word.as_str()) {
        let stem = STEMS.with_borrow_mut(|cache| {
            if let Some(s) = cache.get(word.as_str()) {
                return s.clone();
            }
            let s = stemmer().stem(word).into_owned();
            if cache.len() < STEM_CACHE_LIMIT {
                cache.insert(word.clone(), s.clone());
            }
            s
        });
        out.push(stem);
    }
    word.clear();
}

fn flush_cjk(run: &mut Vec<char>, out: &mut Vec<String>) {
    match run.len() {
        0 => {}
        1 => {
            if !CJK_STOP_CHARS.contains(&run[0]) {
                out.push(run[0].to_string());
            }
        }
        _ => out.extend(run.windows(2).map(|w| w.iter().collect::<String>())),
    }
    run.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_is_stemmed_and_stopped() {
        assert_eq!(tokenize("How do I install the packages?"), vec!["instal", "packag"]);
    }

    #[test]
    fn chinese_becomes_bigrams() {
        assert_eq!(tokenize("安装软件包"), vec!["安装", "装软", "软件", "件包"]);
    }

    #[test]
    fn mixed_scripts_split_at_boundaries() {
        assert_eq!(
            tokenize("Debian的apt工具"),
            vec!["debian", "的", "apt", "工具"].into_iter().filter(|t| *t != "的").collect::<Vec<_>>()
        );
    }
}
