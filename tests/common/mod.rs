//! Helpers shared by the top-level integration tests: running the built `picoqemu` binary and
//! deciding whether a KVM test runs, skips (printed reason) or fails (`PICOQEMU_REQUIRE_KVM=1`).
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `picoqemu` binary cargo built for these tests with `args`.
pub fn picoqemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_picoqemu")).args(args).output().expect("spawning picoqemu")
}

/// True when KVM can be used. Otherwise prints `SKIP: <test>: …` and returns false, unless
/// `PICOQEMU_REQUIRE_KVM=1`, in which case the test fails.
pub fn kvm_usable(test: &str) -> bool {
    match picoqemu_kvm::KvmBackend::probe() {
        Ok(()) => true,
        Err(e) => {
            assert!(
                std::env::var("PICOQEMU_REQUIRE_KVM").as_deref() != Ok("1"),
                "{test}: PICOQEMU_REQUIRE_KVM=1 but KVM is unusable: {e}"
            );
            eprintln!("SKIP: {test}: KVM is unusable here ({e})");
            false
        }
    }
}
