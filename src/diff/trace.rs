//! A traced run: the candidate backend executed one instruction at a time so that every
//! executed instruction is known — for the undefined-flag mask ([`UndefTracker`]), for the
//! history of a report ([`History`]) and for counting.
use std::time::Instant;

use picoqemu_core::{Backend, CpuState, Gpr, Machine, RunLimits, SegReg, StopReason};

use super::disasm;
use super::flagmask::UndefTracker;
use super::history::{HistEntry, History};

/// What a traced run observed.
#[derive(Debug, Clone)]
pub struct Trace {
    pub stop: StopReason,
    /// Instructions executed (exception deliveries count as one step each).
    pub steps: u64,
    pub undef: UndefTracker,
    pub history: History,
    /// Exceptions delivered (the CPU pushed the faulting CS:IP).
    pub faults: u64,
}

/// Reads the little-endian word at linear address `addr` (0 outside RAM).
pub fn read_word(ram: &[u8], addr: u32) -> u16 {
    let a = addr as usize;
    match ram.get(a..a + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// True when going from `pre` to `post` delivered an exception *for* the instruction at `pre`'s
/// CS:IP, i.e. a fault: three words were pushed and the saved CS:IP is the instruction itself
/// (INT n and other traps push the address of the *next* instruction).
pub fn fault_delivered(pre: &CpuState, post: &CpuState, ram: &[u8], is_enter: bool) -> bool {
    let sp0 = pre.reg(Gpr::Esp) as u16;
    let sp1 = post.reg(Gpr::Esp) as u16;
    if is_enter || sp1 != sp0.wrapping_sub(6) || post.seg(SegReg::Ss).base != pre.seg(SegReg::Ss).base {
        return false;
    }
    let ss = post.seg(SegReg::Ss).base;
    let ip = read_word(ram, ss.wrapping_add(sp1 as u32));
    let cs = read_word(ram, ss.wrapping_add(sp1.wrapping_add(2) as u32));
    ip == pre.eip as u16 && cs == pre.cs()
}

/// Runs `backend` from its current state one instruction at a time until it stops, the
/// instruction budget in `limits` is used up or the deadline passes.
pub fn run_traced<B: Backend + ?Sized>(
    backend: &mut B,
    machine: &mut Machine,
    limits: RunLimits,
) -> Result<Trace, picoqemu_core::BackendError> {
    let deadline = limits.timeout.map(|t| Instant::now() + t);
    let budget = limits.max_instructions.unwrap_or(u64::MAX);
    let mut trace = Trace {
        stop: StopReason::StepDone,
        steps: 0,
        undef: UndefTracker::new(),
        history: History::new(),
        faults: 0,
    };
    let mut pre = backend.state()?;
    loop {
        if trace.steps >= budget {
            trace.stop = StopReason::BudgetExhausted;
            return Ok(trace);
        }
        if trace.steps.is_multiple_of(1024) {
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    trace.stop = StopReason::Timeout;
                    return Ok(trace);
                }
            }
        }
        let bytes = disasm::fetch(machine.ram.as_slice(), pre.pc_linear());
        let instr = disasm::decode(bytes.as_slice(), pre.eip);
        let stop = backend.run(machine, RunLimits::instructions(1));
        let post = backend.state()?;
        let step = trace.steps;
        trace.steps += 1;
        trace.history.push(HistEntry { step, cs: pre.cs(), ip: pre.eip, bytes });
        let is_enter = instr.mnemonic() == iced_x86::Mnemonic::Enter;
        if fault_delivered(&pre, &post, machine.ram.as_slice(), is_enter) {
            trace.faults += 1;
            trace.undef.fault_delivered(step);
        } else if !matches!(stop, StopReason::Unsupported { .. } | StopReason::HostError(_)) {
            trace.undef.executed(&instr, pre.reg(Gpr::Ecx), step);
        }
        match stop {
            StopReason::StepDone | StopReason::BudgetExhausted => {}
            other => {
                trace.stop = other;
                return Ok(trace);
            }
        }
        pre = post;
    }
}
