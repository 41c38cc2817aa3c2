//! Single-stepping a backend for lockstep comparison.
//!
//! [`StepBackend::step_one`] executes "one step" the way the backend defines it and says what
//! kind of step it was ([`Step`]). For the interpreter a step is `run` with a budget of one
//! instruction: exactly one instruction, one REP iteration, or one exception delivery. The KVM
//! backend's step is one `KVM_RUN` with `KVM_GUESTDBG_SINGLESTEP`, which on our hosts is *not*
//! always one instruction; its own classification is mapped onto [`Step`] so the lockstep
//! rules in [`super::lockstep`] can apply (see `docs/known-differences.md`).
use std::time::Instant;

use picoqemu_core::{Backend, Machine, RunLimits, StopReason};

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// One instruction (or, for the interpreter, one REP iteration or one exception
    /// delivery) completed.
    Retired,
    /// A REP string instruction ran a chunk of iterations; IP is still on it.
    RepChunk,
    /// HLT retired (IP is past it).
    Halted,
    /// An exception was delivered *and the handler's first instruction executed* in the same
    /// step (KVM on our hosts); `halted` when that instruction was HLT.
    FaultMerged { halted: bool },
    /// The backend could not make progress on the instruction (KVM: `vmcall` under
    /// single-step) — it cannot run it.
    NoProgress,
    /// The step ended the run (debug exit, emulation failure, triple fault, timeout, ...).
    Stopped(StopReason),
}

/// A backend that can be advanced one step at a time.
pub trait StepBackend: Backend {
    /// Runs one step. The default runs one instruction with `run`.
    fn step_one(&mut self, machine: &mut Machine, deadline: Option<Instant>) -> Step {
        self.step_n(machine, 1, deadline)
    }

    /// Runs up to `n` instructions (REP iterations count one each) in one `run`. Lockstep
    /// uses it on the candidate only, to run a REPE/REPNE CMPS/SCAS in the same chunks as
    /// the reference did (see [`super::lockstep`]); `n = 1` is the default step.
    fn step_n(&mut self, machine: &mut Machine, n: u64, deadline: Option<Instant>) -> Step {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match self
            .run(machine, RunLimits { max_instructions: Some(n.max(1)), timeout })
            .unwrap_or_else(StopReason::from)
        {
            StopReason::StepDone | StopReason::BudgetExhausted => Step::Retired,
            StopReason::Halted => Step::Halted,
            other => Step::Stopped(other),
        }
    }

    /// Prepares the backend for the next program on the same (already reset) machine. The
    /// interpreter keeps no state outside what `set_state` loads and re-validates its code
    /// cache against RAM at every run, so it has nothing to do.
    fn reset_for_reuse(&mut self, _machine: &mut Machine) -> Result<(), picoqemu_core::BackendError> {
        Ok(())
    }

    /// Leaves single-step mode after a lockstep session. Backends without such a mode have
    /// nothing to undo.
    fn end_steps(&mut self) -> Result<(), picoqemu_core::BackendError> {
        Ok(())
    }
}

impl StepBackend for picoqemu_interp::InterpBackend {}
impl StepBackend for picoqemu_kvm::KvmBackend {
    /// One `KVM_SET_GUEST_DEBUG` single step, classified by the backend.
    fn step_one(&mut self, machine: &mut Machine, deadline: Option<Instant>) -> Step {
        use picoqemu_kvm::StepEvent;
        match self.step(machine, deadline) {
            StepEvent::Retired | StepEvent::Io => Step::Retired,
            StepEvent::RepChunk => Step::RepChunk,
            StepEvent::Halted => Step::Halted,
            StepEvent::FaultDelivered { halted } => Step::FaultMerged { halted },
            StepEvent::NoProgress => Step::NoProgress,
            StepEvent::Stopped(r) => Step::Stopped(r),
        }
    }

    fn reset_for_reuse(&mut self, machine: &mut Machine) -> Result<(), picoqemu_core::BackendError> {
        self.reset(machine).map_err(|e| picoqemu_core::BackendError::new("kvm", e))
    }

    fn end_steps(&mut self) -> Result<(), picoqemu_core::BackendError> {
        picoqemu_kvm::KvmBackend::end_steps(self).map_err(|e| picoqemu_core::BackendError::new("kvm", e))
    }
}
