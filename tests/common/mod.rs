//! Test harness shared by the suites in `tests/`: builds the guest
//! components once, starts real `spindle` processes on port 0, runs a fake
//! OpenAI-compatible upstream on loopback, and reads SSE streams
//! incrementally with arrival times.
#![allow(dead_code)]

pub mod client;
pub mod redis;
pub mod resume;
pub mod spindle;
// Not every suite uses every helper.
#[allow(unused_imports)]
pub use spindle_testkit::upstream;
