//! A retriever for the sandbox tests (`tests/sandbox.rs`): a query
//! containing `spin-forever` never returns (a CPU loop), one containing
//! `allocate-forever` allocates until the memory limit stops it; any other
//! query gets one fixed passage.

use spindle_step::export::{Found, Request};
use spindle_text::hit::{Failure, Hit};

async fn retrieve(q: Request) -> Result<Found, Failure> {
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
    let hits = vec![Hit {
        id: "fixed".into(),
        text: "Debian is a free operating system.".into(),
        title: Some("Fixed".into()),
        url: None,
        score: 1.0,
        metadata: Vec::new(),
    }];
    Ok(Found { hits, degraded: Vec::new() })
}

spindle_step::export_retriever!(Misbehaving, retrieve);
