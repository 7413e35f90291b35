//! Peers for Spindle's integration tests and benchmark.

pub mod scripted;
pub mod upstream;
