//! `prompt-default`: a citation-numbered RAG prompt with a token budget.
//!
//! Passages are numbered [1], [2] ... in the order the reranker left them;
//! the model is told to cite those numbers, which match the `sources` event.
//! Passages are added until the budget is spent (a passage that does not fit
//! is cut at a character boundary, never dropped silently: the prompt notes
//! the cut); then as much recent history as still fits. Chinese questions
//! get a Chinese template.

mod bindings {
    wit_bindgen::generate!({
        world: "spindle:prompt/prompt-step",
        path: ["../../wit/types", "../../wit/prompt"],
        generate_all,
    });
}

use bindings::exports::spindle::prompt::prompt::Guest;
use bindings::spindle::types::types::{Message, Passage, Query, Role, StepError};
use spindle_text::tokenize::is_cjk;

/// Prompt budget in (estimated) tokens for passages plus history. Small
/// models such as a 4k-context SmolLM2 need room left for the answer.
const TOKEN_BUDGET: usize = 2400;

/// Rough token count: ~4 Latin characters per token, one token per CJK
/// character. Exact counts would need the model's own tokenizer.
fn estimate_tokens(text: &str) -> usize {
    if text.is_ascii() {
        // The common case, checked a word at a time: no CJK characters.
        return text.len().div_ceil(4);
    }
    let (cjk, other) =
        text.chars().fold((0usize, 0usize), |(c, o), ch| if is_cjk(ch) { (c + 1, o) } else { (c, o + 1) });
    cjk + other.div_ceil(4)
}

/// Longest prefix of `text` within `tokens`.
fn truncate_to(text: &str, tokens: usize) -> &str {
    let mut used = 0;
    let mut latin = 0;
    for (i, ch) in text.char_indices() {
        if is_cjk(ch) {
            used += 1;
        } else {
            latin += 1;
            if latin % 4 == 1 {
                used += 1;
            }
        }
        if used > tokens {
            return &text[..i];
        }
    }
    text
}

struct Templates {
    system: &'static str,
    cut: &'static str,
    no_sources: &'static str,
}

const EN: Templates = Templates {
    system: "You answer questions using only the numbered sources below. Cite the sources you use as [1], [2] and so on. If the sources do not contain the answer, say that you do not know. Answer in the language of the question.",
    cut: "[…passage shortened]",
    no_sources: "(No sources were found.)",
};

const ZH: Templates = Templates {
    system: "请只根据下面编号的资料回答问题，并用 [1]、[2] 等标注引用的资料。如果资料中没有答案，请直接说不知道。请用提问的语言回答。",
    cut: "[…内容已截断]",
    no_sources: "（没有找到相关资料。）",
};

struct DefaultPrompt;

impl Guest for DefaultPrompt {
    async fn build(q: Query, passages: Vec<Passage>) -> Result<Vec<Message>, StepError> {
        spindle_step::step::exit_after_returning();
        if q.text.trim().is_empty() {
            return Err(StepError::InvalidInput("empty query".into()));
        }
        let t = if q.text.chars().any(is_cjk) { &ZH } else { &EN };
        let mut budget = TOKEN_BUDGET.saturating_sub(estimate_tokens(t.system) + estimate_tokens(&q.text));

        let mut sources = String::new();
        for (n, p) in passages.iter().enumerate() {
            let head = match &p.title {
                Some(title) => format!("[{}] {title}\n", n + 1),
                None => format!("[{}]\n", n + 1),
            };
            let need = estimate_tokens(&head) + estimate_tokens(&p.text);
            if budget < estimate_tokens(&head) + 16 {
                break;
            }
            sources.push_str(&head);
            if need <= budget {
                sources.push_str(&p.text);
                budget -= need;
            } else {
                let room = budget - estimate_tokens(&head);
                sources.push_str(truncate_to(&p.text, room.saturating_sub(8)));
                sources.push_str(t.cut);
                budget = 0;
            }
            sources.push_str("\n\n");
        }
        if passages.is_empty() {
            sources.push_str(t.no_sources);
        }

        let mut messages =
            vec![Message { role: Role::System, content: format!("{}\n\n{}", t.system, sources.trim_end()) }];
        // Most recent history first until the budget is spent, then restore order.
        let mut history = Vec::new();
        for m in q.history.iter().rev() {
            let cost = estimate_tokens(&m.content) + 4;
            if cost > budget {
                break;
            }
            budget -= cost;
            history.push(Message { role: m.role, content: m.content.clone() });
        }
        messages.extend(history.into_iter().rev());
        messages.push(Message { role: Role::User, content: q.text });
        Ok(messages)
    }
}

bindings::export!(DefaultPrompt with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_the_estimate() {
        let text = "abcd".repeat(100);
        assert!(estimate_tokens(truncate_to(&text, 10)) <= 10);
        assert_eq!(truncate_to("短文本", 10), "短文本");
    }
}
