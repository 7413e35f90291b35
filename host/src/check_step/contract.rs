//! The step contract's types (`wit/types`, and each step's own records) as
//! the host lifts and lowers them, so the checker calls a step with typed
//! values. Field and case names are the WIT ones.
//!
//! They mirror records the guests already have (`spindle_text::hit::Hit`,
//! the wire's `Source`) on purpose: those are plain Rust shared with wasm
//! guests, while these carry wasmtime's `ComponentType`/`Lift`/`Lower`
//! derives, which only the host can depend on.

use wasmtime::component::{ComponentType, Lift, Lower};

#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq)]
#[component(record)]
pub struct Passage {
    pub id: String,
    pub text: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub score: f32,
    pub metadata: Vec<(String, String)>,
}

#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq)]
#[component(enum)]
#[repr(u8)]
pub enum Role {
    #[component(name = "system")]
    System,
    #[component(name = "user")]
    User,
    #[component(name = "assistant")]
    Assistant,
}

#[derive(ComponentType, Lift, Lower, Clone, Debug, PartialEq)]
#[component(record)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct Query {
    pub text: String,
    pub history: Vec<Message>,
    #[component(name = "top-k")]
    pub top_k: u32,
    pub filters: Vec<(String, String)>,
    #[component(name = "request-id")]
    pub request_id: String,
}

#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(variant)]
pub enum StepError {
    #[component(name = "invalid-input")]
    InvalidInput(String),
    #[component(name = "unavailable")]
    Unavailable(String),
    #[component(name = "timeout")]
    Timeout(String),
    #[component(name = "internal")]
    Internal(String),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (case, message) = match self {
            StepError::InvalidInput(m) => ("invalid-input", m),
            StepError::Unavailable(m) => ("unavailable", m),
            StepError::Timeout(m) => ("timeout", m),
            StepError::Internal(m) => ("internal", m),
        };
        write!(f, "step-error {case}: {message}")
    }
}

#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct Retrieval {
    pub passages: Vec<Passage>,
    pub degraded: Vec<String>,
}

#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct GeneratorInfo {
    pub name: String,
    pub model: String,
    pub ready: bool,
}

#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug)]
#[component(record)]
pub struct Usage {
    #[component(name = "prompt-tokens")]
    pub prompt_tokens: u32,
    #[component(name = "completion-tokens")]
    pub completion_tokens: u32,
}

#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(variant)]
pub enum Chunk {
    #[component(name = "text")]
    Text(String),
    #[component(name = "usage")]
    Usage(Usage),
    #[component(name = "finish")]
    Finish(String),
    #[component(name = "error")]
    Error(StepError),
}

#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct GenerateOptions {
    #[component(name = "max-tokens")]
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    #[component(name = "request-id")]
    pub request_id: String,
}
