//! Single-stepping a backend for lockstep comparison.
//!
//! [`StepBackend::step`] executes "one step" the way the backend defines it. The default is
//! `run` with a budget of one instruction, which is exactly one instruction for the interpreter.
//! The KVM backend's step is one `KVM_RUN` with `KVM_GUESTDBG_SINGLESTEP`, which on our hosts is
//! *not* always one instruction (see `docs/known-differences.md` and the lockstep rules in
//! [`super::lockstep`]).
use picoqemu_core::{Backend, Machine, RunLimits, StopReason};

/// A backend that can be advanced one step at a time.
pub trait StepBackend: Backend {
    /// Runs one step; [`StopReason::StepDone`] when nothing else stopped it.
    fn step(&mut self, machine: &mut Machine) -> StopReason {
        self.run(machine, RunLimits::instructions(1))
    }
}

impl StepBackend for picoqemu_interp::InterpBackend {}
impl StepBackend for picoqemu_kvm::KvmBackend {}
