//! `sim selftest` (being written).
