//! cargo-fuzz target: the CLI's size, duration and address parsers on arbitrary text; the invariants are in
//! `tests/fuzz_checks/cli_parse.rs` (shared with the stable proptest).
#![no_main]

#[path = "../../tests/fuzz_checks/cli_parse.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
