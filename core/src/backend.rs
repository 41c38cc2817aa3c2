//! The [`Backend`] trait: what a CPU (KVM or the interpreter) must offer the machine.
//!
//! A backend holds the CPU; the [`Machine`] holds RAM and devices. `run` executes guest code
//! against the machine until a [`StopReason`]; guest I/O reaches the machine's bus during the
//! run (the cloud-hypervisor `VmOps` idea), so the caller only ever sees stop reasons.
use std::time::Duration;

use crate::{BackendError, CpuState, Machine, StopReason};

/// Bounds of one `run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Stop with [`StopReason::BudgetExhausted`] after this many instructions.
    /// `Some(1)` is a single step ([`StopReason::StepDone`] when nothing else stopped it).
    pub max_instructions: Option<u64>,
    /// Stop with [`StopReason::Timeout`] when this much wall-clock time has passed.
    pub timeout: Option<Duration>,
}

impl RunLimits {
    pub const UNBOUNDED: RunLimits = RunLimits { max_instructions: None, timeout: None };
    pub fn instructions(n: u64) -> Self {
        RunLimits { max_instructions: Some(n), timeout: None }
    }
    pub fn timeout(d: Duration) -> Self {
        RunLimits { max_instructions: None, timeout: Some(d) }
    }
}

/// Counters a backend keeps about its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Instructions retired, where the backend can count them.
    pub instructions: Option<u64>,
    /// Exits to user space (KVM only).
    pub exits: Option<u64>,
}

/// A CPU that can run real-mode code on a [`Machine`].
pub trait Backend {
    /// `"kvm"` or `"interp"`.
    fn name(&self) -> &'static str;
    /// Loads the whole architectural state (QEMU's "post_init" direction).
    fn set_state(&mut self, state: &CpuState) -> Result<(), BackendError>;
    /// Reads the whole architectural state back (QEMU's "synchronize_state").
    fn state(&mut self) -> Result<CpuState, BackendError>;
    /// Runs until a stop. Guest events (halt, faults, budgets) are `Ok` stop reasons; a
    /// failure of the host (an ioctl, a thread, a machine the backend was not built for) is
    /// an `Err`.
    fn run(&mut self, machine: &mut Machine, limits: RunLimits) -> Result<StopReason, BackendError>;
    /// Counters since the backend was created.
    fn stats(&self) -> BackendStats;
}
