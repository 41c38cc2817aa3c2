//! Shared helpers of the differential-testing tests: a test-only interpreter with a PLANTED
//! bug (never in the product), KVM availability, temporary directories.
#![allow(dead_code)]
use std::path::PathBuf;

use picoqemu::diff::disasm;
use picoqemu::diff::stepper::StepBackend;
use picoqemu_core::{flags, Backend, BackendError, BackendStats, CpuState, Machine, RunLimits, StopReason};
use picoqemu_interp::InterpBackend;

/// The interpreter with one planted bug: after every `neg` that completes, CF is inverted.
/// It runs one instruction at a time so it can see every `neg`.
#[derive(Debug, Default)]
pub struct PlantedBug {
    inner: InterpBackend,
}

impl PlantedBug {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for PlantedBug {
    fn name(&self) -> &'static str {
        "planted"
    }
    fn set_state(&mut self, state: &CpuState) -> Result<(), BackendError> {
        self.inner.set_state(state)
    }
    fn state(&mut self) -> Result<CpuState, BackendError> {
        self.inner.state()
    }
    fn run(&mut self, machine: &mut Machine, limits: RunLimits) -> Result<StopReason, BackendError> {
        let budget = limits.max_instructions.unwrap_or(u64::MAX);
        let mut done = 0u64;
        loop {
            if done >= budget {
                return Ok(if budget == 1 { StopReason::StepDone } else { StopReason::BudgetExhausted });
            }
            let pre = self.inner.state()?;
            let bytes = disasm::fetch(machine.ram_mut().bytes(), pre.pc_linear());
            let instr = disasm::decode(bytes.as_slice(), pre.eip);
            let stop =
                self.inner.run(machine, RunLimits { max_instructions: Some(1), timeout: limits.timeout })?;
            done += 1;
            let post = self.inner.state()?;
            let completed =
                post.eip == pre.eip.wrapping_add(instr.len() as u32) & 0xFFFF && post.cs() == pre.cs();
            if instr.mnemonic() == iced_x86::Mnemonic::Neg && completed {
                let mut bad = post;
                bad.eflags ^= flags::CF;
                self.inner.set_state(&bad)?;
            }
            match stop {
                StopReason::StepDone | StopReason::BudgetExhausted => {}
                other => return Ok(other),
            }
        }
    }
    fn stats(&self) -> BackendStats {
        self.inner.stats()
    }
}

impl StepBackend for PlantedBug {}

/// True when KVM can be used; otherwise prints why the test is skipped. With
/// `PICOQEMU_REQUIRE_KVM=1` an unusable KVM fails the test instead.
pub fn kvm_available(test: &str) -> bool {
    match picoqemu_kvm::KvmBackend::probe() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("PICOQEMU_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: KVM is required (PICOQEMU_REQUIRE_KVM=1) but unusable: {e}");
            }
            eprintln!("SKIP: {test}: KVM is not available: {e}");
            false
        }
    }
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("picoqemu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temporary directory");
    d
}
