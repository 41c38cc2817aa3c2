//! Data transfer: MOV (all register/memory/immediate forms, segment registers), MOVZX,
//! MOVSX, XCHG, LEA, LDS/LES/LSS/LFS/LGS, XLAT, CBW/CWDE/CWD/CDQ, LAHF/SAHF and CMOVcc.
use picoqemu_core::flags::{AF, CF, FIXED, PF, SF, ZF};

use crate::cpu::{CS, EAX, EBX, EDX, SS};
use crate::interrupt::UD;
use crate::op::{Flow, Op};
use crate::operand::{lin, seg_fault, Ctx};

/// MOV r/m, reg.
pub fn mov_eg<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = cx.c.reg::<W>(op.r);
    if MEM {
        let l = lin!(cx, op, W);
        cx.wr::<W>(l, v);
    } else {
        cx.c.set_reg::<W>(op.m, v);
    }
    Flow::Next
}

/// MOV reg, m.
pub fn mov_gm<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let l = lin!(cx, op, W);
    let v = cx.rd::<W>(l);
    cx.c.set_reg::<W>(op.r, v);
    Flow::Next
}

/// MOV r/m, imm.
pub fn mov_ei<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if MEM {
        let l = lin!(cx, op, W);
        cx.wr::<W>(l, op.imm);
    } else {
        cx.c.set_reg::<W>(op.m, op.imm);
    }
    Flow::Next
}

/// MOVZX (`SIGN = false`) / MOVSX: `S`-byte source into an `op.osz`-byte register.
pub fn movx<const S: u8, const SIGN: bool, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = if MEM {
        let l = lin!(cx, op, S);
        cx.rd::<S>(l)
    } else {
        cx.c.reg::<S>(op.m)
    };
    let v = if SIGN {
        if S == 1 {
            v as u8 as i8 as i32 as u32
        } else {
            v as u16 as i16 as i32 as u32
        }
    } else {
        v
    };
    cx.c.set_reg_w(op.osz, op.r, v);
    Flow::Next
}

/// XCHG r/m, reg.
pub fn xchg<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let a = cx.c.reg::<W>(op.r);
    if MEM {
        let l = lin!(cx, op, W);
        let b = cx.rd::<W>(l);
        cx.wr::<W>(l, a);
        cx.c.set_reg::<W>(op.r, b);
    } else {
        let b = cx.c.reg::<W>(op.m);
        cx.c.set_reg::<W>(op.m, a);
        cx.c.set_reg::<W>(op.r, b);
    }
    Flow::Next
}

/// LEA reg, m (offset truncated to the operand size).
pub fn lea(cx: &mut Ctx, op: &Op) -> Flow {
    let ea = cx.ea(op);
    cx.c.set_reg_w(op.osz, op.r, ea);
    Flow::Next
}

/// LDS/LES/LSS/LFS/LGS reg, m16:W (segment register in `op.aux`).
pub fn lxs<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let off = cx.ea(op);
    let Some(l) = cx.seg_lin_n(op.seg, off, W as u32 + 2) else { return seg_fault(op.seg) };
    let o = cx.rd::<W>(l);
    let s = cx.rd::<2>(l.wrapping_add(W as u32));
    cx.c.set_reg::<W>(op.r, o);
    cx.c.load_seg(op.aux, s as u16);
    if op.aux == SS {
        cx.c.inhibit = true;
    }
    Flow::Next
}

/// MOV sreg (`op.r`), r/m16. Loading CS is #UD; loading SS holds off debug traps.
pub fn mov_sreg<const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if op.r == CS || op.r > 5 {
        return Flow::Fault(UD);
    }
    let v = if MEM {
        let l = lin!(cx, op, 2);
        cx.rd::<2>(l)
    } else {
        cx.c.r16(op.m)
    };
    cx.c.load_seg(op.r, v as u16);
    if op.r == SS {
        cx.c.inhibit = true;
        cx.c.irq_shadow = true;
        cx.irq_window_changed();
    }
    Flow::Next
}

/// MOV r/m, sreg: a register destination gets the selector zero-extended to the operand
/// size; a memory destination always gets 16 bits.
pub fn mov_from_sreg<const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if op.r > 5 {
        return Flow::Fault(UD);
    }
    let v = cx.c.segs[op.r as usize].selector as u32;
    if MEM {
        let l = lin!(cx, op, 2);
        cx.wr::<2>(l, v);
    } else {
        cx.c.set_reg_w(op.osz, op.m, v);
    }
    Flow::Next
}

/// XLAT: AL = [seg:(E)BX + AL].
pub fn xlat(cx: &mut Ctx, op: &Op) -> Flow {
    let off = cx.c.regs[EBX as usize].wrapping_add(cx.c.r8(0)) & op.amask;
    let Some(l) = cx.seg_lin::<1>(op.seg, off) else { return seg_fault(op.seg) };
    let v = cx.rd::<1>(l);
    cx.c.set_r8(0, v);
    Flow::Next
}

/// CBW (`op.osz` = 2) / CWDE (4).
pub fn cbw(cx: &mut Ctx, op: &Op) -> Flow {
    if op.osz == 2 {
        let v = cx.c.r8(0) as u8 as i8 as i16 as u16 as u32;
        cx.c.set_r16(EAX, v);
    } else {
        cx.c.regs[EAX as usize] = cx.c.r16(EAX) as u16 as i16 as i32 as u32;
    }
    Flow::Next
}

/// CWD (`op.osz` = 2) / CDQ (4).
pub fn cwd(cx: &mut Ctx, op: &Op) -> Flow {
    if op.osz == 2 {
        let v = if cx.c.r16(EAX) & 0x8000 != 0 { 0xFFFF } else { 0 };
        cx.c.set_r16(EDX, v);
    } else {
        cx.c.regs[EDX as usize] = if cx.c.regs[EAX as usize] & 0x8000_0000 != 0 { u32::MAX } else { 0 };
    }
    Flow::Next
}

/// LAHF: AH = SF ZF 0 AF 0 PF 1 CF.
pub fn lahf(cx: &mut Ctx, _op: &Op) -> Flow {
    let f = cx.c.flags.get() & (SF | ZF | AF | PF | CF);
    cx.c.set_r8(4, f | FIXED);
    Flow::Next
}

/// SAHF: SF ZF AF PF CF = AH.
pub fn sahf(cx: &mut Ctx, _op: &Op) -> Flow {
    let ah = cx.c.r8(4);
    let m = SF | ZF | AF | PF | CF;
    cx.c.flags.set_some(m, ah);
    Flow::Next
}

/// CMOVcc reg, r/m (condition in `op.aux`); the source is always read.
pub fn cmov<const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = if MEM {
        let l = lin!(cx, op, W);
        cx.rd::<W>(l)
    } else {
        cx.c.reg::<W>(op.m)
    };
    if cx.c.flags.cond(op.aux) {
        cx.c.set_reg::<W>(op.r, v);
    }
    Flow::Next
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[test]
    fn movs_lea_xchg() {
        // mov ax, [bx+si+2] ; lea cx, [bx+si-1] ; xchg ax, dx ; movsx ebx, dl ; hlt
        let code = [0x8B, 0x40, 0x02, 0x8D, 0x48, 0xFF, 0x92, 0x66, 0x0F, 0xBE, 0xDA, 0xF4];
        let mut t = T::new(&code);
        t.cpu.gpr[3] = 0x300;
        t.cpu.gpr[6] = 0x10;
        t.poke(0x312, &[0x80, 0x7F]);
        let s = t.run();
        assert_eq!(s.st.gpr[2] & 0xFFFF, 0x7F80);
        assert_eq!(s.st.gpr[1], 0x30F);
        assert_eq!(s.st.gpr[3], 0xFFFF_FF80);
    }

    #[test]
    fn segment_loads() {
        // mov ax, 0x1234 ; mov es, ax ; les di, [0x300] ; mov bx, es ; hlt
        let code = [0xB8, 0x34, 0x12, 0x8E, 0xC0, 0xC4, 0x3E, 0x00, 0x03, 0x8C, 0xC3, 0xF4];
        let mut t = T::new(&code);
        t.poke(0x300, &[0x78, 0x56, 0xCD, 0xAB]);
        let s = t.run();
        assert_eq!(s.st.gpr[7], 0x5678);
        assert_eq!(s.st.gpr[3], 0xABCD);
        assert_eq!(s.st.segs[0].base, 0xABCD0);
    }

    #[test]
    fn lahf_sahf_cbw_cwd_xlat() {
        // stc ; lahf ; mov al, 0x80 ; cbw ; cwd ; hlt
        let mut t = T::new(&[0xF9, 0x9F, 0xB0, 0x80, 0x98, 0x99, 0xF4]);
        let s = t.run();
        assert_eq!(s.st.gpr[0] & 0xFFFF, 0xFF80);
        assert_eq!(s.st.gpr[2] & 0xFFFF, 0xFFFF);
        // xlat: bx = 0x300, al = 2
        let mut t = T::new(&[0xD7, 0xF4]);
        t.cpu.gpr[3] = 0x300;
        t.cpu.gpr[0] = 2;
        t.poke(0x302, &[0x99]);
        assert_eq!(t.run().st.gpr[0], 0x99);
    }

    #[test]
    fn mov_cs_is_ud() {
        let mut t = T::new(&[0x8E, 0xC8, 0xF4]);
        t.poke(6 * 4, &[0x00, 0x05, 0, 0]);
        t.poke(0x500, &[0xF4]);
        t.cpu.gpr[4] = 0x800;
        assert_eq!(t.run().st.eip, 0x501);
    }
}
