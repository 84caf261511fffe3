//! The server's whole request path on an in-process stack: see `tether_fuzz::server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_fuzz::server::run(data));
