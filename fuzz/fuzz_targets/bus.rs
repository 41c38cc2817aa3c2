//! cargo-fuzz target: the port/MMIO bus and its devices under arbitrary access sequences; the invariants are in
//! `core/tests/fuzz_checks/bus.rs` (shared with the stable proptest).
#![no_main]

#[path = "../../core/tests/fuzz_checks/bus.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
