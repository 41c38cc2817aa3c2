//! Multiplication and division: MUL, IMUL (one, two and three operands), DIV and IDIV of
//! every width, with #DE for a zero divisor or a quotient that does not fit.
//!
//! CF = OF = "the upper half is significant"; SF/ZF/PF (undefined) follow the low half of the
//! result and AF is cleared; DIV/IDIV leave the (undefined) flags unchanged.
use picoqemu_core::flags::{AF, CF, OF};

use crate::cpu::{EAX, EDX};
use crate::flags::wmask;
use crate::interrupt::DE;
use crate::op::{Flow, Op};
use crate::operand::{lin, Ctx};

pub const MUL: u8 = 4;
pub const IMUL: u8 = 5;
pub const DIV: u8 = 6;
pub const IDIV: u8 = 7;

#[inline(always)]
fn sext<const W: u8>(v: u32) -> i64 {
    match W {
        1 => v as u8 as i8 as i64,
        2 => v as u16 as i16 as i64,
        _ => v as i32 as i64,
    }
}

/// MUL/IMUL/DIV/IDIV r/m (group 3 /4../7) with the implicit accumulator.
pub fn muldiv<const OP: u8, const W: u8, const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let src = if MEM {
        let l = lin!(cx, op, W);
        cx.rd::<W>(l)
    } else {
        cx.c.reg::<W>(op.m)
    };
    let bits = W as u32 * 8;
    let m = wmask(W) as u64;
    let acc = cx.c.reg::<W>(EAX) as u64;
    match OP {
        MUL | IMUL => {
            let (lo, hi, ovf) = if OP == MUL {
                let p = acc * src as u64;
                (p & m, (p >> bits) & m, (p >> bits) != 0)
            } else {
                let p = sext::<W>(acc as u32) * sext::<W>(src);
                let lo = p as u64 & m;
                (lo, (p as u64 >> bits) & m, sext::<W>(lo as u32) != p)
            };
            if W == 1 {
                cx.c.set_r16(EAX, (hi << 8 | lo) as u32);
            } else {
                cx.c.set_reg::<W>(EAX, lo as u32);
                cx.c.set_reg::<W>(EDX, hi as u32);
            }
            let f = if ovf { CF | OF } else { 0 };
            cx.c.flags.set_szp_with(W, lo as u32, CF | OF | AF, f);
        }
        DIV => {
            let dividend =
                if W == 1 { cx.c.r16(EAX) as u64 } else { (cx.c.reg::<W>(EDX) as u64) << bits | acc };
            if src == 0 {
                return Flow::Fault(DE);
            }
            let q = dividend / src as u64;
            let r = dividend % src as u64;
            if q > m {
                return Flow::Fault(DE);
            }
            if W == 1 {
                cx.c.set_r16(EAX, (r << 8 | q) as u32);
            } else {
                cx.c.set_reg::<W>(EAX, q as u32);
                cx.c.set_reg::<W>(EDX, r as u32);
            }
        }
        _ => {
            let dividend: i64 = if W == 1 {
                cx.c.r16(EAX) as u16 as i16 as i64
            } else if W == 2 {
                ((cx.c.r16(EDX) << 16) | acc as u32) as i32 as i64
            } else {
                ((cx.c.regs[EDX as usize] as u64) << 32 | acc) as i64
            };
            let d = sext::<W>(src);
            if d == 0 {
                return Flow::Fault(DE);
            }
            // i64::MIN / -1 overflows: that quotient never fits anyway.
            let Some(q) = dividend.checked_div(d) else { return Flow::Fault(DE) };
            let r = dividend.wrapping_rem(d);
            let (min, max) = (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1);
            if q < min || q > max {
                return Flow::Fault(DE);
            }
            if W == 1 {
                cx.c.set_r16(EAX, ((r as u32 & 0xFF) << 8) | (q as u32 & 0xFF));
            } else {
                cx.c.set_reg::<W>(EAX, q as u32);
                cx.c.set_reg::<W>(EDX, r as u32);
            }
        }
    }
    Flow::Next
}

/// IMUL reg, r/m (`IMM = false`) and IMUL reg, r/m, imm (`IMM = true`, imm in `op.imm`).
pub fn imul2<const W: u8, const MEM: bool, const IMM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let rm = if MEM {
        let l = lin!(cx, op, W);
        cx.rd::<W>(l)
    } else {
        cx.c.reg::<W>(op.m)
    };
    let (a, b) = if IMM { (rm, op.imm) } else { (cx.c.reg::<W>(op.r), rm) };
    let p = sext::<W>(a) * sext::<W>(b);
    let lo = p as u32 & wmask(W);
    let ovf = sext::<W>(lo) != p;
    cx.c.set_reg::<W>(op.r, lo);
    cx.c.flags.set_szp_with(W, lo, CF | OF | AF, if ovf { CF | OF } else { 0 });
    Flow::Next
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use picoqemu_core::flags::{CF, OF};
    use picoqemu_core::StopReason;

    #[test]
    fn mul_and_div_bytes() {
        // mul bl ; div cl ; hlt   (AL=200, BL=3 -> AX=600; 600/7 = 85 r 5)
        let mut t = T::new(&[0xF6, 0xE3, 0xF6, 0xF1, 0xF4]);
        t.cpu.gpr[0] = 200;
        t.cpu.gpr[3] = 3;
        t.cpu.gpr[1] = 7;
        let s = t.run();
        assert_eq!(s.st.gpr[0] & 0xFFFF, (5 << 8) | 85);
    }

    #[test]
    fn imul_overflow_flags_and_three_operand() {
        // imul ax, bx, 0x100 ; hlt   (BX = 0x200 -> 0x20000 overflows)
        let mut t = T::new(&[0x69, 0xC3, 0x00, 0x01, 0xF4]);
        t.cpu.gpr[3] = 0x200;
        let s = t.run();
        assert_eq!(s.st.gpr[0] & 0xFFFF, 0);
        assert_eq!(s.st.eflags & (CF | OF), CF | OF);
    }

    #[test]
    fn idiv_limits_and_divide_error() {
        // idiv bl: AX = -256, BL = 2 -> -128 fits (no fault on a 386+)
        let mut t = T::new(&[0xF6, 0xFB, 0xF4]);
        t.cpu.gpr[0] = 0xFF00;
        t.cpu.gpr[3] = 2;
        let s = t.run();
        assert_eq!(s.st.gpr[0] & 0xFF, 0x80);
        // AX = 256 / 2 = 128 does not fit: #DE through IVT[0] at 0000:0400
        let mut t = T::new(&[0xF6, 0xFB, 0xF4]);
        t.cpu.gpr[0] = 0x0100;
        t.cpu.gpr[3] = 2;
        t.cpu.gpr[4] = 0x800;
        t.poke(0, &[0x00, 0x04, 0, 0]);
        t.poke(0x400, &[0xF4]);
        let s = t.run();
        assert_eq!(s.stop, StopReason::Halted);
        assert_eq!(s.st.eip, 0x401);
    }

    #[test]
    fn div32() {
        // 66 F7 F3: div ebx
        let mut t = T::new(&[0x66, 0xF7, 0xF3, 0xF4]);
        t.cpu.gpr[2] = 1;
        t.cpu.gpr[0] = 0;
        t.cpu.gpr[3] = 0x10;
        let s = t.run();
        assert_eq!(s.st.gpr[0], 0x1000_0000);
        assert_eq!(s.st.gpr[2], 0);
    }
}
