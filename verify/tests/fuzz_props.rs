//! Stable equivalent of the cargo-fuzz target `moo` (see `fuzz/README.md`): the same
//! invariant checks (`tests/fuzz_checks/moo.rs`) on raw, well-formed, truncated and corrupted
//! MOO files, driven by proptest with a fixed seed and a fixed number of cases, plus a replay of
//! the committed fuzz corpus and crash regressions.
#[path = "fuzz_checks/moo.rs"]
mod moo;
#[path = "../../tests/fuzz_checks/prop.rs"]
mod prop;
#[path = "../../tests/fuzz_checks/replay.rs"]
mod replay;

use proptest::collection::vec;
use proptest::prelude::*;

#[test]
fn moo_reader_on_random_well_formed_truncated_and_corrupt_files() {
    prop::run(3000, vec(any::<u8>(), 0..600), |data| moo::check(&data));
}

#[test]
fn moo_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "moo", moo::check);
}
