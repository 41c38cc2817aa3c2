//! Control transfer: JMP (near relative, near indirect, far direct, far indirect), Jcc,
//! CALL and RET (near and far, with the RET imm16 stack release), LOOP/LOOPE/LOOPNE,
//! JCXZ/JECXZ, and BOUND.
//!
//! Near relative targets are stored as a displacement from the next instruction (so a cached
//! instruction is independent of the CS:IP it was reached through) and truncated to 16 bits
//! for a 16-bit operand size. A target past the CS limit raises #GP at the branch.
use crate::cpu::{CS, ECX};
use crate::interrupt::{next_ip, BR, GP, SSF};
use crate::op::{Flow, Op};
use crate::operand::{lin, seg_fault, Ctx};

#[inline(always)]
fn osz_mask(w: u8) -> u32 {
    if w == 2 {
        0xFFFF
    } else {
        0xFFFF_FFFF
    }
}

/// Sets EIP to `target` after the CS limit check.
#[inline(always)]
fn go(cx: &mut Ctx, target: u32) -> Flow {
    if target > cx.c.segs[CS as usize].limit {
        Flow::Fault(GP)
    } else {
        cx.c.eip = target;
        Flow::Jump
    }
}

#[inline(always)]
fn rel_target(cx: &Ctx, op: &Op) -> u32 {
    cx.c.eip.wrapping_add(op.len as u32).wrapping_add(op.imm) & osz_mask(op.osz)
}

/// JMP rel8/rel16/rel32.
pub fn jmp_rel(cx: &mut Ctx, op: &Op) -> Flow {
    let t = rel_target(cx, op);
    go(cx, t)
}

/// Jcc rel with the condition as a const parameter.
pub fn jcc<const CC: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    if cx.c.flags.cond(CC) {
        let t = rel_target(cx, op);
        go(cx, t)
    } else {
        Flow::Next
    }
}

/// LOOP (`KIND` 0), LOOPE (1), LOOPNE (2) and JCXZ (3); `A32` selects ECX over CX.
pub fn loop_<const KIND: u8, const A32: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let cnt = if KIND == 3 {
        if A32 {
            cx.c.regs[ECX as usize]
        } else {
            cx.c.r16(ECX)
        }
    } else if A32 {
        let v = cx.c.regs[ECX as usize].wrapping_sub(1);
        cx.c.regs[ECX as usize] = v;
        v
    } else {
        let v = cx.c.r16(ECX).wrapping_sub(1) & 0xFFFF;
        cx.c.set_r16(ECX, v);
        v
    };
    let take = match KIND {
        0 => cnt != 0,
        1 => cnt != 0 && cx.c.flags.zf(),
        2 => cnt != 0 && !cx.c.flags.zf(),
        _ => cnt == 0,
    };
    if take {
        let t = rel_target(cx, op);
        go(cx, t)
    } else {
        Flow::Next
    }
}

/// JMP r/m (near indirect).
pub fn jmp_rm<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let t = if MEM {
        let l = lin!(cx, op, W);
        cx.rd::<W>(l)
    } else {
        cx.c.reg::<W>(op.m)
    };
    go(cx, t)
}

/// CALL rel.
pub fn call_rel<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let t = rel_target(cx, op);
    let ret = next_ip(cx, op);
    if t > cx.c.segs[CS as usize].limit {
        return Flow::Fault(GP);
    }
    if !cx.push::<W>(ret) {
        return Flow::Fault(SSF);
    }
    cx.c.eip = t;
    Flow::Jump
}

/// CALL r/m (near indirect).
pub fn call_rm<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let t = if MEM {
        let l = lin!(cx, op, W);
        cx.rd::<W>(l)
    } else {
        cx.c.reg::<W>(op.m)
    };
    let ret = next_ip(cx, op);
    if t > cx.c.segs[CS as usize].limit {
        return Flow::Fault(GP);
    }
    if !cx.push::<W>(ret) {
        return Flow::Fault(SSF);
    }
    cx.c.eip = t;
    Flow::Jump
}

/// RET / RET imm16 (`op.imm`).
pub fn ret<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let sp0 = cx.c.regs[4];
    let Some(t) = cx.pop::<W>() else { return Flow::Fault(SSF) };
    if t > cx.c.segs[CS as usize].limit {
        cx.c.regs[4] = sp0;
        return Flow::Fault(GP);
    }
    let sp = cx.c.regs[4].wrapping_add(op.imm) & 0xFFFF;
    cx.c.set_r16(4, sp);
    cx.c.eip = t;
    Flow::Jump
}

/// RETF / RETF imm16.
pub fn retf<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let sp0 = cx.c.regs[4];
    let (Some(t), Some(cs)) = (cx.pop::<W>(), cx.pop::<W>()) else {
        cx.c.regs[4] = sp0;
        return Flow::Fault(SSF);
    };
    if t > cx.c.segs[CS as usize].limit {
        cx.c.regs[4] = sp0;
        return Flow::Fault(GP);
    }
    let sp = cx.c.regs[4].wrapping_add(op.imm) & 0xFFFF;
    cx.c.set_r16(4, sp);
    cx.c.load_seg(CS, cs as u16);
    cx.c.eip = t;
    Flow::Jump
}

fn far_transfer<const W: u8>(cx: &mut Ctx, op: &Op, sel: u32, off: u32, call: bool) -> Flow {
    if off > cx.c.segs[CS as usize].limit {
        return Flow::Fault(GP);
    }
    if call {
        let sp0 = cx.c.regs[4];
        let cs = cx.c.segs[CS as usize].selector as u32;
        let ret = next_ip(cx, op);
        if !(cx.push::<W>(cs) && cx.push::<W>(ret)) {
            cx.c.regs[4] = sp0;
            return Flow::Fault(SSF);
        }
    }
    cx.c.load_seg(CS, sel as u16);
    cx.c.eip = off;
    Flow::Jump
}

/// JMP/CALL ptr16:16 / ptr16:32 (offset in `op.imm`, selector in `op.imm2`).
pub fn far_direct<const W: u8, const CALL: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    far_transfer::<W>(cx, op, op.imm2, op.imm, CALL)
}

/// JMP/CALL m16:16 / m16:32.
pub fn far_indirect<const W: u8, const CALL: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let off = cx.ea(op);
    let Some(l) = cx.seg_lin_n(op.seg, off, W as u32 + 2) else { return seg_fault(op.seg) };
    let o = cx.rd::<W>(l);
    let s = cx.rd::<2>(l.wrapping_add(W as u32));
    far_transfer::<W>(cx, op, s, o, CALL)
}

/// BOUND reg, m: #BR unless lower <= reg <= upper (signed).
pub fn bound<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let off = cx.ea(op);
    let Some(l) = cx.seg_lin_n(op.seg, off, 2 * W as u32) else { return seg_fault(op.seg) };
    let (lo, hi, v) = if W == 2 {
        (
            cx.rd::<2>(l) as u16 as i16 as i32,
            cx.rd::<2>(l.wrapping_add(2)) as u16 as i16 as i32,
            cx.c.r16(op.r) as u16 as i16 as i32,
        )
    } else {
        (cx.rd::<4>(l) as i32, cx.rd::<4>(l.wrapping_add(4)) as i32, cx.c.regs[op.r as usize] as i32)
    };
    if v < lo || v > hi {
        Flow::Fault(BR)
    } else {
        Flow::Next
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[test]
    fn call_ret_and_jcc() {
        // 0100: call 0x0108 ; hlt ; ... 0108: cmp ax, 1 ; jne 0x10f ; inc bx ; ret
        let code = [0xE8, 0x05, 0x00, 0xF4, 0x90, 0x90, 0x90, 0x90, 0x83, 0xF8, 0x01, 0x75, 0x01, 0x43, 0xC3];
        let mut t = T::new(&code);
        t.cpu.gpr[0] = 1;
        t.cpu.gpr[4] = 0x800;
        let s = t.run();
        assert_eq!(s.st.eip, 0x104);
        assert_eq!(s.st.gpr[3], 1);
        assert_eq!(s.st.gpr[4], 0x800);
    }

    #[test]
    fn loop_counts_cx() {
        // mov cx, 5 ; l: inc ax ; loop l ; hlt
        let mut t = T::new(&[0xB9, 0x05, 0x00, 0x40, 0xE2, 0xFD, 0xF4]);
        let s = t.run();
        assert_eq!(s.st.gpr[0], 5);
        assert_eq!(s.st.gpr[1], 0);
    }

    #[test]
    fn far_call_and_retf() {
        // call 0x2000:0x0010 ; hlt   ; at 2000:0010: retf
        let mut t = T::new(&[0x9A, 0x10, 0x00, 0x00, 0x20, 0xF4]);
        t.poke(0x20010, &[0xCB]);
        t.cpu.gpr[4] = 0x800;
        let s = t.run();
        assert_eq!(s.st.eip, 0x106);
        assert_eq!(s.st.segs[1].selector, 0);
    }

    #[test]
    fn bound_raises_br() {
        // bound ax, [0x300] with ax = 10, bounds [0, 5]
        let mut t = T::new(&[0x62, 0x06, 0x00, 0x03, 0xF4]);
        t.poke(0x300, &[0, 0, 5, 0]);
        t.poke(5 * 4, &[0x00, 0x06, 0, 0]);
        t.poke(0x600, &[0xF4]);
        t.cpu.gpr[0] = 10;
        t.cpu.gpr[4] = 0x800;
        let s = t.run();
        assert_eq!(s.st.eip, 0x601);
        assert_eq!(t.peek16(0x7FA), 0x100);
    }
}
