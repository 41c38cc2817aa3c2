//! Bit-level logic beyond the ALU family: BT/BTS/BTR/BTC (register, immediate and memory
//! bit-string forms), BSF/BSR, SETcc and BSWAP. (AND/OR/XOR/TEST/NOT share the ALU handlers
//! in `arith.rs`.)
//!
//! Undefined flags follow a modern Intel core where known: BT* change only CF; BSF/BSR set ZF
//! and leave the destination unchanged for a zero source.
use picoqemu_core::flags::{CF, ZF};

use crate::op::{Flow, Op};
use crate::operand::{lin, seg_fault, Ctx};

pub const BT: u8 = 0;
pub const BTS: u8 = 1;
pub const BTR: u8 = 2;
pub const BTC: u8 = 3;

#[inline(always)]
fn bt_apply<const OP: u8>(v: u32, bit: u32) -> u32 {
    match OP {
        BTS => v | (1 << bit),
        BTR => v & !(1 << bit),
        BTC => v ^ (1 << bit),
        _ => v,
    }
}

/// BT* r/m, reg (`IMM = false`) or r/m, imm8 (`IMM = true`). With a register bit offset and
/// a memory operand the offset selects any bit of the bit string (signed).
pub fn bt<const OP: u8, const W: u8, const MEM: bool, const IMM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let bits = W as u32 * 8;
    let off = if IMM { op.imm } else { cx.c.reg::<W>(op.r) };
    let bit = off & (bits - 1);
    if MEM {
        let mut ea = cx.ea(op);
        if !IMM {
            let soff = if W == 2 { off as u16 as i16 as i32 } else { off as i32 };
            let delta = (soff >> if W == 2 { 4 } else { 5 }) * W as i32;
            ea = ea.wrapping_add(delta as u32) & op.amask;
        }
        let Some(l) = cx.seg_lin::<W>(op.seg, ea) else { return seg_fault(op.seg) };
        let v = cx.rd::<W>(l);
        cx.c.flags.set_some(CF, (v >> bit) & 1);
        if OP != BT {
            cx.wr::<W>(l, bt_apply::<OP>(v, bit));
        }
    } else {
        let v = cx.c.reg::<W>(op.m);
        cx.c.flags.set_some(CF, (v >> bit) & 1);
        if OP != BT {
            cx.c.set_reg::<W>(op.m, bt_apply::<OP>(v, bit));
        }
    }
    Flow::Next
}

/// BSF (`REV = false`) / BSR (`REV = true`) reg, r/m.
pub fn bsf<const REV: bool, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = if MEM {
        let l = lin!(cx, op, W);
        cx.rd::<W>(l)
    } else {
        cx.c.reg::<W>(op.m)
    };
    if v == 0 {
        cx.c.flags.set_some(ZF, ZF);
    } else {
        let idx = if REV { 31 - v.leading_zeros() } else { v.trailing_zeros() };
        cx.c.set_reg::<W>(op.r, idx);
        cx.c.flags.set_some(ZF, 0);
    }
    Flow::Next
}

/// SETcc r/m8 (condition in `op.aux`).
pub fn setcc<const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = cx.c.flags.cond(op.aux) as u32;
    if MEM {
        let l = lin!(cx, op, 1);
        cx.wr::<1>(l, v);
    } else {
        cx.c.set_r8(op.m, v);
    }
    Flow::Next
}

/// BSWAP r32; with a 16-bit operand the register's low word becomes 0 (as Intel cores do).
pub fn bswap(cx: &mut Ctx, op: &Op) -> Flow {
    if op.osz == 4 {
        cx.c.regs[op.m as usize] = cx.c.regs[op.m as usize].swap_bytes();
    } else {
        cx.c.set_r16(op.m, 0);
    }
    Flow::Next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn bt_family_on_registers() {
        // bts ax, 3 ; btr bx, cx (cx=17 -> bit 1) ; hlt
        let mut t = T::new(&[0x0F, 0xBA, 0xE8, 0x03, 0x0F, 0xB3, 0xCB, 0xF4]);
        t.cpu.gpr[3] = 0xFFFF;
        t.cpu.gpr[1] = 17;
        let s = t.run();
        assert_eq!(s.st.gpr[0], 8);
        assert_eq!(s.st.gpr[3], 0xFFFD);
        assert_eq!(s.st.eflags & CF, CF);
    }

    #[test]
    fn bt_memory_bit_string_negative_offset() {
        // bt [0x304], ax with ax = -1 -> byte 0x303 bit 7 (word at 0x302, bit 15)
        let mut t = T::new(&[0x0F, 0xA3, 0x06, 0x04, 0x03, 0xF4]);
        t.cpu.gpr[0] = 0xFFFF;
        t.poke(0x303, &[0x80]);
        let s = t.run();
        assert_eq!(s.st.eflags & CF, CF);
    }

    #[test]
    fn bsf_bsr_and_setcc() {
        // bsf ax, bx ; bsr cx, bx ; setz dl ; hlt
        let mut t = T::new(&[0x0F, 0xBC, 0xC3, 0x0F, 0xBD, 0xCB, 0x0F, 0x94, 0xC2, 0xF4]);
        t.cpu.gpr[3] = 0x0110;
        let s = t.run();
        assert_eq!(s.st.gpr[0], 4);
        assert_eq!(s.st.gpr[1], 8);
        assert_eq!(s.st.gpr[2], 0);
    }
}
