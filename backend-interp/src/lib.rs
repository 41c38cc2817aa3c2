//! picoqemu-interp: a real-mode x86 interpreter built on iced-x86 decoding.
//! (Skeleton: the interpreter is being written; see issues 3 and 4.)
#![forbid(unsafe_code)]
use picoqemu_core::{
    Backend, BackendError, BackendStats, CpuState, InsnBytes, Machine, RunLimits, StopReason,
};

/// The software CPU.
#[derive(Debug, Default)]
pub struct InterpBackend {
    state: CpuState,
}

impl InterpBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for InterpBackend {
    fn name(&self) -> &'static str {
        "interp"
    }
    fn set_state(&mut self, state: &CpuState) -> Result<(), BackendError> {
        self.state = *state;
        Ok(())
    }
    fn state(&mut self) -> Result<CpuState, BackendError> {
        Ok(self.state)
    }
    fn run(&mut self, machine: &mut Machine, _limits: RunLimits) -> StopReason {
        let pc = self.state.pc_linear() as usize;
        let bytes = machine.ram.as_slice().get(pc..pc + 15).unwrap_or(&[]);
        StopReason::Unsupported { cs: self.state.cs(), ip: self.state.eip, bytes: InsnBytes::new(bytes) }
    }
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
}
