//! Single-stepping a backend for lockstep comparison, through the core `Backend` trait only.
//!
//! [`StepBackend::step_one`] executes "one step" the way the backend defines it
//! ([`Backend::step`]) and says what kind of step it was ([`Step`], from the step's stop
//! reason and [`Backend::last_step`]). For the interpreter a step is exactly one instruction,
//! one REP iteration, or one exception delivery. The KVM backend's step is one `KVM_RUN` with
//! `KVM_GUESTDBG_SINGLESTEP`, which on our hosts is *not* always one instruction; it says so
//! in its [`StepInfo`], which is mapped onto [`Step`] so the lockstep rules in
//! [`super::lockstep`] can apply (see `docs/known-differences.md`).
use std::time::Instant;

use picoqemu_core::{Backend, Machine, RunLimits, StepInfo, StopReason};

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

impl Step {
    /// A step's stop reason and the backend's account of it.
    pub fn of(stop: StopReason, info: StepInfo) -> Step {
        match (stop, info) {
            (StopReason::StepDone | StopReason::BudgetExhausted, info) => match info {
                StepInfo::Instruction | StepInfo::Io => Step::Retired,
                StepInfo::RepChunk => Step::RepChunk,
                StepInfo::FaultMerged { halted } => Step::FaultMerged { halted },
                StepInfo::NoProgress => Step::NoProgress,
            },
            (StopReason::Halted, StepInfo::FaultMerged { halted: true }) => {
                Step::FaultMerged { halted: true }
            }
            (StopReason::Halted, _) => Step::Halted,
            (other, _) => Step::Stopped(other),
        }
    }
}

/// A backend that can be advanced one step at a time (every [`Backend`] can: the defaults
/// use only the trait).
pub trait StepBackend: Backend {
    /// Runs one step ([`Backend::step`]). Lockstep checks its deadline between steps; no
    /// backend is known to hang inside one step (KVM reports `vmcall` as no progress).
    fn step_one(&mut self, machine: &mut Machine) -> Step {
        let stop = self.step(machine).unwrap_or_else(StopReason::from);
        Step::of(stop, self.last_step())
    }

    /// Runs up to `n` instructions (REP iterations count one each) in one `run`. Lockstep
    /// uses it on the candidate only, to run a REPE/REPNE CMPS/SCAS in the same chunks as
    /// the reference did (see [`super::lockstep`]).
    fn step_n(&mut self, machine: &mut Machine, n: u64, deadline: Option<Instant>) -> Step {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let stop = self
            .run(machine, RunLimits { max_instructions: Some(n.max(1)), timeout })
            .unwrap_or_else(StopReason::from);
        Step::of(stop, self.last_step())
    }

    /// Prepares the backend for the next program on the same (already reset) machine.
    fn reset_for_reuse(&mut self, machine: &mut Machine) -> Result<(), picoqemu_core::BackendError> {
        self.reset(machine)
    }
}

impl StepBackend for picoqemu_interp::InterpBackend {}
impl StepBackend for picoqemu_kvm::KvmBackend {}
