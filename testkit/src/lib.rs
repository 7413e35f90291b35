//! Peers for Spindle's integration tests and benchmark.

pub mod listen;
pub mod pdf;
pub mod procstat;
pub mod scripted;
pub mod upstream;
