//! A traced run: the candidate backend executed one instruction at a time so that every
//! executed instruction is known — for the undefined-flag mask ([`UndefTracker`]), for the
//! history of a report ([`History`]) and for counting.
use std::time::Instant;

use picoqemu_core::{flags, Backend, CpuState, Gpr, Machine, RunLimits, SegReg, StopReason};

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
    /// The guest's own single-step traps during REP string instructions (for the
    /// `kvm-guest-tf-traps` known difference).
    pub tf_rep: TfRepModel,
}

/// Counts, for REP string instructions run with the guest's TF set, how many #DB traps the
/// candidate delivered (one per iteration, or one for a count of 0: Intel SDM Vol. 3,
/// "Single-Step Exception Condition", and the REP prefix's per-iteration interruptibility)
/// against how many KVM's instruction emulator (`arch/x86/kvm/emulate.c`) delivers for the
/// same iterations: it runs the iterations without trapping and returns to the guest (and
/// then single-steps) only when the count register becomes a multiple of 1024 (IP still on
/// the REP), when a REPE/REPNE compare ends the loop, or when it re-enters the REP with a
/// count of 0 — so a REP of n >= 1 iterations gives ceil-ish(n / 1024) + 1 traps, not n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TfRepModel {
    /// REP iterations (or count-0 executions) run with TF set.
    pub steps: u64,
    /// Traps the candidate delivered minus traps KVM's emulator delivers for them.
    pub delta: i64,
    /// False when a TF step did not have the expected shape (a fault in the iteration,
    /// REP INS/OUTS, whose chunking also depends on KVM's read-ahead buffer, or #DB not
    /// delivered through `IVT[1]`); the model then explains nothing.
    pub exact: bool,
}

impl Default for TfRepModel {
    fn default() -> Self {
        TfRepModel { steps: 0, delta: 0, exact: true }
    }
}

impl TfRepModel {
    /// Accounts for one step of the candidate from `pre` to `post` (`ram` after the step).
    pub fn step(&mut self, instr: &iced_x86::Instruction, pre: &CpuState, post: &CpuState, ram: &[u8]) {
        use iced_x86::Mnemonic as M;
        let rep = instr.has_rep_prefix() || instr.has_repne_prefix();
        if pre.eflags & flags::TF != 0 && instr.mnemonic() == M::Out {
            // KVM's emulator completes OUT with a user-space exit and skips the single-step
            // ("FIXME: return into emulator if single-stepping" in x86_emulate_instruction).
            self.steps += 1;
            if self.trap_frame(pre, post, ram) == Some(pre.eip.wrapping_add(instr.len() as u32) as u16) {
                self.delta += 1;
            } else {
                self.exact = false;
            }
            return;
        }
        if pre.eflags & flags::TF == 0 || !rep || !instr.is_string_instruction() {
            return;
        }
        self.steps += 1;
        let io = matches!(instr.mnemonic(), M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd);
        let addr32 = (0..instr.op_count()).any(|i| {
            matches!(instr.op_kind(i), iced_x86::OpKind::MemorySegESI | iced_x86::OpKind::MemoryESEDI)
        });
        let mask = if addr32 { u32::MAX } else { 0xFFFF };
        let cx_pre = pre.reg(Gpr::Ecx) & mask;
        let cx_post = post.reg(Gpr::Ecx) & mask;
        let next = pre.eip.wrapping_add(instr.len() as u32) as u16;
        let Some(ret_ip) = self.trap_frame(pre, post, ram) else {
            self.exact = false;
            return;
        };
        let iterated = if cx_pre == 0 { cx_post == 0 } else { cx_post == cx_pre.wrapping_sub(1) & mask };
        let advanced = ret_ip == next;
        if io || !iterated || !(advanced || ret_ip == pre.eip as u16) {
            self.exact = false;
            return;
        }
        let compare =
            matches!(instr.mnemonic(), M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Scasb | M::Scasw | M::Scasd);
        let zf = post.eflags & flags::ZF != 0;
        let zf_ends = compare && if instr.has_repne_prefix() { zf } else { !zf };
        let kvm = if cx_pre == 0 || zf_ends {
            1 // leaves the REP in this emulation: one trap
        } else if cx_post == 0 {
            2 // stops with IP on the REP (count 0 is a multiple of 1024), then re-enters it
        } else if cx_post & 0x3FF == 0 {
            1 // a 1024-iteration chunk ends: back to the guest with IP on the REP
        } else {
            0
        };
        if advanced != (cx_pre == 0 || zf_ends || cx_post == 0) {
            self.exact = false;
            return;
        }
        self.delta += 1 - kvm;
    }

    /// The saved IP when the step ended in a #DB delivered through IVT[1] (three words pushed,
    /// the saved CS the instruction's own), else None.
    fn trap_frame(&self, pre: &CpuState, post: &CpuState, ram: &[u8]) -> Option<u16> {
        let ss = post.seg(SegReg::Ss).base;
        let sp = post.reg(Gpr::Esp) as u16;
        let ret_ip = read_word(ram, ss.wrapping_add(sp as u32));
        let ret_cs = read_word(ram, ss.wrapping_add(sp.wrapping_add(2) as u32));
        let vec1 = (read_word(ram, 6), read_word(ram, 4));
        let trapped = sp == (pre.reg(Gpr::Esp) as u16).wrapping_sub(6)
            && ss == pre.seg(SegReg::Ss).base
            && ret_cs == pre.cs()
            && (post.cs(), post.eip as u16) == vec1;
        trapped.then_some(ret_ip)
    }
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
        tf_rep: TfRepModel::default(),
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
        let bytes = disasm::fetch(machine.ram_mut().bytes(), pre.pc_linear());
        let instr = disasm::decode(bytes.as_slice(), pre.eip);
        let stop = backend.run(machine, RunLimits::instructions(1)).unwrap_or_else(StopReason::from);
        let post = backend.state()?;
        let step = trace.steps;
        trace.steps += 1;
        trace.history.push(HistEntry { step, cs: pre.cs(), ip: pre.eip, bytes });
        trace.tf_rep.step(&instr, &pre, &post, machine.ram_mut().bytes());
        let is_enter = instr.mnemonic() == iced_x86::Mnemonic::Enter;
        if fault_delivered(&pre, &post, machine.ram_mut().bytes(), is_enter) {
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
