//! The fixed-seed, fixed-size proptest runner behind every stable fuzz-equivalent test: the
//! same cases on every run (no persistence files, no time limit), shrinking on failure.
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The seed of every fuzz-equivalent proptest.
const SEED: [u8; 32] = *b"picoqemu fuzz equivalents seed 1";

/// Runs `check` on `cases` values of `strategy`; panics with the shrunk input on failure.
pub fn run<S: Strategy>(cases: u32, strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let result = runner.run(&strategy, |v| {
        check(v);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
