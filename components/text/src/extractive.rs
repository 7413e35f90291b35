//! Extractive answers: when no language model is configured, or it fails
//! before its first token, the answer is built from the best-matching
//! sentences of the retrieved passages, cited by number and labelled as such.

use crate::tokenize::{is_cjk, tokenize};
use std::collections::HashSet;

/// How many sentences an extractive answer quotes at most.
const MAX_SENTENCES: usize = 3;

/// A passage as the extractive answerer sees it.
pub struct Source<'a> {
    pub title: Option<&'a str>,
    pub text: &'a str,
}

/// Builds the answer text, in pieces suitable for streaming one by one.
pub fn answer(query: &str, sources: &[Source<'_>]) -> Vec<String> {
    let chinese = query.chars().any(is_cjk);
    if sources.is_empty() {
        let msg = if chinese {
            "未找到相关文档，无法回答这个问题。"
        } else {
            "No relevant documents were found for this question."
        };
        return vec![msg.to_string()];
    }
    let q: HashSet<String> = tokenize(query).into_iter().collect();
    // (score, source number, sentence), best first; earlier sources win ties.
    let mut candidates: Vec<(f32, usize, String)> = Vec::new();
    for (n, src) in sources.iter().enumerate() {
        for sentence in sentences(src.text) {
            let terms: HashSet<String> = tokenize(&sentence).into_iter().collect();
            let overlap = q.intersection(&terms).count() as f32;
            // Prefer top-ranked sources: a small rank penalty breaks ties.
            candidates.push((overlap - n as f32 * 0.1, n, sentence));
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut chosen: Vec<(usize, String)> = candidates.into_iter().take(MAX_SENTENCES).map(|(_, n, s)| (n, s)).collect();
    chosen.sort_by_key(|(n, _)| *n);

    let mut pieces = vec![
        if chinese {
            "（未使用语言模型：以下内容摘自检索到的文档。）\n\n"
        } else {
            "(No language model was used: this answer is quoted from the retrieved documents.)\n\n"
        }
        .to_string(),
    ];
    for (n, sentence) in chosen {
        pieces.push(format!("{sentence} [{}]", n + 1));
        pieces.push(if chinese { "\n".into() } else { " ".into() });
    }
    pieces.pop();
    pieces
}

/// Splits text into sentences at `.`, `?`, `!`, `。`, `？`, `！`.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // The corpus is hard-wrapped: a line end is a space, not a boundary.
        let c = if c == '\n' { ' ' } else { c };
        if c == ' ' && cur.ends_with(' ') {
            continue;
        }
        cur.push(c);
        let ends = matches!(c, '。' | '？' | '！')
            || (matches!(c, '.' | '?' | '!') && chars.peek().is_none_or(|n| n.is_whitespace()));
        if ends {
            push_sentence(&mut cur, &mut out);
        }
    }
    push_sentence(&mut cur, &mut out);
    out
}

fn push_sentence(cur: &mut String, out: &mut Vec<String>) {
    let s = cur.trim();
    if s.chars().count() >= 8 {
        out.push(s.to_string());
    }
    cur.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_the_matching_sentence_with_its_citation() {
        let srcs = [
            Source { title: None, text: "The kernel boots the machine. It is called Linux." },
            Source { title: None, text: "Use apt to install packages. Dpkg is lower level." },
        ];
        let text = answer("how do I install packages", &srcs).concat();
        assert!(text.starts_with("(No language model"));
        assert!(text.contains("Use apt to install packages. [2]"), "{text}");
    }

    #[test]
    fn chinese_query_gets_chinese_label() {
        let srcs = [Source { title: None, text: "使用 apt 安装软件包。" }];
        assert!(answer("如何安装软件包", &srcs).concat().starts_with("（未使用语言模型"));
    }
}
