//! cargo-fuzz target: the snapshot loader on random, damaged, truncated and re-framed files; the
//! invariants are in `core/tests/fuzz_checks/snapshot.rs` (shared with the stable proptest).
#![no_main]

#[path = "../../core/tests/fuzz_checks/snapshot.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
