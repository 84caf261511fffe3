//! The fuzz harnesses of Tether, shared by the cargo-fuzz targets in `fuzz_targets/` and by the
//! tests that write and replay the seed corpus (`tests/corpus.rs`). See `README.md`.

pub mod decoder;
pub mod seeds;
pub mod server;
