//! cargo-fuzz target: the SingleStepTests MOO reader on corrupt and well-formed files; the invariants are in
//! `verify/tests/fuzz_checks/moo.rs` (shared with the stable proptest).
#![no_main]

#[path = "../../verify/tests/fuzz_checks/moo.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
