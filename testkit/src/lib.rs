//! Peers for Spindle's integration tests and benchmark.

pub mod upstream;
