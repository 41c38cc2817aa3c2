//! Integer arithmetic: the eight ALU operations (ADD OR ADC SBB AND SUB XOR CMP, plus TEST)
//! in their E,G / G,E / E,imm forms, INC, DEC, NEG, XADD, CMPXCHG and CMPXCHG8B.
//!
//! Handlers are generic over the ALU operation (`OP`, x86 encoding order, 8 = TEST), the
//! operand width in bytes (`W`) and whether the r/m operand is memory (`MEM`); the decoder
//! picks the instance once per instruction.
use picoqemu_core::flags::ZF;

use crate::cpu::{EAX, EBX, ECX, EDX};
use crate::flags::{wmask, Flags, Kind};
use crate::interrupt::UD;
use crate::op::{Flow, Op};
use crate::operand::{lin, Ctx};

pub const ADD: u8 = 0;
pub const OR: u8 = 1;
pub const ADC: u8 = 2;
pub const SBB: u8 = 3;
pub const AND: u8 = 4;
pub const SUB: u8 = 5;
pub const XOR: u8 = 6;
pub const CMP: u8 = 7;
pub const TEST: u8 = 8;

/// Applies ALU operation `OP` to `a` and `b` (both already `W`-byte values), sets the flags
/// and returns the result.
#[inline(always)]
pub fn alu<const OP: u8, const W: u8>(f: &mut Flags, a: u32, b: u32) -> u32 {
    let m = wmask(W);
    match OP {
        ADD => {
            let r = a.wrapping_add(b) & m;
            f.set_arith(Kind::Add, W, a, b, r);
            r
        }
        ADC => {
            let c = f.cf();
            let r = a.wrapping_add(b).wrapping_add(c as u32) & m;
            f.set_arith(if c { Kind::Adc } else { Kind::Add }, W, a, b, r);
            r
        }
        SBB => {
            let c = f.cf();
            let r = a.wrapping_sub(b).wrapping_sub(c as u32) & m;
            f.set_arith(if c { Kind::Sbb } else { Kind::Sub }, W, a, b, r);
            r
        }
        SUB | CMP => {
            let r = a.wrapping_sub(b) & m;
            f.set_arith(Kind::Sub, W, a, b, r);
            r
        }
        OR => {
            let r = a | b;
            f.set_logic(W, r);
            r
        }
        XOR => {
            let r = a ^ b;
            f.set_logic(W, r);
            r
        }
        _ => {
            let r = a & b;
            f.set_logic(W, r);
            r
        }
    }
}

/// True when `OP` writes its result back.
#[inline(always)]
const fn writes(op: u8) -> bool {
    op != CMP && op != TEST
}

/// `OP r/m, reg` (E = `op.m` or memory, G = `op.r`).
pub fn alu_eg<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let b = cx.c.reg::<W>(op.r);
    if MEM {
        let l = lin!(cx, op, W);
        let a = cx.rd::<W>(l);
        let r = alu::<OP, W>(&mut cx.c.flags, a, b);
        if writes(OP) {
            cx.wr::<W>(l, r);
        }
    } else {
        let a = cx.c.reg::<W>(op.m);
        let r = alu::<OP, W>(&mut cx.c.flags, a, b);
        if writes(OP) {
            cx.c.set_reg::<W>(op.m, r);
        }
    }
    Flow::Next
}

/// `OP reg, r/m` (memory source; register pairs use [`alu_eg`]).
pub fn alu_ge<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let b = if MEM {
        let l = lin!(cx, op, W);
        cx.rd::<W>(l)
    } else {
        cx.c.reg::<W>(op.m)
    };
    let a = cx.c.reg::<W>(op.r);
    let r = alu::<OP, W>(&mut cx.c.flags, a, b);
    if writes(OP) {
        cx.c.set_reg::<W>(op.r, r);
    }
    Flow::Next
}

/// `OP r/m, imm` (the immediate is pre-extended and masked to `W` bytes in `op.imm`).
pub fn alu_ei<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if MEM {
        let l = lin!(cx, op, W);
        let a = cx.rd::<W>(l);
        let r = alu::<OP, W>(&mut cx.c.flags, a, op.imm);
        if writes(OP) {
            cx.wr::<W>(l, r);
        }
    } else {
        let a = cx.c.reg::<W>(op.m);
        let r = alu::<OP, W>(&mut cx.c.flags, a, op.imm);
        if writes(OP) {
            cx.c.set_reg::<W>(op.m, r);
        }
    }
    Flow::Next
}

/// The result of ALU operation `OP` without any flag update (for instructions whose flags
/// the block optimiser proved dead).
#[inline(always)]
fn alu_nf<const OP: u8, const W: u8>(a: u32, b: u32) -> u32 {
    let m = wmask(W);
    match OP {
        ADD => a.wrapping_add(b) & m,
        SUB | CMP => a.wrapping_sub(b) & m,
        OR => a | b,
        XOR => a ^ b,
        _ => a & b,
    }
}

/// [`alu_eg`] with dead flags: register forms only (ADC/SBB are never given this variant;
/// a memory form falls back to [`alu_eg`]).
pub fn alu_eg_nf<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if MEM || OP == ADC || OP == SBB {
        return alu_eg::<OP, W, MEM>(cx, op);
    }
    if writes(OP) {
        let r = alu_nf::<OP, W>(cx.c.reg::<W>(op.m), cx.c.reg::<W>(op.r));
        cx.c.set_reg::<W>(op.m, r);
    }
    Flow::Next
}

/// [`alu_ei`] with dead flags (see [`alu_eg_nf`]).
pub fn alu_ei_nf<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if MEM || OP == ADC || OP == SBB {
        return alu_ei::<OP, W, MEM>(cx, op);
    }
    if writes(OP) {
        let r = alu_nf::<OP, W>(cx.c.reg::<W>(op.m), op.imm);
        cx.c.set_reg::<W>(op.m, r);
    }
    Flow::Next
}

/// Unary operations on r/m.
pub const INC: u8 = 0;
pub const DEC: u8 = 1;
pub const NOT: u8 = 2;
pub const NEG: u8 = 3;

#[inline(always)]
fn unary_val<const OP: u8, const W: u8>(f: &mut Flags, a: u32) -> u32 {
    let m = wmask(W);
    match OP {
        INC => {
            let r = a.wrapping_add(1) & m;
            f.set_incdec(Kind::Add, W, a, r);
            r
        }
        DEC => {
            let r = a.wrapping_sub(1) & m;
            f.set_incdec(Kind::Sub, W, a, r);
            r
        }
        NOT => !a & m,
        _ => {
            let r = 0u32.wrapping_sub(a) & m;
            f.set_arith(Kind::Sub, W, 0, a, r);
            r
        }
    }
}

/// INC / DEC / NOT / NEG r/m.
pub fn unary<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if MEM {
        let l = lin!(cx, op, W);
        let a = cx.rd::<W>(l);
        let r = unary_val::<OP, W>(&mut cx.c.flags, a);
        cx.wr::<W>(l, r);
    } else {
        let a = cx.c.reg::<W>(op.m);
        let r = unary_val::<OP, W>(&mut cx.c.flags, a);
        cx.c.set_reg::<W>(op.m, r);
    }
    Flow::Next
}

/// [`unary`] with dead flags: INC/DEC of a register leave EFLAGS alone (other forms fall
/// back to [`unary`]).
pub fn unary_nf<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if MEM || (OP != INC && OP != DEC) {
        return unary::<OP, W, MEM>(cx, op);
    }
    let a = cx.c.reg::<W>(op.m);
    let r = if OP == INC { a.wrapping_add(1) } else { a.wrapping_sub(1) };
    cx.c.set_reg::<W>(op.m, r & wmask(W));
    Flow::Next
}

/// `dec reg; jnz rel` fused: `op.m` is the register, `op.aux` the DEC's length, `op.len`
/// both lengths, `op.imm`/`op.osz` the JNZ's displacement and operand size. The DEC retires
/// here (counted in `icount`); the step loop counts the JNZ. A JNZ target past the CS limit
/// faults at the JNZ with the DEC done.
pub fn dec_jnz<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let a = cx.c.reg::<W>(op.m);
    let r = a.wrapping_sub(1) & wmask(W);
    cx.c.flags.set_incdec(Kind::Sub, W, a, r);
    cx.c.set_reg::<W>(op.m, r);
    cx.icount += 1;
    if r == 0 {
        return Flow::Next;
    }
    let mask = if op.osz == 2 { 0xFFFF } else { 0xFFFF_FFFF };
    let t = cx.c.eip.wrapping_add(op.len as u32).wrapping_add(op.imm) & mask;
    if t > cx.c.segs[crate::cpu::CS as usize].limit {
        cx.c.eip = cx.c.eip.wrapping_add(op.aux as u32);
        return Flow::Fault(crate::interrupt::GP);
    }
    cx.c.eip = t;
    Flow::Jump
}

/// XADD r/m, reg.
pub fn xadd<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let b = cx.c.reg::<W>(op.r);
    if MEM {
        let l = lin!(cx, op, W);
        let a = cx.rd::<W>(l);
        let r = alu::<ADD, W>(&mut cx.c.flags, a, b);
        cx.wr::<W>(l, r);
        cx.c.set_reg::<W>(op.r, a);
    } else {
        let a = cx.c.reg::<W>(op.m);
        let r = alu::<ADD, W>(&mut cx.c.flags, a, b);
        cx.c.set_reg::<W>(op.r, a);
        cx.c.set_reg::<W>(op.m, r);
    }
    Flow::Next
}

/// CMPXCHG r/m, reg: compares the accumulator with r/m (flags as CMP); equal: r/m = reg,
/// else accumulator = r/m. A memory destination is always written (486+ behaviour).
pub fn cmpxchg<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let acc = cx.c.reg::<W>(EAX);
    let src = cx.c.reg::<W>(op.r);
    if MEM {
        let l = lin!(cx, op, W);
        let d = cx.rd::<W>(l);
        alu::<CMP, W>(&mut cx.c.flags, acc, d);
        if acc == d {
            cx.wr::<W>(l, src);
        } else {
            cx.wr::<W>(l, d);
            cx.c.set_reg::<W>(EAX, d);
        }
    } else {
        let d = cx.c.reg::<W>(op.m);
        alu::<CMP, W>(&mut cx.c.flags, acc, d);
        if acc == d {
            cx.c.set_reg::<W>(op.m, src);
        } else {
            cx.c.set_reg::<W>(EAX, d);
        }
    }
    Flow::Next
}

/// CMPXCHG8B m64.
pub fn cmpxchg8b(cx: &mut Ctx, op: &Op) -> Flow {
    let off = cx.ea(op);
    let Some(l) = cx.seg_lin_n(op.seg, off, 8) else { return crate::operand::seg_fault(op.seg) };
    let lo = cx.rd::<4>(l);
    let hi = cx.rd::<4>(l.wrapping_add(4));
    let (eax, edx) = (cx.c.regs[EAX as usize], cx.c.regs[EDX as usize]);
    if lo == eax && hi == edx {
        let (ebx, ecx) = (cx.c.regs[EBX as usize], cx.c.regs[ECX as usize]);
        cx.wr::<4>(l, ebx);
        cx.wr::<4>(l.wrapping_add(4), ecx);
        cx.c.flags.set_some(ZF, ZF);
    } else {
        cx.wr::<4>(l, lo);
        cx.wr::<4>(l.wrapping_add(4), hi);
        cx.c.regs[EAX as usize] = lo;
        cx.c.regs[EDX as usize] = hi;
        cx.c.flags.set_some(ZF, 0);
    }
    Flow::Next
}

/// #UD (used for encodings that are invalid in real mode).
pub fn ud(_cx: &mut Ctx, _op: &Op) -> Flow {
    Flow::Fault(UD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use picoqemu_core::flags::{AF, CF, OF, PF, SF};

    #[test]
    fn alu_ops_and_flags() {
        let mut f = Flags::default();
        assert_eq!(alu::<ADD, 1>(&mut f, 0xFF, 1), 0);
        assert_eq!(f.get() & 0x8D5, CF | ZF | AF | PF);
        assert_eq!(alu::<ADC, 1>(&mut f, 0x7F, 0), 0x80);
        assert_eq!(f.get() & 0x8D5, OF | SF | AF);
        assert_eq!(alu::<SBB, 2>(&mut f, 0, 0), 0);
        assert_eq!(alu::<SUB, 4>(&mut f, 1, 2), 0xFFFF_FFFF);
        assert!(f.cf() && f.sf());
        assert_eq!(alu::<XOR, 2>(&mut f, 0xFFFF, 0xFFFF), 0);
        assert!(f.zf() && !f.cf());
    }

    #[test]
    fn add_mem_reg_and_cmp_do_not_mix_up() {
        // add [bx+2], ax ; cmp ax, [bx+2] ; hlt
        let mut t = T::new(&[0x01, 0x47, 0x02, 0x3B, 0x47, 0x02, 0xF4]);
        t.cpu.gpr[0] = 0x1234;
        t.cpu.gpr[3] = 0x300;
        t.poke(0x302, &[0x11, 0x11]);
        let s = t.run();
        assert_eq!(t.peek16(0x302), 0x2345);
        assert!(s.st.eflags & CF != 0); // 0x1234 < 0x2345
    }

    #[test]
    fn inc_keeps_carry_neg_sets_it() {
        // stc ; inc al ; neg bl ; hlt
        let mut t = T::new(&[0xF9, 0xFE, 0xC0, 0xF6, 0xDB, 0xF4]);
        t.cpu.gpr[0] = 0x7F;
        t.cpu.gpr[3] = 0x0;
        let s = t.run();
        assert_eq!(s.st.gpr[0], 0x80);
        assert_eq!(s.st.eflags & CF, 0); // NEG 0 clears CF
        let mut t = T::new(&[0xF9, 0xFE, 0xC0, 0xF4]);
        t.cpu.gpr[0] = 0x7F;
        let s = t.run();
        assert_eq!(s.st.eflags & (CF | OF), CF | OF);
    }

    #[test]
    fn xadd_cmpxchg() {
        // xadd ax, bx ; cmpxchg cx, dx (ax != cx -> ax = cx) ; hlt
        let mut t = T::new(&[0x0F, 0xC1, 0xD8, 0x0F, 0xB1, 0xD1, 0xF4]);
        t.cpu.gpr[0] = 5;
        t.cpu.gpr[3] = 7;
        t.cpu.gpr[1] = 9;
        let s = t.run();
        assert_eq!(s.st.gpr[0], 9);
        assert_eq!(s.st.gpr[3], 5);
        assert_eq!(s.st.eflags & ZF, 0);
    }
}
