//! Stable equivalent of the cargo-fuzz target `interp` (see `fuzz/README.md`): the same
//! invariant checks (`tests/fuzz_checks/interp.rs`) on arbitrary code from arbitrary start
//! states with each compiled-tier mode, driven by proptest with a fixed seed and a fixed number
//! of cases, plus a replay of the committed fuzz corpus and crash regressions.
#[path = "fuzz_checks/interp.rs"]
mod interp;
#[path = "../../tests/fuzz_checks/prop.rs"]
mod prop;
#[path = "../../tests/fuzz_checks/replay.rs"]
mod replay;

use proptest::collection::vec;
use proptest::prelude::*;

#[test]
fn interpreter_invariants_on_random_code_and_states() {
    prop::run(800, vec(any::<u8>(), interp::HEADER..interp::HEADER + 300), |data| interp::check(&data));
}

#[test]
fn interpreter_invariants_on_each_tier_with_long_budgets() {
    // The same, but with the tier bits and a long budget forced, so every mode meets hot loops.
    prop::run(150, (0u8..3, vec(any::<u8>(), interp::HEADER..interp::HEADER + 100)), |(tier, mut data)| {
        data[48] = 0xFF;
        data[49] = 0x1F;
        data[50] = (data[50] & !3) | tier;
        interp::check(&data);
    });
}

#[test]
fn interp_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "interp", interp::check);
}
