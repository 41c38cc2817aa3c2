//! The [`Backend`] trait: what a CPU (KVM or the interpreter) must offer the machine.
//!
//! A backend holds the CPU; the [`Machine`] holds RAM and devices. `run` executes guest code
//! against the machine until a [`StopReason`]; guest I/O reaches the machine's bus during the
//! run (the cloud-hypervisor `VmOps` idea), so the caller only ever sees stop reasons.
use std::sync::Arc;
use std::time::Duration;

use crate::history::History;
use crate::{BackendError, CpuSnapshot, CpuState, Machine, StopReason};

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
    /// Those exits by reason (KVM only).
    pub exit_reasons: Option<ExitCounts>,
}

/// Exits to user space by reason (`--stats`), counted where the backend's run loop returns
/// from the hypervisor: one increment per exit, no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Port I/O (`KVM_EXIT_IO`).
    pub io: u64,
    /// MMIO (`KVM_EXIT_MMIO`).
    pub mmio: u64,
    /// HLT (`KVM_EXIT_HLT`).
    pub hlt: u64,
    /// Debug exits: single steps and breakpoints (`KVM_EXIT_DEBUG`).
    pub debug: u64,
    /// Interrupt windows opened (`KVM_EXIT_IRQ_WINDOW_OPEN`).
    pub irq_window: u64,
    /// Runs ended by a signal (`EINTR`: the watchdog's ticks and deadline, kicks, Ctrl-C).
    pub signal: u64,
    /// Shutdowns (triple faults).
    pub shutdown: u64,
    /// Internal errors (emulation failures).
    pub internal_error: u64,
    /// Anything else (failed entries, unexpected exits, failed ioctls).
    pub other: u64,
}

impl ExitCounts {
    /// Every reason with its short name and count, in a fixed order.
    pub fn by_reason(&self) -> [(&'static str, u64); 9] {
        [
            ("io", self.io),
            ("mmio", self.mmio),
            ("hlt", self.hlt),
            ("debug", self.debug),
            ("irq-window", self.irq_window),
            ("signal", self.signal),
            ("shutdown", self.shutdown),
            ("internal-error", self.internal_error),
            ("other", self.other),
        ]
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|&(_, n)| n).sum()
    }
}

/// An execution breakpoint: the CPU stops with [`StopReason::Breakpoint`] before it executes
/// the instruction that starts at this linear address (CS base + IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Breakpoint {
    pub linear: u32,
    pub kind: BreakpointKind,
}

/// How a breakpoint is implemented. Both stop before the instruction and leave guest memory
/// as the guest wrote it (a read of the address never shows an INT3 byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakpointKind {
    /// As many as wanted (a debugger's `break`; GDB's `Z0`).
    Software,
    /// A debug-register breakpoint (GDB's `Z1`); a backend may limit how many (KVM: 4).
    Hardware,
}

/// A data watchpoint: the CPU stops with [`StopReason::Watchpoint`] after an instruction that
/// accessed (as `kind` says) one of the `len` bytes from `linear` (a linear address, CS/DS/…
/// base + offset). Like an x86 data breakpoint it is a trap: the access has happened and the
/// reported CS:IP is the next instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Watchpoint {
    pub linear: u32,
    /// Bytes watched (at least 1).
    pub len: u32,
    pub kind: WatchKind,
}

impl Watchpoint {
    /// True when an access of `n` bytes at `linear` touches the watched bytes.
    pub fn overlaps(&self, linear: u32, n: u32) -> bool {
        let (a, b) = (u64::from(self.linear), u64::from(linear));
        b < a + u64::from(self.len.max(1)) && a < b + u64::from(n.max(1))
    }

    /// True when an access that is a write (`write`) or a read (`!write`) triggers it.
    pub fn triggers_on(&self, write: bool) -> bool {
        match self.kind {
            WatchKind::Write => write,
            WatchKind::Read => !write,
            WatchKind::Access => true,
        }
    }
}

/// Which accesses a [`Watchpoint`] reports (GDB's `watch`, `rwatch`, `awatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKind {
    Write,
    Read,
    /// Reads and writes.
    Access,
}

/// A thread-safe handle that interrupts a backend: the run in progress, or the next one if
/// none is running, returns `Ok(StopReason::Interrupted)` promptly at an instruction boundary
/// (Ctrl-C, a debugger's break-in, a host timer). Each kick interrupts one run.
pub trait Kick: Send + Sync {
    fn kick(&self);
}

/// What the last [`Backend::step`] did, where a backend's single step is not exactly "one
/// instruction" (KVM's single step on our hosts; see `picoqemu-kvm`'s crate docs). Lockstep
/// comparison uses it to apply its documented quirk rules; an interpreter always reports
/// [`StepInfo::Instruction`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StepInfo {
    /// One instruction (or one REP iteration, or one exception delivery) completed.
    #[default]
    Instruction,
    /// A REP string instruction ran a chunk of iterations; IP is still on it (RF set).
    RepChunk,
    /// The instruction did port I/O or MMIO and completed.
    Io,
    /// An exception was delivered *and the handler's first instruction executed* in the same
    /// step; `halted` when that instruction was a HLT (the step then stops with `Halted`).
    FaultMerged { halted: bool },
    /// Nothing happened: the backend cannot execute the instruction at CS:IP (KVM: `vmcall`
    /// under single step).
    NoProgress,
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

    /// Executes one instruction (one REP iteration, or a fault's delivery) and stops with
    /// [`StopReason::StepDone`] unless something else stopped it first.
    fn step(&mut self, machine: &mut Machine) -> Result<StopReason, BackendError> {
        self.run(machine, RunLimits::instructions(1))
    }

    /// What the last [`Backend::step`] did beyond its stop reason (see [`StepInfo`]).
    fn last_step(&self) -> StepInfo {
        StepInfo::Instruction
    }

    /// Puts the CPU into its power-on state (`CpuState::default()`), dropping pending events
    /// and the interrupt shadow. Breakpoints and kick handles stay. RAM and devices belong to
    /// the machine: reset them with [`Machine::reset`].
    fn reset(&mut self, machine: &mut Machine) -> Result<(), BackendError> {
        let _ = machine;
        self.set_state(&CpuState::default())
    }

    /// Replaces the set of execution breakpoints. A backend that cannot honour a breakpoint
    /// (its kind, or too many) returns an error and keeps the previous set.
    fn set_breakpoints(&mut self, breakpoints: &[Breakpoint]) -> Result<(), BackendError> {
        if breakpoints.is_empty() {
            return Ok(());
        }
        Err(BackendError::new(self.name(), "this backend does not support breakpoints"))
    }

    /// A handle that interrupts this backend's runs from any thread, where the backend
    /// supports it.
    fn kicker(&self) -> Option<Arc<dyn Kick>> {
        None
    }

    // --- Watchpoints (`--gdb`'s `watch`, `rwatch`, `awatch`). ---

    /// Replaces the set of data watchpoints (an empty slice removes them all). A backend that
    /// cannot honour them returns an error and keeps the previous set. Runs with no watchpoint
    /// cost nothing extra; with some, each backend documents its cost.
    fn set_watchpoints(&mut self, watchpoints: &[Watchpoint]) -> Result<(), BackendError> {
        if watchpoints.is_empty() {
            return Ok(());
        }
        Err(BackendError::new(self.name(), "this backend does not support watchpoints"))
    }

    // --- Snapshots (`--save-state` / `--load-state`; see `crate::snapshot`). ---

    /// Everything the CPU must hand over to be resumed on any backend: the architectural
    /// state, the interrupt shadow, the HLT state, an acknowledged but undelivered interrupt
    /// and the retired-instruction count. An error if the CPU holds an event it cannot hand
    /// over (then run it on and save at the next stop).
    fn cpu_snapshot(&mut self) -> Result<CpuSnapshot, BackendError> {
        Err(BackendError::new(self.name(), "this backend cannot save its CPU for a snapshot"))
    }

    /// Loads a [`CpuSnapshot`] taken on this or another backend; the next `run` resumes
    /// exactly there (delivering the pending interrupt first, waiting if halted).
    fn restore_cpu_snapshot(&mut self, snapshot: &CpuSnapshot) -> Result<(), BackendError> {
        let _ = snapshot;
        Err(BackendError::new(self.name(), "this backend cannot load a CPU snapshot"))
    }

    // --- Inspection (`--trace`, `--break`, `--magic-break`, `--stats`). ---

    /// Honours Bochs' magic breakpoint: with `on`, executing `xchg bx, bx` (87 DB) ends the
    /// run with [`StopReason::Breakpoint`] at the instruction after it, as Bochs stops. A
    /// backend that cannot do it returns an error when asked to switch it on.
    fn set_magic_break(&mut self, on: bool) -> Result<(), BackendError> {
        if !on {
            return Ok(());
        }
        Err(BackendError::new(self.name(), "this backend does not support the magic breakpoint"))
    }

    /// The last stretches of code the CPU ran, oldest first (see [`History`]); empty when
    /// the backend does not know them.
    fn history(&self) -> History {
        History::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchpoint_overlap_and_kinds() {
        let w = Watchpoint { linear: 0x500, len: 2, kind: WatchKind::Write };
        assert!(w.overlaps(0x4FF, 2) && w.overlaps(0x501, 1) && w.overlaps(0x500, 1));
        assert!(!w.overlaps(0x502, 4) && !w.overlaps(0x4FE, 2));
        assert!(w.triggers_on(true) && !w.triggers_on(false));
        let r = Watchpoint { kind: WatchKind::Read, ..w };
        assert!(!r.triggers_on(true) && r.triggers_on(false));
        assert!(Watchpoint { kind: WatchKind::Access, ..w }.triggers_on(false));
    }
}
