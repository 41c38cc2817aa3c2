//! Randomized differential test of the compiled-block tier (JIT) against the plain interpreter.
//!
//! A deterministic generator (`jitgen/`) builds thousands of small real-mode loop programs with
//! iced-x86 (random eligible instructions, operand sizes, registers, immediates, 16-bit memory
//! operands with segment overrides, random back-branch kinds) plus programs that force side
//! exits (stores into the code page, self-modifying immediates, offsets at FFFF, the MMIO
//! console, A20 wrap and the high memory area). Each runs on fresh machines under
//! `JitMode::Off`, `JitMode::Eager` and (for a subset) `JitMode::Hot`; the stop reason, the
//! whole `CpuState`, the retired-instruction count, the compared RAM and the MMIO console output
//! must be identical, except status flags the SDM leaves undefined (tracked along the executed
//! path, `jitgen/flags.rs`). Budgeted runs (`max_instructions`) stopping inside loop passes are
//! compared at every stop and resumed to the end.
//!
//! Seed and size: `PICOQEMU_JIT_DIFF_SEED` (default printed), `PICOQEMU_JIT_DIFF_COUNT`.
//! On a mismatch the program is shrunk and printed (bytes, disassembly, initial state).
mod jitgen;

use jitgen::{campaign, CampaignConfig};

#[test]
fn jit_matches_interpreter_on_random_loops() {
    let cfg = CampaignConfig::from_env(0x5EED_0001_D1FF_2024, 3000);
    campaign(&cfg);
}
