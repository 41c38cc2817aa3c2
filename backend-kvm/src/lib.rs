//! picoqemu-kvm: runs the machine's real-mode guest on the host's KVM.
//! (Skeleton: the KVM backend is being written; see issue 3.)
use picoqemu_core::{Backend, BackendError, BackendStats, CpuState, Machine, RunLimits, StopReason};
use thiserror::Error;

/// Errors of the KVM backend.
#[derive(Debug, Error)]
pub enum KvmError {
    /// /dev/kvm cannot be opened.
    #[error("KVM is not available: {0}")]
    Unavailable(String),
}

/// A VM with one vCPU running in real mode.
#[derive(Debug)]
pub struct KvmBackend {
    state: CpuState,
}

impl KvmBackend {
    /// Checks that /dev/kvm can be opened and used.
    pub fn probe() -> Result<(), KvmError> {
        Err(KvmError::Unavailable("not implemented yet".into()))
    }
    /// Creates a VM whose memory is `machine`'s RAM.
    pub fn new(_machine: &Machine) -> Result<Self, KvmError> {
        Self::probe().map(|_| KvmBackend { state: CpuState::default() })
    }
}

impl Backend for KvmBackend {
    fn name(&self) -> &'static str {
        "kvm"
    }
    fn set_state(&mut self, state: &CpuState) -> Result<(), BackendError> {
        self.state = *state;
        Ok(())
    }
    fn state(&mut self) -> Result<CpuState, BackendError> {
        Ok(self.state)
    }
    fn run(&mut self, _machine: &mut Machine, _limits: RunLimits) -> StopReason {
        StopReason::HostError("KVM backend not implemented yet".into())
    }
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
}
