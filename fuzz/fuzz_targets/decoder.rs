//! Differential fuzzing of the stream decoder: see `tether_fuzz::decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_fuzz::decoder::run(data));
