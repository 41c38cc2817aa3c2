//! Lockstep comparison: the reference (KVM, single-stepping) and the candidate (the
//! interpreter) advance one instruction at a time; after each instruction the whole CPU state
//! and the memory the instruction wrote are compared.
//!
//! KVM's single-step on our hosts is not exactly "one instruction per step". Each quirk is
//! handled by an explicit rule, counted in [`RuleCounts`] and documented in
//! `docs/known-differences.md`:
//!
//! * **REP chunks** — a REP string instruction may stop after a chunk of up to 1,024
//!   iterations with IP still on the instruction and RF set. Rule: while a side's CS:IP is still
//!   on the REP instruction after a step, step it again; compare only when IP has left it; RF is
//!   always masked.
//! * **Fault merged with the handler's first instruction** — when the candidate delivered a
//!   fault (it pushed the faulting CS:IP) and the reference is not at the handler entry, the
//!   reference's step also ran the handler's first instruction: step the candidate once more.
//! * **MOV SS / POP SS shadow** — KVM steps after MOV SS (the shadow is not honoured). If one
//!   side ran the following instruction in the same step, step the other once more.
//! * **HLT** — under single-step KVM reports a debug exit with IP past HLT instead of a HLT
//!   exit: a step over HLT that ends with IP just past it counts as `Halted`.
//! * **I/O** — a step that made an I/O exit may run one more instruction on resume: if the
//!   reference is one instruction ahead after IN/OUT/INS/OUTS, step the candidate once more.
//! * **REPE/REPNE CMPS/SCAS run as one** — a fault inside one restores the FLAGS of the
//!   instruction's (re)start (SDM Vol. 2, REP prefix), so *where* a side restarted it is
//!   visible, and the interpreter stepped one iteration at a time restarts it at every
//!   iteration. Rule: when the candidate, stepped per iteration, faults after completed
//!   iterations, its state from before the instruction is restored (CPU state and the six
//!   stack bytes the delivery wrote) and it runs the same iterations again as one run, as in a
//!   whole run. (The interpreter's instruction counter counts those iterations twice.) Where
//!   the reference itself restarted part-way (KVM's emulator returns to the guest whenever the
//!   count reaches a multiple of 1,024), the count there and the candidate's FLAGS at that
//!   count are kept in [`Divergence::rep_restart`] for the known-difference rule.
//! * **Guest TF** — a guest that sets TF cannot be compared in lockstep (KVM swallows the
//!   guest's #DB while it single-steps): when the candidate's TF becomes 1 (POPF, IRET, a
//!   task of the guest's own) or is 1 at the start, lockstep stops with
//!   [`LockstepEnd::GuestTrapFlag`] at that instruction — before comparing it, as KVM's view of
//!   TF under single-step is not the guest's — and the caller falls back to a whole-run
//!   comparison.
use std::time::Instant;

use iced_x86::{Instruction, InstructionInfoFactory, Mnemonic, OpAccess, Register};
use picoqemu_core::{flags, CpuState, Gpr, InsnBytes, RunLimits, SegReg, StopReason};

use super::compare::{compare, diff_ranges, Comparison, MemRange, Outcome};
use super::disasm;
use super::error::DiffError;
use super::flagmask::UndefTracker;
use super::history::{HistEntry, History};
use super::stepper::{Step, StepBackend};
use super::trace::fault_delivered;
use super::wholerun::Side;

/// How often (in instructions) all of RAM is compared, to catch writes the per-instruction
/// check did not predict.
pub const FULL_COMPARE_EVERY: u64 = 4096;
/// Safety bound on the steps a single REP instruction may take on one side.
const MAX_REP_STEPS: u64 = 1 << 24;

/// How often each quirk rule was applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Extra reference steps while a REP was still running (KVM's 1,024-iteration chunks).
    pub rep_chunks: u64,
    /// Extra candidate steps because the reference merged a fault with the handler's first
    /// instruction.
    pub fault_merged: u64,
    /// Extra steps to realign after MOV SS / POP SS.
    pub mov_ss: u64,
    /// Debug exits past HLT counted as a halt.
    pub hlt: u64,
    /// Extra candidate steps after an I/O instruction.
    pub io_merged: u64,
    /// Faulting REPE/REPNE CMPS/SCAS re-run on the candidate as one run from their start.
    pub rep_restarts: u64,
}

/// Where and how the two sides first disagreed.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// Number of the instruction (0-based) after which the states differ.
    pub step: u64,
    pub cs: u16,
    pub ip: u32,
    pub bytes: InsnBytes,
    /// The state both sides agreed on before the instruction.
    pub pre: CpuState,
    pub comparison: Comparison,
    /// Differing memory ranges found by the per-instruction check (the full-RAM comparison is
    /// in `comparison`).
    pub written: Vec<MemRange>,
    /// For a REPE/REPNE CMPS/SCAS the reference restarted part-way (its step ended with IP
    /// still on it): the count register there and the candidate's FLAGS at that count.
    pub rep_restart: Option<(u32, u32)>,
}

/// How a lockstep run ended.
#[derive(Debug, Clone)]
pub enum LockstepEnd {
    /// Both stopped the same way, identical all along.
    Stopped(StopReason),
    /// The states differ after an instruction.
    Diverged(Box<Divergence>),
    /// The guest set TF at this instruction: lockstep cannot continue.
    GuestTrapFlag { step: u64, cs: u16, ip: u32 },
    /// The reference could not execute an instruction (KVM emulation failure).
    ReferenceFailed(StopReason),
}

/// The result of a lockstep run.
#[derive(Debug, Clone)]
pub struct Lockstep {
    pub end: LockstepEnd,
    /// Instructions compared.
    pub steps: u64,
    pub rules: RuleCounts,
    pub undef: UndefTracker,
    pub history: History,
    /// When the run ended on a limit (`Stopped(Timeout | BudgetExhausted)`) inside one side's
    /// step: that side's name. A limit is never a divergence: the verdict is "no verdict".
    pub limited_by: Option<&'static str>,
}

/// The value of `reg` in `s`, as iced's `virtual_address` wants it (segment registers give
/// their base).
pub fn reg_value(s: &CpuState, reg: Register) -> Option<u64> {
    if reg.is_segment_register() {
        let seg = match reg {
            Register::ES => SegReg::Es,
            Register::CS => SegReg::Cs,
            Register::SS => SegReg::Ss,
            Register::DS => SegReg::Ds,
            Register::FS => SegReg::Fs,
            _ => SegReg::Gs,
        };
        return Some(s.seg(seg).base as u64);
    }
    if !reg.is_gpr() {
        return None;
    }
    let full = reg.full_register32();
    let idx = full.number();
    if idx >= 8 {
        return None;
    }
    let v = s.gpr[idx];
    Some(match reg.size() {
        1 => {
            if reg.number() >= 4 && reg.number() < 8 && reg.is_gpr8() {
                // AH, CH, DH, BH
                ((v >> 8) & 0xFF) as u64
            } else {
                (v & 0xFF) as u64
            }
        }
        2 => (v & 0xFFFF) as u64,
        _ => v as u64,
    })
}

/// Physical ranges `instr` may write, computed from the state before it. At most four.
fn written_ranges(
    factory: &mut InstructionInfoFactory,
    instr: &Instruction,
    pre: &CpuState,
    post: &CpuState,
    out: &mut [(u32, u32); 4],
) -> usize {
    let mut n = 0;
    let info = factory.info(instr);
    let is_rep_string = instr.has_rep_prefix() || instr.has_repne_prefix();
    for m in info.used_memory() {
        if n == out.len() {
            break;
        }
        let writes = matches!(
            m.access(),
            OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite
        );
        if !writes {
            continue;
        }
        if is_rep_string && instr.is_string_instruction() {
            // A REP store may cover the whole destination segment.
            let base = pre.seg(SegReg::Es).base;
            out[n] = (base, 0x1_0000);
            n += 1;
            continue;
        }
        if let Some(addr) = m.virtual_address(0, |r, _, _| reg_value(pre, r)) {
            out[n] = (addr as u32, m.memory_size().size().max(1) as u32);
            n += 1;
        }
    }
    // Stack pushes (PUSH, CALL, INT, exception frames, ENTER, PUSHA).
    let sp0 = pre.reg(Gpr::Esp) as u16;
    let sp1 = post.reg(Gpr::Esp) as u16;
    let pushed = sp0.wrapping_sub(sp1);
    if n < out.len() && pushed != 0 && pushed < 0x8000 {
        out[n] = (pre.seg(SegReg::Ss).base + sp1 as u32, pushed as u32);
        n += 1;
    }
    n
}

fn is_rep_string(instr: &Instruction) -> bool {
    instr.is_string_instruction() && (instr.has_rep_prefix() || instr.has_repne_prefix())
}

/// REPE/REPNE CMPS/SCAS: the REP string instructions whose restart point is visible (a fault
/// restores the FLAGS of the instruction's (re)start).
fn is_rep_compare(instr: &Instruction) -> bool {
    is_rep_string(instr)
        && matches!(
            instr.mnemonic(),
            Mnemonic::Cmpsb
                | Mnemonic::Cmpsw
                | Mnemonic::Cmpsd
                | Mnemonic::Scasb
                | Mnemonic::Scasw
                | Mnemonic::Scasd
        )
}

/// The count register of a REP string instruction (CX, or ECX with a 32-bit address size).
fn rep_count(instr: &Instruction, s: &CpuState) -> u32 {
    let a32 = (0..instr.op_count()).any(|i| {
        matches!(
            instr.op_kind(i),
            iced_x86::OpKind::MemorySegESI | iced_x86::OpKind::MemorySegEDI | iced_x86::OpKind::MemoryESEDI
        )
    });
    if a32 {
        s.reg(Gpr::Ecx)
    } else {
        s.reg(Gpr::Ecx) & 0xFFFF
    }
}

/// Physical addresses of the six stack bytes an exception delivery from state `s` writes.
fn frame_addrs(s: &CpuState) -> [u64; 6] {
    let base = s.seg(SegReg::Ss).base;
    let sp = s.reg(Gpr::Esp);
    std::array::from_fn(|j| base.wrapping_add(sp.wrapping_sub(6).wrapping_add(j as u32) & 0xFFFF) as u64)
}

/// The candidate's state at a restart point of a REP compare, with the stack bytes a fault
/// delivery would overwrite, and the steps run since.
struct RestartPoint {
    state: CpuState,
    frame: [u8; 6],
    steps: u64,
}

impl RestartPoint {
    fn take(ram: &[u8], state: CpuState) -> Self {
        let frame = frame_addrs(&state).map(|a| ram.get(a as usize).copied().unwrap_or(0));
        RestartPoint { state, frame, steps: 0 }
    }
}

fn is_io(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::In
            | Mnemonic::Out
            | Mnemonic::Insb
            | Mnemonic::Insw
            | Mnemonic::Insd
            | Mnemonic::Outsb
            | Mnemonic::Outsw
            | Mnemonic::Outsd
    )
}

fn loads_ss(instr: &Instruction) -> bool {
    match instr.mnemonic() {
        Mnemonic::Mov => {
            instr.op0_kind() == iced_x86::OpKind::Register && instr.op0_register() == Register::SS
        }
        Mnemonic::Pop => instr.op_count() == 1 && instr.op0_register() == Register::SS,
        _ => false,
    }
}

/// One side's step, with its resulting state.
fn step_side<B: StepBackend>(side: &mut Side<B>) -> Result<(Step, CpuState), DiffError> {
    let step = side.backend.step_one(&mut side.machine);
    let state = side.backend.state()?;
    Ok((step, state))
}

/// The stop reason a finished step stands for (`StepDone` when the run goes on).
fn stop_of(step: &Step) -> StopReason {
    match step {
        Step::Retired | Step::RepChunk | Step::NoProgress | Step::FaultMerged { halted: false } => {
            StopReason::StepDone
        }
        Step::Halted | Step::FaultMerged { halted: true } => StopReason::Halted,
        Step::Stopped(r) => r.clone(),
    }
}

/// The first side (reference first) whose step ended on a limit, with that stop.
fn limit_stop(
    reference: (&'static str, &StopReason),
    candidate: (&'static str, &StopReason),
) -> Option<(&'static str, StopReason)> {
    [reference, candidate]
        .into_iter()
        .find(|(_, s)| matches!(s, StopReason::Timeout | StopReason::BudgetExhausted))
        .map(|(n, s)| (n, s.clone()))
}

fn same_pc(a: &CpuState, b: &CpuState) -> bool {
    a.cs() == b.cs() && a.eip == b.eip
}

/// Runs both sides in lockstep from `start` (their machines must already hold the same image).
pub fn lockstep<A: StepBackend, B: StepBackend>(
    reference: &mut Side<A>,
    candidate: &mut Side<B>,
    start: &CpuState,
    limits: RunLimits,
) -> Result<Lockstep, DiffError> {
    lockstep_inner(reference, candidate, start, limits)
}

fn lockstep_inner<A: StepBackend, B: StepBackend>(
    reference: &mut Side<A>,
    candidate: &mut Side<B>,
    start: &CpuState,
    limits: RunLimits,
) -> Result<Lockstep, DiffError> {
    reference.backend.set_state(start)?;
    candidate.backend.set_state(start)?;
    let deadline = limits.timeout.map(|t| Instant::now() + t);
    let budget = limits.max_instructions.unwrap_or(u64::MAX);
    let mut factory = InstructionInfoFactory::new();
    let mut rules = RuleCounts::default();
    let mut undef = UndefTracker::new();
    let mut history = History::new();
    let mut pre = *start;
    let mut step: u64 = 0;
    let mut ranges = [(0u32, 0u32); 4];
    let names = (reference.backend.name(), candidate.backend.name());
    let done = |end, step, rules, undef, history| {
        Ok(Lockstep { end, steps: step, rules, undef, history, limited_by: None })
    };
    loop {
        if step >= budget {
            return done(LockstepEnd::Stopped(StopReason::BudgetExhausted), step, rules, undef, history);
        }
        if step.is_multiple_of(1024) && deadline.is_some_and(|d| Instant::now() >= d) {
            return done(LockstepEnd::Stopped(StopReason::Timeout), step, rules, undef, history);
        }
        if pre.eflags & flags::TF != 0 {
            return done(
                LockstepEnd::GuestTrapFlag { step, cs: pre.cs(), ip: pre.eip },
                step,
                rules,
                undef,
                history,
            );
        }
        let bytes = disasm::fetch(candidate.machine.ram_mut().bytes(), pre.pc_linear());
        let instr = disasm::decode(bytes.as_slice(), pre.eip);
        history.push(HistEntry { step, cs: pre.cs(), ip: pre.eip, bytes });
        let next_ip = pre.eip.wrapping_add(instr.len() as u32) & 0xFFFF;

        // Reference step, with the REP-chunk and HLT rules. For a REP compare, the count
        // register at the start of the reference's last step on it (its last restart).
        let rep_compare = is_rep_compare(&instr);
        let mut ref_restart = rep_count(&instr, &pre);
        let (mut rev, mut rstate) = step_side(reference)?;
        let mut n = 0;
        while rev == Step::RepChunk && n < MAX_REP_STEPS {
            if same_pc(&rstate, &pre) {
                ref_restart = rep_count(&instr, &rstate);
            }
            (rev, rstate) = step_side(reference)?;
            rules.rep_chunks += 1;
            n += 1;
        }
        if rev == Step::NoProgress {
            let stop = StopReason::EmulationFailure { cs: pre.cs(), ip: pre.eip, bytes };
            return done(LockstepEnd::ReferenceFailed(stop), step, rules, undef, history);
        }
        if let Step::Stopped(r @ StopReason::EmulationFailure { .. }) = &rev {
            return done(LockstepEnd::ReferenceFailed(r.clone()), step, rules, undef, history);
        }
        if is_rep_string(&instr) {
            // A reference without RepChunk events that still stopped on the REP.
            while rev == Step::Retired && same_pc(&rstate, &pre) && n < MAX_REP_STEPS {
                ref_restart = rep_count(&instr, &rstate);
                (rev, rstate) = step_side(reference)?;
                rules.rep_chunks += 1;
                n += 1;
            }
        }
        let mut rstop = stop_of(&rev);
        if instr.mnemonic() == Mnemonic::Hlt && rstop == StopReason::StepDone && rstate.eip == next_ip {
            rstop = StopReason::Halted;
            rules.hlt += 1;
        }

        // Candidate step (the interpreter counts REP iterations as steps).
        let mut restart = rep_compare.then(|| RestartPoint::take(candidate.machine.ram_mut().bytes(), pre));
        // The candidate's FLAGS where the reference last restarted the REP compare.
        let mut flags_at_ref_restart =
            (rep_compare && rep_count(&instr, &pre) != ref_restart).then_some(None::<u32>);
        let (cev, mut cstate) = step_side(candidate)?;
        let mut cstop = stop_of(&cev);
        if let Some(r) = restart.as_mut() {
            r.steps += 1;
        }
        if is_rep_string(&instr) {
            let mut n = 0;
            while cstop == StopReason::StepDone && same_pc(&cstate, &pre) && n < MAX_REP_STEPS {
                if let Some(f @ None) = flags_at_ref_restart.as_mut() {
                    if rep_count(&instr, &cstate) == ref_restart {
                        *f = Some(cstate.eflags);
                    }
                }
                let (ev, st) = step_side(candidate)?;
                cstop = stop_of(&ev);
                cstate = st;
                if let Some(r) = restart.as_mut() {
                    r.steps += 1;
                }
                n += 1;
            }
        }
        let is_enter = instr.mnemonic() == Mnemonic::Enter;
        let mut faulted = fault_delivered(&pre, &cstate, candidate.machine.ram_mut().bytes(), is_enter);
        if let Some(r) = restart.filter(|r| faulted && r.steps > 1) {
            // Completed iterations, then the faulting one: run them again as one run from the
            // instruction's start, as in a whole run (the interpreter counts k iterations and
            // a fault as k+1 instructions in one run as in k+1 steps, so the budget ends right
            // after the delivery).
            let ram = candidate.machine.ram_mut().as_mut_slice();
            for (a, b) in frame_addrs(&r.state).iter().zip(r.frame) {
                if let Some(m) = ram.get_mut(*a as usize) {
                    *m = b;
                }
            }
            candidate.backend.set_state(&r.state)?;
            let ev = candidate.backend.step_n(&mut candidate.machine, r.steps, deadline);
            cstop = stop_of(&ev);
            cstate = candidate.backend.state()?;
            faulted = fault_delivered(&pre, &cstate, candidate.machine.ram_mut().bytes(), is_enter);
            rules.rep_restarts += 1;
        }
        let mut extra = false;
        if faulted {
            undef.fault_delivered(step);
        } else {
            undef.executed(&instr, pre.reg(Gpr::Ecx), step);
        }
        let merged = matches!(rev, Step::FaultMerged { .. }) || (faulted && !same_pc(&cstate, &rstate));
        let realign = |candidate: &mut Side<B>,
                       cstate: &mut CpuState,
                       cstop: &mut StopReason,
                       undef: &mut UndefTracker,
                       history: &mut History|
         -> Result<(), DiffError> {
            let hpre = *cstate;
            let hbytes = disasm::fetch(candidate.machine.ram_mut().bytes(), hpre.pc_linear());
            let hinstr = disasm::decode(hbytes.as_slice(), hpre.eip);
            let (ev, st) = step_side(candidate)?;
            *cstop = stop_of(&ev);
            *cstate = st;
            undef.executed(&hinstr, hpre.reg(Gpr::Ecx), step);
            history.push(HistEntry { step, cs: hpre.cs(), ip: hpre.eip, bytes: hbytes });
            Ok(())
        };
        if faulted && merged && cstop == StopReason::StepDone {
            // KVM: delivery + the handler's first instruction in one step.
            realign(candidate, &mut cstate, &mut cstop, &mut undef, &mut history)?;
            rules.fault_merged += 1;
            extra = true;
        } else if loads_ss(&instr) && !same_pc(&cstate, &rstate) {
            // One side honoured the MOV SS shadow (ran the next instruction too).
            if cstate.eip == next_ip && cstate.cs() == pre.cs() {
                realign(candidate, &mut cstate, &mut cstop, &mut undef, &mut history)?;
            } else {
                let (ev, st) = step_side(reference)?;
                rstop = stop_of(&ev);
                rstate = st;
            }
            rules.mov_ss += 1;
            extra = true;
        } else if is_io(instr.mnemonic()) && cstop == StopReason::StepDone && !same_pc(&cstate, &rstate) {
            realign(candidate, &mut cstate, &mut cstop, &mut undef, &mut history)?;
            rules.io_merged += 1;
            extra = true;
        }

        if cstate.eflags & flags::TF != 0 {
            // The guest set TF (POPF, IRET, ...): KVM swallows its #DB while single-stepping.
            return done(
                LockstepEnd::GuestTrapFlag { step, cs: pre.cs(), ip: pre.eip },
                step,
                rules,
                undef,
                history,
            );
        }

        // Compare registers (undefined flags and RF masked) and the memory written.
        let mask = undef.undefined() | flags::RF;
        let mut a = rstate;
        let mut b = cstate;
        a.eflags &= !mask;
        b.eflags &= !mask;
        let n = written_ranges(&mut factory, &instr, &pre, &cstate, &mut ranges);
        let mut written = Vec::new();
        let (ra, rb) = (reference.machine.ram_mut().bytes(), candidate.machine.ram_mut().bytes());
        for &(addr, len) in &ranges[..n] {
            let s = (addr as usize).min(ra.len());
            let e = s.saturating_add(len as usize).min(ra.len());
            if ra[s..e] != rb[s..e] {
                written.extend(diff_ranges(&ra[s..e], &rb[s..e], s as u32).0);
            }
        }
        let full = extra
            || faulted
            || (step + 1).is_multiple_of(FULL_COMPARE_EVERY)
            || rstop != StopReason::StepDone;
        let mem_differs = !written.is_empty() || (full && ra != rb);
        if let Some((side, stop)) = limit_stop((names.0, &rstop), (names.1, &cstop)) {
            // A side ran out of time or budget inside its step: the two are not at the same
            // instruction, so there is nothing to compare (no verdict, never a divergence).
            let end = LockstepEnd::Stopped(stop);
            return Ok(Lockstep { end, steps: step, rules, undef, history, limited_by: Some(side) });
        }
        let stops_final = rstop != StopReason::StepDone || cstop != StopReason::StepDone;
        if a != b || mem_differs || (stops_final && rstop != cstop) {
            let comparison = compare(
                names,
                (&mut reference.machine, Outcome { stop: rstop, state: rstate }),
                (&mut candidate.machine, Outcome { stop: cstop, state: cstate }),
                undef.undefined(),
            );
            let rep_restart = flags_at_ref_restart.flatten().map(|f| (ref_restart, f));
            let d =
                Divergence { step, cs: pre.cs(), ip: pre.eip, bytes, pre, comparison, written, rep_restart };
            return done(LockstepEnd::Diverged(Box::new(d)), step + 1, rules, undef, history);
        }
        step += 1;
        if stops_final {
            // Same stop on both sides; a final full comparison of devices and RAM.
            let comparison = compare(
                names,
                (&mut reference.machine, Outcome { stop: rstop.clone(), state: rstate }),
                (&mut candidate.machine, Outcome { stop: cstop, state: cstate }),
                undef.undefined(),
            );
            if !comparison.is_identical() {
                let d = Divergence {
                    step: step - 1,
                    cs: pre.cs(),
                    ip: pre.eip,
                    bytes,
                    pre,
                    comparison,
                    written,
                    rep_restart: None,
                };
                return done(LockstepEnd::Diverged(Box::new(d)), step, rules, undef, history);
            }
            return done(LockstepEnd::Stopped(rstop), step, rules, undef, history);
        }
        pre = cstate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_values_for_addresses() {
        let mut s = CpuState::default();
        s.set_reg(Gpr::Eax, 0x1234_5678);
        s.set_seg(SegReg::Ds, 0x1000);
        assert_eq!(reg_value(&s, Register::AL), Some(0x78));
        assert_eq!(reg_value(&s, Register::AH), Some(0x56));
        assert_eq!(reg_value(&s, Register::AX), Some(0x5678));
        assert_eq!(reg_value(&s, Register::EAX), Some(0x1234_5678));
        assert_eq!(reg_value(&s, Register::DS), Some(0x10000));
        assert_eq!(reg_value(&s, Register::XMM0), None);
    }

    #[test]
    fn a_limit_inside_a_step_names_the_side() {
        let (t, b, d) = (StopReason::Timeout, StopReason::BudgetExhausted, StopReason::StepDone);
        assert_eq!(limit_stop(("kvm", &t), ("interp", &d)), Some(("kvm", StopReason::Timeout)));
        assert_eq!(limit_stop(("kvm", &d), ("interp", &b)), Some(("interp", StopReason::BudgetExhausted)));
        assert_eq!(limit_stop(("kvm", &d), ("interp", &StopReason::Halted)), None);
    }
}
