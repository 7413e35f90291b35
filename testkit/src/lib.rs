//! Peers for Spindle's integration tests and benchmark.

pub mod listen;
pub mod scripted;
pub mod upstream;
