//! Why a run stopped: the typed [`StopReason`] both backends return, and the process exit
//! status each reason maps to.
use std::fmt;

/// Up to 15 instruction bytes as fetched at the stopping CS:IP (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InsnBytes {
    bytes: [u8; 15],
    len: u8,
}

impl InsnBytes {
    /// Keeps the first 15 bytes of `b`.
    pub fn new(b: &[u8]) -> Self {
        let len = b.len().min(15);
        let mut bytes = [0u8; 15];
        bytes[..len].copy_from_slice(&b[..len]);
        InsnBytes { bytes, len: len as u8 }
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Debug for InsnBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for InsnBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a backend's `run` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// HLT executed (there is no interrupt source that could wake the CPU).
    Halted,
    /// The guest wrote `code` to the debug-exit port.
    DebugExit(u32),
    /// The instruction budget (`--max-instructions`) ran out.
    BudgetExhausted,
    /// The wall-clock deadline (`--timeout`) passed.
    Timeout,
    /// Three nested faults: the CPU shut down.
    TripleFault,
    /// The interpreter met an instruction it does not implement.
    Unsupported { cs: u16, ip: u32, bytes: InsnBytes },
    /// KVM's instruction emulator could not execute the instruction at CS:IP.
    EmulationFailure { cs: u16, ip: u32, bytes: InsnBytes },
    /// One instruction was executed in single-step mode.
    StepDone,
    /// The CPU reached an execution breakpoint at CS:IP (the instruction there has not run).
    Breakpoint { cs: u16, ip: u32 },
    /// An instruction accessed a [`crate::Watchpoint`]'s bytes: `addr` is the watchpoint's
    /// linear address, CS:IP the instruction *after* the access (a trap, as on x86).
    Watchpoint { cs: u16, ip: u32, addr: u32, kind: crate::WatchKind },
    /// A [`crate::Kick`] interrupted the run (Ctrl-C, a debugger, a host timer).
    Interrupted,
    /// The host failed (an ioctl, a thread); the message says which.
    HostError(String),
}

impl StopReason {
    /// The process exit status for this stop, as documented in the README:
    /// 0 halted, `(v << 1) | 1` debug exit, 3 guest fault, 4 budget/timeout, 5 host error.
    pub fn exit_status(&self) -> i32 {
        match self {
            StopReason::Halted
            | StopReason::StepDone
            | StopReason::Breakpoint { .. }
            | StopReason::Watchpoint { .. } => 0,
            StopReason::Interrupted => 130,
            StopReason::DebugExit(v) => ((v << 1) | 1) as i32 & 0xFF,
            StopReason::TripleFault
            | StopReason::Unsupported { .. }
            | StopReason::EmulationFailure { .. } => 3,
            StopReason::BudgetExhausted | StopReason::Timeout => 4,
            StopReason::HostError(_) => 5,
        }
    }

    /// True for the stops that mean the guest did something the CPU could not run.
    pub fn is_guest_fault(&self) -> bool {
        self.exit_status() == 3
    }
}

impl From<crate::BackendError> for StopReason {
    /// A host failure recorded as the outcome of a run, for reports that compare or list
    /// outcomes (`diff`, `sst`); the CLI's `run` reports the error itself.
    fn from(e: crate::BackendError) -> Self {
        StopReason::HostError(e.to_string())
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Halted => f.write_str("halted"),
            StopReason::DebugExit(v) => write!(f, "debug exit with code {v:#x}"),
            StopReason::BudgetExhausted => f.write_str("instruction budget exhausted"),
            StopReason::Timeout => f.write_str("timeout: the guest was still running at the deadline"),
            StopReason::TripleFault => f.write_str("triple fault (CPU shutdown)"),
            StopReason::Unsupported { cs, ip, bytes } => {
                write!(f, "unsupported instruction at {cs:04x}:{ip:04x} (bytes {bytes})")
            }
            StopReason::EmulationFailure { cs, ip, bytes } => {
                write!(f, "KVM could not emulate the instruction at {cs:04x}:{ip:04x} (bytes {bytes})")
            }
            StopReason::StepDone => f.write_str("single step done"),
            StopReason::Breakpoint { cs, ip } => write!(f, "breakpoint at {cs:04x}:{ip:04x}"),
            StopReason::Watchpoint { cs, ip, addr, kind } => {
                write!(f, "{kind:?} watchpoint at {addr:#x} hit; next instruction {cs:04x}:{ip:04x}")
            }
            StopReason::Interrupted => f.write_str("interrupted"),
            StopReason::HostError(m) => write!(f, "host error: {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(StopReason::Halted.exit_status(), 0);
        assert_eq!(StopReason::DebugExit(0).exit_status(), 1);
        assert_eq!(StopReason::DebugExit(0x10).exit_status(), 0x21);
        assert_eq!(StopReason::TripleFault.exit_status(), 3);
        assert_eq!(StopReason::Timeout.exit_status(), 4);
        assert_eq!(StopReason::BudgetExhausted.exit_status(), 4);
        let u = StopReason::Unsupported { cs: 0x7c0, ip: 5, bytes: InsnBytes::new(&[0xd8, 0xc1]) };
        assert_eq!(u.exit_status(), 3);
        assert_eq!(u.to_string(), "unsupported instruction at 07c0:0005 (bytes d8 c1)");
    }

    #[test]
    fn insn_bytes_truncates_to_15() {
        let b = InsnBytes::new(&[0x90; 20]);
        assert_eq!(b.as_slice().len(), 15);
    }
}
