//! cargo-fuzz target: the image loaders (boot, raw, ROM) on arbitrary images; the invariants are in
//! `core/tests/fuzz_checks/loader.rs` (shared with the stable proptest).
#![no_main]

#[path = "../../core/tests/fuzz_checks/loader.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
