//! A retriever for the sandbox tests (`tests/sandbox.rs`): a query
//! containing `spin-forever` never returns (a CPU loop), one containing
//! `allocate-forever` allocates until the memory limit stops it; any other
//! query gets one fixed passage.

mod bindings {
    wit_bindgen::generate!({
        world: "spindle:retriever/retriever-step",
        path: ["../../wit/types", "../../wit/retriever"],
        generate_all,
    });
}

use bindings::exports::spindle::retriever::retriever::{Guest, Retrieval};
use bindings::spindle::types::types::{Passage, Query, StepError};

struct Misbehaving;

impl Guest for Misbehaving {
    async fn retrieve(q: Query) -> Result<Retrieval, StepError> {
        guest_common::step::exit_after_returning();
        if q.text.contains("spin-forever") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if q.text.contains("allocate-forever") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        let passages = vec![Passage {
            id: "fixed".into(),
            text: "Debian is a free operating system.".into(),
            title: Some("Fixed".into()),
            url: None,
            score: 1.0,
            metadata: Vec::new(),
        }];
        Ok(Retrieval { passages, degraded: Vec::new() })
    }
}

bindings::export!(Misbehaving with_types_in bindings);
