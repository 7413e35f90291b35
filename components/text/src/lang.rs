//! The language of a text, for chunks that arrive without `lang` metadata:
//! the keyword index keeps a per-language copy of a chunk's text
//! (`text_en`, `text_zh` ...) only when it knows the chunk's language, and a
//! pipeline searching those fields would never find the others.
//!
//! Only what the tokeniser itself distinguishes is told apart: scripts
//! written without spaces (Chinese, Japanese, Korean) from Latin-script
//! text, which is taken as English, the one Latin language the tokeniser
//! stems. Anything else gets no language.

/// `zh`, `ja`, `ko` or `en`; `None` when the text has too few letters to
/// tell, or is mostly in another script.
pub fn detect(text: &str) -> Option<&'static str> {
    let (mut han, mut kana, mut hangul, mut latin, mut other) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        match c as u32 {
            0x3040..=0x30FF => kana += 1,
            0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F => han += 1,
            0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => hangul += 1,
            _ if c.is_ascii_alphabetic() || ('\u{C0}'..='\u{24F}').contains(&c) => latin += 1,
            _ => other += 1,
        }
    }
    // A CJK character carries about a word; Latin letters about a fifth.
    let words = |n: usize| n as f64;
    let latin_words = latin as f64 / 5.0;
    let total = words(han + kana + hangul) + latin_words + other as f64 / 5.0;
    if total < 2.0 {
        return None;
    }
    let share = |n: f64| n / total;
    if share(words(kana)) >= 0.2 || (kana > 0 && share(words(han + kana)) >= 0.5) {
        Some("ja")
    } else if share(words(hangul)) >= 0.5 {
        Some("ko")
    } else if share(words(han)) >= 0.5 {
        Some("zh")
    } else if share(latin_words) >= 0.5 {
        Some("en")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn tells_the_scripts_apart() {
        assert_eq!(detect("How do I install a package with apt?"), Some("en"));
        assert_eq!(detect("如何使用 apt 安装软件包？"), Some("zh"));
        assert_eq!(detect("パッケージをインストールする方法"), Some("ja"));
        assert_eq!(detect("패키지를 설치하는 방법"), Some("ko"));
        assert_eq!(detect("Как установить пакет с помощью apt"), None);
        assert_eq!(detect("42 !"), None);
        // Chinese prose quoting English commands stays Chinese.
        assert_eq!(detect("在 Debian 上用 apt-get install 安装软件包，依赖会自动处理。"), Some("zh"));
    }
}
