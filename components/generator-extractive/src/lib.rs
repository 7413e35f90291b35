//! `generator-extractive`: answers without a language model, quoting the
//! best-matching sentences of the passages with their citation numbers (see
//! `guest_common::extractive`). Wire it as the generator in `spin.toml` for a
//! deployment with no LLM at all; the gateway uses the same code as its
//! fallback when the configured LLM is missing or fails before its first token.

mod bindings {
    wit_bindgen::generate!({
        world: "spindle:generator/generator-step",
        path: ["../../wit/types", "../../wit/generator"],
        generate_all,
    });
}

use bindings::exports::spindle::generator::generator::{Chunk, GenerateOptions, GeneratorInfo, Guest};
use bindings::spindle::types::types::{Message, Passage, Role, StepError};
use guest_common::extractive;

struct Extractive;

impl Guest for Extractive {
    async fn info() -> GeneratorInfo {
        guest_common::step::exit_after_returning();
        GeneratorInfo { name: "extractive".into(), model: "extractive".into(), ready: true }
    }

    async fn generate(
        messages: Vec<Message>,
        passages: Vec<Passage>,
        _options: GenerateOptions,
    ) -> Result<wit_bindgen::StreamReader<Chunk>, StepError> {
        guest_common::step::exit_after_returning();
        let question = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .ok_or_else(|| StepError::InvalidInput("no user message to answer".into()))?;
        let sources: Vec<extractive::Source<'_>> =
            passages.iter().map(|p| extractive::Source { title: p.title.as_deref(), text: &p.text }).collect();
        let pieces = extractive::answer(&question, &sources);
        let (mut tx, rx) = bindings::wit_stream::new::<Chunk>();
        wit_bindgen::spawn(async move {
            for piece in pieces {
                if tx.write_one(Chunk::Text(piece)).await.is_some() {
                    return;
                }
            }
            let _ = tx.write_one(Chunk::Finish("stop".into())).await;
        });
        Ok(rx)
    }
}

bindings::export!(Extractive with_types_in bindings);
