//! The machine as a `gdbstub` target: registers, memory by linear address, resume and single
//! step, and the session from connection to the end ([`session`]).
//!
//! Addresses GDB sends (`x/`, `set {char}`, breakpoints, watchpoints) are **linear**
//! addresses: segment base + offset, e.g. 0x7c00 for 0000:7C00 or 07C0:0000. GDB's `$pc` is
//! IP; `monitor linear SEG:OFF` converts. Memory is guest RAM only (the VGA text buffer is
//! RAM); bytes beyond RAM cannot be read or written.
use std::net::TcpStream;

use gdbstub::common::Signal;
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::BreakpointsOps;
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86CoreRegs;
use picoqemu_core::{Backend, BackendError, Breakpoint, Machine, RunLimits, StopReason, Watchpoint};

use super::{event_loop, regs, EXIT_KILLED};
use crate::cli::{report, CliError};

/// What the next wait does: GDB asked to continue or to step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    Continue,
    Step,
}

/// The machine and its CPU under GDB's control.
pub struct GdbTarget<'a> {
    pub machine: &'a mut Machine,
    pub backend: &'a mut dyn Backend,
    /// `--timeout` / `--max-instructions`, applied to each `continue`.
    pub limits: RunLimits,
    pub breakpoints: Vec<Breakpoint>,
    pub watchpoints: Vec<Watchpoint>,
    pub resume: Option<Resume>,
    /// The stop that ended the guest (reported to GDB as an exit or termination).
    pub final_stop: Option<StopReason>,
}

fn fatal<T>(e: BackendError) -> TargetResult<T, GdbTarget<'static>> {
    Err(TargetError::Fatal(e))
}

impl Target for GdbTarget<'_> {
    type Arch = regs::RealMode;
    type Error = BackendError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    /// Breakpoints live in the backend's list, never as INT3 bytes in RAM.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for GdbTarget<'_> {
    fn read_registers(&mut self, r: &mut X86CoreRegs) -> TargetResult<(), Self> {
        match self.backend.state() {
            Ok(s) => {
                regs::to_gdb(&s, r);
                Ok(())
            }
            Err(e) => fatal(e),
        }
    }

    fn write_registers(&mut self, r: &X86CoreRegs) -> TargetResult<(), Self> {
        let s = match self.backend.state() {
            Ok(s) => s,
            Err(e) => return fatal(e),
        };
        self.backend.set_state(&regs::from_gdb(&s, r)).or_else(fatal)
    }

    fn read_addrs(&mut self, start: u32, data: &mut [u8]) -> TargetResult<usize, Self> {
        let ram = self.machine.ram();
        let start = start as usize;
        let n = ram.len().saturating_sub(start).min(data.len());
        if n == 0 {
            return Err(TargetError::NonFatal);
        }
        ram.read(start as u64, &mut data[..n]).map_err(|_| TargetError::NonFatal)?;
        Ok(n)
    }

    fn write_addrs(&mut self, start: u32, data: &[u8]) -> TargetResult<(), Self> {
        self.machine.ram_mut().write(u64::from(start), data).map_err(|_| TargetError::NonFatal)
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Step);
        Ok(())
    }
}

/// How GDB is told about a stop that ends the guest: an exit for a halt or the debug-exit
/// port (with picoqemu's exit status), a termination by a signal for faults and limits.
pub fn final_report(stop: &StopReason) -> SingleThreadStopReason<u32> {
    match stop {
        StopReason::Halted | StopReason::DebugExit(_) => {
            SingleThreadStopReason::Exited(stop.exit_status() as u8)
        }
        StopReason::TripleFault => SingleThreadStopReason::Terminated(Signal::SIGSEGV),
        StopReason::Unsupported { .. } | StopReason::EmulationFailure { .. } => {
            SingleThreadStopReason::Terminated(Signal::SIGILL)
        }
        StopReason::BudgetExhausted | StopReason::Timeout => {
            SingleThreadStopReason::Terminated(Signal::SIGXCPU)
        }
        StopReason::Interrupted => SingleThreadStopReason::Terminated(Signal::SIGINT),
        _ => SingleThreadStopReason::Terminated(Signal::SIGKILL),
    }
}

/// Serves GDB on `conn` until the guest ends, GDB detaches (the guest then runs on to its
/// stop) or kills it (status [`EXIT_KILLED`]).
pub fn session(
    conn: TcpStream,
    machine: &mut Machine,
    backend: &mut dyn Backend,
    limits: RunLimits,
) -> Result<StopReason, CliError> {
    let mut target = GdbTarget {
        machine,
        backend,
        limits,
        breakpoints: Vec::new(),
        watchpoints: Vec::new(),
        resume: None,
        final_stop: None,
    };
    let stub = GdbStub::new(conn);
    let reason = match stub.run_blocking::<event_loop::Loop>(&mut target) {
        Ok(reason) => Some(reason),
        // GDB went away without detaching (it quit, or the connection broke): as QEMU does,
        // the guest runs on.
        Err(e) if e.is_connection_error() => {
            report(&format!("picoqemu: gdb: the connection ended ({e}); the guest runs on\n"));
            None
        }
        Err(e) => return Err(CliError::Host(format!("gdb session: {e}"))),
    };
    let GdbTarget { machine, backend, final_stop, .. } = target;
    let clear = backend.set_breakpoints(&[]).and_then(|_| backend.set_watchpoints(&[]));
    clear.map_err(|e| CliError::Host(e.to_string()))?;
    match (reason, final_stop) {
        (Some(DisconnectReason::Kill), _) => {
            machine.bus_mut().flush();
            Err(CliError::Failed {
                status: EXIT_KILLED,
                message: "gdb: the debugger killed the guest".into(),
            })
        }
        (_, Some(stop)) => Ok(stop),
        (reason, None) => {
            if reason.is_some() {
                report("picoqemu: gdb: detached; the guest runs on\n");
            }
            Ok(backend.run(machine, limits).unwrap_or_else(StopReason::from))
        }
    }
}
