//! Stable equivalent of the cargo-fuzz target `cli_parse` (see `fuzz/README.md`):
//! the same invariant checks (`tests/fuzz_checks/`), driven by proptest with a fixed seed and a
//! fixed number of cases, plus a replay of the committed fuzz corpus and crash regressions.
#[path = "fuzz_checks/cli_parse.rs"]
mod cli_parse;
#[path = "fuzz_checks/prop.rs"]
mod prop;
#[path = "fuzz_checks/replay.rs"]
mod replay;

use proptest::collection::vec;
use proptest::prelude::*;

#[test]
fn cli_parsers_on_value_like_text() {
    let number =
        "[ ]?[+-]?[0-9_]{0,21}(\\.[0-9]{0,4})?[ ]?(k|K|m|M|g|G|kb|KiB|mib|b|B|ms|s|us|µs|ns|min|h|x|e9)?[ ]?";
    let hex = "[ ]?(0x|0X)?[0-9a-fA-F_]{0,20}[hH]?";
    prop::run(4000, prop_oneof![number, hex, any::<String>()], |s| cli_parse::check_str(&s));
}

#[test]
fn cli_parsers_on_random_bytes() {
    prop::run(2000, vec(any::<u8>(), 0..40), |data| cli_parse::check(&data));
}

#[test]
fn cli_parse_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "cli_parse", cli_parse::check);
}
