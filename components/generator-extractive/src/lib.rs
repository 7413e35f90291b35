//! `generator-extractive`: answers without a language model, quoting the
//! best-matching sentences of the passages with their citation numbers (see
//! `spindle_text::extractive`). Wire it as the generator in `spin.toml` for a
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
use spindle_text::extractive;

struct Extractive;

impl Guest for Extractive {
    async fn info() -> GeneratorInfo {
        spindle_step::step::exit_after_returning();
        GeneratorInfo { name: "extractive".into(), model: "extractive".into(), ready: true }
    }

    async fn generate(
        messages: Vec<Message>,
        passages: Vec<Passage>,
        _options: GenerateOptions,
    ) -> Result<wit_bindgen::StreamReader<Chunk>, StepError> {
        spindle_step::step::exit_after_returning();
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
        // The whole answer exists already: one write, read in as few reads
        // as the gateway's buffer allows, instead of a wakeup per piece.
        let mut chunks: Vec<Chunk> = pieces.into_iter().map(Chunk::Text).collect();
        chunks.push(Chunk::Finish("stop".into()));
        wit_bindgen::spawn(async move {
            let _ = tx.write_all(chunks).await;
        });
        Ok(rx)
    }
}

bindings::export!(Extractive with_types_in bindings);
