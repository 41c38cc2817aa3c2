//! `--trace[=FILE]`: runs the guest one [`Backend::step`] at a time (the interpreter
//! natively; KVM by `KVM_SET_GUEST_DEBUG` single step) and writes one line per step:
//! the count, CS:IP, the bytes, the disassembly and the registers the step changed.
//!
//! ```text
//!        3 0000:7c05  01 d8                add ax, bx                       ax=0003 flags=0006
//! ```
//!
//! The tracer also enforces what a free run would: the instruction budget (in steps that
//! retired an instruction), the timeout, Ctrl-C, `--break` (checked before each step, any
//! number on both backends) and `--magic-break` (after a step that ran `xchg bx, bx`). KVM's
//! single step has quirks ([`StepInfo`]): a `rep` may run up to 1,024 iterations in one step
//! (the line is repeated with IP still on the `rep`), and an exception is delivered together
//! with the handler's first instruction; such lines say so.
use std::collections::VecDeque;
use std::io::Write;
use std::time::Instant;

use picoqemu_core::{Backend, CpuState, Gpr, InsnBytes, Machine, RunLimits, SegReg, StepInfo, StopReason};

use super::disasm::{code_at, hex, Disassembler, Syntax};
use crate::signals;

/// Bochs' magic breakpoint, `xchg bx, bx`.
pub const MAGIC_BREAK: [u8; 2] = [0x87, 0xDB];

/// How many trace lines the tracer keeps for stop reports.
const RECENT: usize = 16;

/// What the tracer checks between steps.
#[derive(Debug, Clone, Default)]
pub struct TraceStops {
    /// Linear addresses of `--break`.
    pub breaks: Vec<u32>,
    /// `--magic-break`.
    pub magic: bool,
}

/// Writes trace lines to `out` while it steps a backend.
pub struct Tracer {
    out: Box<dyn Write>,
    /// Where `out` goes, for error messages.
    name: String,
    dis: Disassembler,
    /// Lines written so far.
    count: u64,
    /// The last [`RECENT`] lines (without the count), for stop reports.
    recent: VecDeque<String>,
    /// Flush after every line: the output is shared with the guest's (stdout, stderr), so
    /// the two stay in order.
    line_flush: bool,
}

/// Why the trace ended early: the output could not be written.
#[derive(Debug)]
pub struct TraceWriteError(pub String);

impl Tracer {
    pub fn new(out: Box<dyn Write>, name: String, syntax: Syntax, line_flush: bool) -> Self {
        let dis = Disassembler::new(syntax);
        Tracer { out, name, dis, count: 0, recent: VecDeque::new(), line_flush }
    }

    /// The last lines traced, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> Result<(), TraceWriteError> {
        self.out.flush().map_err(|e| TraceWriteError(format!("the trace to {}: {e}", self.name)))
    }

    /// Steps `backend` until a stop, tracing every step.
    pub fn run(
        &mut self,
        backend: &mut dyn Backend,
        machine: &mut Machine,
        limits: RunLimits,
        stops: &TraceStops,
    ) -> Result<StopReason, TraceWriteError> {
        let deadline = limits.timeout.and_then(|t| Instant::now().checked_add(t));
        let mut retired = 0u64;
        loop {
            if signals::interrupted() {
                return Ok(StopReason::Interrupted);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(StopReason::Timeout);
            }
            if limits.max_instructions.is_some_and(|n| retired >= n) {
                return Ok(StopReason::BudgetExhausted);
            }
            let before = match backend.state() {
                Ok(s) => s,
                Err(e) => return Ok(StopReason::from(e)),
            };
            if stops.breaks.contains(&before.pc_linear()) {
                return Ok(StopReason::Breakpoint { cs: before.cs(), ip: before.eip });
            }
            let step = self.step(backend, machine, &before)?;
            if step.info != StepInfo::RepChunk {
                retired += 1;
            }
            if let Some(stop) = step.stop {
                return Ok(stop);
            }
            if stops.magic && step.magic {
                return Ok(StopReason::Breakpoint { cs: step.after.cs(), ip: step.after.eip });
            }
        }
    }

    /// One step and its line. `stop` is set when the step ended the run.
    fn step(
        &mut self,
        backend: &mut dyn Backend,
        machine: &mut Machine,
        before: &CpuState,
    ) -> Result<Step, TraceWriteError> {
        let (buf, n) = code_at(machine, before.seg(SegReg::Cs).base, before.eip);
        let (len, text) = self.dis.decode(before.eip, &buf[..n]);
        let shown = &buf[..len.max(1).min(n)];
        let result = backend.step(machine);
        let info = backend.last_step();
        let after = backend.state().unwrap_or(*before);
        let mut stop = match result {
            Ok(StopReason::StepDone) => None,
            Ok(s) => Some(s),
            Err(e) => Some(StopReason::from(e)),
        };
        if stop.is_none() && info == StepInfo::NoProgress {
            // KVM cannot single-step this instruction (`vmcall` here): it would never end.
            let bytes = InsnBytes::new(&buf[..n]);
            stop = Some(StopReason::EmulationFailure { cs: before.cs(), ip: before.eip, bytes });
        }
        let changed = changes(before, &after);
        let (cs, ip, bytes) = (before.cs(), before.eip, hex(shown));
        let mut line = format!("{cs:04x}:{ip:04x}  {bytes:<20} {text:<32} {changed}");
        match (&stop, info) {
            (Some(s), _) => line.push_str(&format!("  -> {s}")),
            (None, StepInfo::RepChunk) => line.push_str("  [rep chunk: IP stays on the rep]"),
            (None, StepInfo::FaultMerged { .. }) => {
                line.push_str("  [exception delivered with the handler's first instruction]")
            }
            _ => {}
        }
        self.write_line(line.trim_end())?;
        let magic = buf[..n].starts_with(&MAGIC_BREAK) && info == StepInfo::Instruction;
        Ok(Step { info, after, stop, magic })
    }

    fn write_line(&mut self, line: &str) -> Result<(), TraceWriteError> {
        self.count += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_string());
        let written = writeln!(self.out, "{:>8} {line}", self.count);
        let written = if self.line_flush { written.and_then(|_| self.out.flush()) } else { written };
        written.map_err(|e| TraceWriteError(format!("the trace to {}: {e}", self.name)))
    }
}

/// What one traced step did.
struct Step {
    info: StepInfo,
    after: CpuState,
    stop: Option<StopReason>,
    /// The step ran `xchg bx, bx`.
    magic: bool,
}

/// The registers that differ between `before` and `after`: `ax=0001` (a 16-bit name when
/// the upper half is unchanged), `eax=00010001`, `ds=07c0`, `flags=0046` (RF, set by KVM
/// between REP chunks, and the other upper bits are left out), `cr0=…`. EIP is the next
/// line's CS:IP.
pub fn changes(before: &CpuState, after: &CpuState) -> String {
    let mut out: Vec<String> = Vec::new();
    for r in Gpr::ALL {
        let (a, b) = (before.reg(r), after.reg(r));
        if a == b {
            continue;
        }
        if a >> 16 == b >> 16 {
            out.push(format!("{}={:04x}", &r.name()[1..], b & 0xFFFF));
        } else {
            out.push(format!("{}={b:08x}", r.name()));
        }
    }
    for s in SegReg::ALL {
        if before.seg(s).selector != after.seg(s).selector {
            out.push(format!("{}={:04x}", s.name(), after.seg(s).selector));
        }
    }
    if before.eflags & 0xFFFF != after.eflags & 0xFFFF {
        out.push(format!("flags={:04x}", after.eflags & 0xFFFF));
    }
    if before.cr0 != after.cr0 {
        out.push(format!("cr0={:08x}", after.cr0));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_registers_only() {
        let before = CpuState::default();
        assert_eq!(changes(&before, &before), "");
        let mut after = before;
        after.set_reg(Gpr::Eax, 1);
        after.set_reg(Gpr::Ecx, 0x0001_0000);
        after.set_reg(Gpr::Esp, 0xFFFE);
        after.set_seg(SegReg::Ds, 0x7C0);
        after.eflags = 0x0001_0046;
        after.eip = 5;
        assert_eq!(changes(&before, &after), "ax=0001 ecx=00010000 sp=fffe ds=07c0 flags=0046");
    }

    #[test]
    fn rf_alone_is_no_change() {
        let before = CpuState::default();
        let after = CpuState { eflags: before.eflags | 0x1_0000, ..before };
        assert_eq!(changes(&before, &after), "");
    }
}
