//! cargo-fuzz target: the interpreter runs arbitrary bytes from an arbitrary real-mode start
//! state under a budget, with and without the compiled tier; the invariants are in
//! `backend-interp/tests/fuzz_checks/interp.rs` (shared with the stable proptest).
#![no_main]

#[path = "../../backend-interp/tests/fuzz_checks/interp.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
