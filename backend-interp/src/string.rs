//! String instructions: MOVS, CMPS, SCAS, LODS, STOS, INS and OUTS, each with optional
//! REP/REPE/REPNE, using SI/DI/CX or ESI/EDI/ECX by address size.
//!
//! A REP instruction counts one retired instruction per iteration (a REP with a zero count
//! counts one, a faulting iteration counts one: k completed iterations and a fault count k+1,
//! however many runs they took). It runs at most `Ctx::rep_budget` iterations (and at most 64 Ki on the slow
//! path) per call and then leaves EIP on itself so that it resumes, exactly like an
//! interrupted REP on hardware; a fault mid-way leaves the registers of the completed
//! iterations. `REP MOVS`/`REP STOS` forward over plain RAM are done as slice copies/fills.
//!
//! REPE/REPNE CMPS/SCAS that fault part-way restore FLAGS to their value before the
//! instruction (SDM Vol. 2, REP/REPE/REPZ/REPNE/REPNZ: "When a fault occurs during the
//! execution of a CMPS or SCAS instruction that is prefixed with REPE or REPNE, the EFLAGS
//! value is restored to the state prior to the execution of the instruction"); the count and
//! pointer registers keep the completed iterations. "Before the instruction" means before this
//! *execution* of it: each call of [`string`] is one (re)start of the instruction — the first
//! one, or a resumption after the instruction left EIP on itself (an instruction-budget stop
//! between iterations, a guest single-step trap after each iteration, an internal restart every
//! 64 Ki iterations or after a stop request). A resumed instruction restarts with the flags of
//! its last completed iteration, exactly as silicon resumes one after an interrupt.
use picoqemu_core::flags::DF;

use crate::arith::{alu, CMP};
use crate::cpu::{EAX, ECX, EDI, EDX, ES, ESI};
use crate::op::{Flow, Op};
use crate::operand::{seg_fault, Ctx};

pub const MOVS: u8 = 0;
pub const CMPS: u8 = 1;
pub const SCAS: u8 = 2;
pub const LODS: u8 = 3;
pub const STOS: u8 = 4;
pub const INS: u8 = 5;
pub const OUTS: u8 = 6;

/// No REP prefix / REP or REPE (F3) / REPNE (F2).
pub const REP_NONE: u8 = 0;
pub const REP_E: u8 = 1;
pub const REP_NE: u8 = 2;

const SLOW_CHUNK: u64 = 1 << 16;
const FAST_CHUNK: u64 = 1 << 24;

#[inline(always)]
fn areg<const A32: bool>(cx: &Ctx, r: u8) -> u32 {
    if A32 {
        cx.c.regs[r as usize]
    } else {
        cx.c.r16(r)
    }
}

#[inline(always)]
fn set_areg<const A32: bool>(cx: &mut Ctx, r: u8, v: u32) {
    if A32 {
        cx.c.regs[r as usize] = v;
    } else {
        cx.c.set_r16(r, v);
    }
}

/// One iteration; `Err` carries the fault.
#[inline(always)]
fn step<const KIND: u8, const W: u8, const A32: bool>(cx: &mut Ctx, op: &Op) -> Result<(), Flow> {
    let d = if cx.c.flags.bits & DF != 0 { (W as u32).wrapping_neg() } else { W as u32 };
    let uses_si = matches!(KIND, MOVS | CMPS | LODS | OUTS);
    let uses_di = matches!(KIND, MOVS | CMPS | SCAS | STOS | INS);
    let si = areg::<A32>(cx, ESI);
    let di = areg::<A32>(cx, EDI);
    let src = if uses_si {
        match cx.seg_lin::<W>(op.seg, si) {
            Some(l) => l,
            None => return Err(seg_fault(op.seg)),
        }
    } else {
        0
    };
    let dst = if uses_di {
        match cx.seg_lin::<W>(ES, di) {
            Some(l) => l,
            None => return Err(seg_fault(ES)),
        }
    } else {
        0
    };
    match KIND {
        MOVS => {
            let v = cx.rd::<W>(src);
            cx.wr::<W>(dst, v);
        }
        CMPS => {
            let a = cx.rd::<W>(src);
            let b = cx.rd::<W>(dst);
            alu::<CMP, W>(&mut cx.c.flags, a, b);
        }
        SCAS => {
            let a = cx.c.reg::<W>(EAX);
            let b = cx.rd::<W>(dst);
            alu::<CMP, W>(&mut cx.c.flags, a, b);
        }
        LODS => {
            let v = cx.rd::<W>(src);
            cx.c.set_reg::<W>(EAX, v);
        }
        STOS => {
            let v = cx.c.reg::<W>(EAX);
            cx.wr::<W>(dst, v);
        }
        INS => {
            let port = cx.c.r16(EDX) as u16;
            let v = cx.pio_in(port, W);
            cx.wr::<W>(dst, v);
        }
        _ => {
            let v = cx.rd::<W>(src);
            let port = cx.c.r16(EDX) as u16;
            cx.pio_out(port, W, v);
        }
    }
    if uses_si {
        set_areg::<A32>(cx, ESI, si.wrapping_add(d));
    }
    if uses_di {
        set_areg::<A32>(cx, EDI, di.wrapping_add(d));
    }
    Ok(())
}

/// Tries REP MOVS / REP STOS of `k` iterations as one slice operation (DF = 0, no offset
/// wrap, plain RAM, and for MOVS no forward overlap). Returns false when it does not apply.
fn fast<const KIND: u8, const W: u8, const A32: bool>(cx: &mut Ctx, op: &Op, k: u64) -> bool {
    if cx.c.flags.bits & DF != 0 {
        return false;
    }
    let bytes = k * W as u64;
    let amax: u64 = if A32 { u32::MAX as u64 } else { 0xFFFF };
    let di = areg::<A32>(cx, EDI) as u64;
    if di + bytes - 1 > amax {
        return false;
    }
    let Some(dl) = cx.seg_lin_n(ES, di as u32, bytes as u32) else { return false };
    let Some(dp) = cx.plain_ram(dl, bytes as usize, true) else { return false };
    let n = bytes as usize;
    if KIND == MOVS {
        let si = areg::<A32>(cx, ESI) as u64;
        if si + bytes - 1 > amax {
            return false;
        }
        let Some(sl) = cx.seg_lin_n(op.seg, si as u32, bytes as u32) else { return false };
        let Some(sp) = cx.plain_ram(sl, n, false) else { return false };
        if dp > sp && dp < sp + n {
            return false;
        }
        cx.ram.copy_within(sp..sp + n, dp);
        set_areg::<A32>(cx, ESI, (si + bytes) as u32);
    } else {
        let v = cx.c.reg::<W>(EAX);
        let dst = &mut cx.ram[dp..dp + n];
        match W {
            1 => dst.fill(v as u8),
            2 => {
                let b = (v as u16).to_le_bytes();
                for c in dst.chunks_exact_mut(2) {
                    c.copy_from_slice(&b);
                }
            }
            _ => {
                let b = v.to_le_bytes();
                for c in dst.chunks_exact_mut(4) {
                    c.copy_from_slice(&b);
                }
            }
        }
    }
    set_areg::<A32>(cx, EDI, (di + bytes) as u32);
    true
}

/// A string instruction of kind `KIND`, width `W`, address size `A32`, prefix `REP`.
pub fn string<const KIND: u8, const W: u8, const A32: bool, const REP: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    if REP == REP_NONE {
        return match step::<KIND, W, A32>(cx, op) {
            Ok(()) => Flow::Next,
            Err(f) => f,
        };
    }
    let mut n = areg::<A32>(cx, ECX) as u64;
    if n == 0 {
        return Flow::Next;
    }
    let budget = cx.rep_budget.max(1);
    let conditional = matches!(KIND, CMPS | SCAS);
    // FLAGS at this (re)start of the instruction, restored if an iteration faults.
    let flags_at_start = cx.c.flags;
    if (KIND == MOVS || KIND == STOS) && n > 1 {
        let k = n.min(budget).min(FAST_CHUNK);
        if fast::<KIND, W, A32>(cx, op, k) {
            n -= k;
            set_areg::<A32>(cx, ECX, n as u32);
            cx.icount += k - 1;
            return if n == 0 { Flow::Next } else { Flow::Jump };
        }
    }
    let max = n.min(budget).min(SLOW_CHUNK);
    let mut done = 0u64;
    let mut finished = false;
    while done < max {
        if let Err(f) = step::<KIND, W, A32>(cx, op) {
            // `done` completed iterations plus the faulting one (its delivery is the step), as
            // when the iterations are run one run at a time.
            cx.icount += done;
            if conditional {
                cx.c.flags = flags_at_start;
            }
            return f;
        }
        done += 1;
        n -= 1;
        set_areg::<A32>(cx, ECX, n as u32);
        if n == 0 {
            finished = true;
            break;
        }
        if conditional {
            let z = cx.c.flags.zf();
            if (REP == REP_E && !z) || (REP == REP_NE && z) {
                finished = true;
                break;
            }
        }
        if cx.brk {
            break;
        }
    }
    cx.icount += done - 1;
    if finished {
        Flow::Next
    } else {
        Flow::Jump
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use picoqemu_core::{RunLimits, StopReason};

    #[test]
    fn rep_movsb_and_stosw() {
        // mov cx, 5 ; rep movsb ; mov cx, 3 ; mov ax, 0xABCD ; rep stosw ; hlt
        let code = [0xB9, 0x05, 0x00, 0xF3, 0xA4, 0xB9, 0x03, 0x00, 0xB8, 0xCD, 0xAB, 0xF3, 0xAB, 0xF4];
        let mut t = T::new(&code);
        t.cpu.gpr[6] = 0x300;
        t.cpu.gpr[7] = 0x400;
        t.poke(0x300, b"hello");
        let s = t.run();
        assert_eq!(t.peek(0x400, 5), b"hello");
        assert_eq!(t.peek(0x405, 6), [0xCD, 0xAB, 0xCD, 0xAB, 0xCD, 0xAB]);
        assert_eq!(s.st.gpr[7], 0x40B);
        assert_eq!(s.st.gpr[6], 0x305);
        assert_eq!(s.st.gpr[1], 0);
    }

    #[test]
    fn overlapping_forward_movsb_replicates() {
        // rep movsb with di = si + 1: the first byte is smeared (not a memmove)
        let mut t = T::new(&[0xF3, 0xA4, 0xF4]);
        t.cpu.gpr[1] = 4;
        t.cpu.gpr[6] = 0x300;
        t.cpu.gpr[7] = 0x301;
        t.poke(0x300, &[7, 1, 2, 3, 4]);
        t.run();
        assert_eq!(t.peek(0x300, 5), [7, 7, 7, 7, 7]);
    }

    #[test]
    fn repe_cmpsb_stops_at_difference_and_std_goes_down() {
        let mut t = T::new(&[0xF3, 0xA6, 0xF4]);
        t.cpu.gpr[1] = 10;
        t.cpu.gpr[6] = 0x300;
        t.cpu.gpr[7] = 0x400;
        t.poke(0x300, b"abcX");
        t.poke(0x400, b"abcY");
        let s = t.run();
        assert_eq!(s.st.gpr[1], 6);
        assert_eq!(s.st.gpr[6], 0x304);
        // std ; lodsw ; hlt
        let mut t = T::new(&[0xFD, 0xAD, 0xF4]);
        t.cpu.gpr[6] = 0x300;
        t.poke(0x300, &[0x34, 0x12]);
        let s = t.run();
        assert_eq!((s.st.gpr[0], s.st.gpr[6]), (0x1234, 0x2FE));
    }

    #[test]
    fn single_step_runs_one_rep_iteration() {
        let mut t = T::new(&[0xF3, 0xAA, 0xF4]);
        t.cpu.gpr[1] = 3;
        t.cpu.gpr[7] = 0x400;
        let s = t.run_limited(RunLimits::instructions(1));
        assert_eq!(s.stop, StopReason::StepDone);
        assert_eq!((s.st.gpr[1], s.st.eip), (2, 0x100));
        let s = t.run_limited(RunLimits::instructions(2));
        assert_eq!(s.stop, StopReason::BudgetExhausted);
        assert_eq!((s.st.gpr[1], s.st.eip), (0, 0x102));
    }

    /// `repne scasw` (F2 AF) with DF = 1, AX = 1234h over zeroed words from DI = 9 down:
    /// five iterations (DI = 9, 7, 5, 3, 1), the sixth reads the word at ES:FFFF -> #GP, whose
    /// handler at 0000:0500 is HLT.
    fn repne_scasw_faulting(start_flags: u32) -> T {
        let mut t = T::new(&[0xF2, 0xAF, 0xF4]);
        t.cpu.eflags = start_flags;
        t.cpu.gpr[0] = 0x1234;
        t.cpu.gpr[1] = 0x21;
        t.cpu.gpr[7] = 9;
        t.cpu.gpr[4] = 0x800;
        t.poke(13 * 4, &[0x00, 0x05, 0, 0]);
        t.poke(0x500, &[0xF4]);
        t
    }

    #[test]
    fn repne_scas_fault_restores_flags_from_before_the_instruction() {
        use picoqemu_core::flags::{AF, CF, DF, OF, PF, SF, STATUS};
        // Every iteration computes 1234h - 0 (all status flags clear), so flags from before the
        // instruction (all six set) are distinguishable from those of a completed iteration.
        let start = 0x2 | DF | OF | SF | AF | PF | CF;
        let mut t = repne_scasw_faulting(start);
        let s = t.run();
        assert_eq!(s.stop, StopReason::Halted);
        assert_eq!(s.st.eip, 0x501, "the #GP handler ran");
        // Registers keep the five completed iterations; the frame points at the REP.
        assert_eq!((s.st.gpr[1], s.st.gpr[7]), (0x1C, 0xFFFF));
        assert_eq!((t.peek16(0x7FA), t.peek16(0x7FC)), (0x100, 0));
        assert_eq!(t.peek16(0x7FE) as u32, start, "pushed FLAGS are those before the instruction");
        assert_eq!(s.st.eflags & STATUS, start & STATUS, "FLAGS left in the register too");
        // Five iterations + the faulting one + HLT, in one run as in single steps.
        use picoqemu_core::Backend;
        assert_eq!(t.be.stats().instructions, Some(7));
        let mut t = repne_scasw_faulting(start);
        let mut steps = 0;
        while t.run_limited(RunLimits::instructions(1)).stop == StopReason::StepDone {
            steps += 1;
        }
        assert_eq!(steps + 1, 7);
    }

    #[test]
    fn resumed_repne_scas_restores_flags_of_its_restart() {
        use picoqemu_core::flags::{AF, CF, DF, OF, PF, SF, STATUS};
        let start = 0x2 | DF | OF | SF | AF | PF | CF;
        let mut t = repne_scasw_faulting(start);
        // Stop after three iterations, between iterations, IP still on the REP.
        let s = t.run_limited(RunLimits::instructions(3));
        assert_eq!(s.stop, StopReason::BudgetExhausted);
        assert_eq!((s.st.eip, s.st.gpr[1]), (0x100, 0x1E));
        assert_eq!(s.st.eflags & STATUS, 0, "flags of the third iteration (1234h - 0)");
        // The resumed instruction restarts with those flags; the fault restores them.
        let s = t.run();
        assert_eq!((s.st.eip, s.st.gpr[1], s.st.gpr[7]), (0x501, 0x1C, 0xFFFF));
        assert_eq!(t.peek16(0x7FE) as u32, 0x2 | DF);
        // REPE is restored the same way (the first iteration sets ZF = 0 and ends it before the
        // fault here, so use a matching word: AX = 0 over zeros runs on to the fault).
        let mut t = repne_scasw_faulting(start);
        t.m.ram_mut().write(0x100, &[0xF3, 0xAF]).expect("code");
        t.cpu.gpr[0] = 0;
        let s = t.run();
        assert_eq!((s.st.eip, s.st.gpr[1]), (0x501, 0x1C));
        assert_eq!(t.peek16(0x7FE) as u32, start);
    }

    #[test]
    fn a32_rep_uses_ecx() {
        // 67 F3 AA: rep stosb with address size 32 (ECX, EDI), ES = 0x2000
        let mut t = T::new(&[0x67, 0xF3, 0xAA, 0xF4]);
        t.cpu.segs[0] = picoqemu_core::Segment::real(0x2000);
        t.cpu.gpr[1] = 0x1_0000;
        t.cpu.gpr[7] = 0;
        t.cpu.gpr[0] = 0x55;
        let s = t.run();
        assert_eq!(s.st.gpr[1], 0);
        assert_eq!(s.st.gpr[7], 0x1_0000);
        assert_eq!(t.peek(0x2_FFFF, 1), [0x55]);
    }

    #[test]
    fn a32_offset_past_limit_faults() {
        // 67 AA: stosb at EDI = 0x10000 -> #GP(13) at 0000:0500
        let mut t = T::new(&[0x67, 0xAA, 0xF4]);
        t.cpu.gpr[7] = 0x1_0000;
        t.cpu.gpr[4] = 0x800;
        t.poke(13 * 4, &[0x00, 0x05, 0, 0]);
        t.poke(0x500, &[0xF4]);
        assert_eq!(t.run().st.eip, 0x501);
    }
}
