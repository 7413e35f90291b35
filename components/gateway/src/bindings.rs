//! Bindings to the step interfaces of `wit/` (imports of the gateway world).

spin_sdk::wit_bindgen::generate!({
    world: "spindle:gateway/gateway",
    path: ["../../wit/types", "../../wit/retriever", "../../wit/reranker", "../../wit/prompt", "../../wit/generator", "../../wit/gateway"],
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    generate_all,
});

pub use spindle::generator::generator;
pub use spindle::prompt::prompt;
pub use spindle::reranker::reranker;
pub use spindle::retriever::retriever;
pub use spindle::types::types::{Message, Passage, Query, Role, StepError};
