//! Shifts and rotates: ROL ROR RCL RCR SHL/SAL SHR SAR by 1, CL or imm8, and SHLD/SHRD.
//!
//! The count is masked to 5 bits (386+); a masked count of 0 changes nothing, not even flags.
//! Flags a count other than 1 leaves undefined are computed as the count-1 formulas (what
//! Intel cores do): OF = MSB(result) ^ CF for ROL/RCL/SHL, MSB ^ MSB-1 of the result for
//! ROR/RCR, the original MSB for SHR, 0 for SAR; AF is cleared by shifts.
use picoqemu_core::flags::{AF, CF, OF};

use crate::cpu::ECX;
use crate::flags::{wmask, Flags};
use crate::op::{Flow, Op};
use crate::operand::{lin, Ctx};

pub const ROL: u8 = 0;
pub const ROR: u8 = 1;
pub const RCL: u8 = 2;
pub const RCR: u8 = 3;
pub const SHL: u8 = 4;
pub const SHR: u8 = 5;
pub const SAL: u8 = 6;
pub const SAR: u8 = 7;

/// `v` (a `W`-byte value) rotated left by `n` (< 8 * W) as one native rotate of that width.
#[inline(always)]
fn rotl<const W: u8>(v: u32, n: u32) -> u32 {
    match W {
        1 => (v as u8).rotate_left(n) as u32,
        2 => (v as u16).rotate_left(n) as u32,
        _ => v.rotate_left(n),
    }
}

/// Shifts `v` (a `W`-byte value) by `count` (1..=31) and sets the flags.
#[inline(always)]
pub fn shift_val<const OP: u8, const W: u8>(f: &mut Flags, v: u32, count: u32) -> u32 {
    let bits = W as u32 * 8;
    let m = wmask(W);
    let msb = |x: u32| (x >> (bits - 1)) & 1;
    match OP {
        ROL => {
            let n = count % bits;
            let r = rotl::<W>(v & m, n);
            let cf = r & 1;
            f.set_some(CF | OF, cf | ((msb(r) ^ cf) << 11));
            r
        }
        ROR => {
            let n = count % bits;
            let r = rotl::<W>(v & m, (bits - n) % bits);
            let cf = msb(r);
            let of = cf ^ ((r >> (bits - 2)) & 1);
            f.set_some(CF | OF, cf | (of << 11));
            r
        }
        RCL => {
            let n = count % (bits + 1);
            let cin = f.cf() as u64;
            let wide = ((cin << bits) | v as u64) as u128;
            let width = bits + 1;
            let rot =
                if n == 0 { wide } else { ((wide << n) | (wide >> (width - n))) & ((1u128 << width) - 1) };
            let r = (rot as u64 & m as u64) as u32;
            let cf = ((rot >> bits) & 1) as u32;
            f.set_some(CF | OF, cf | ((msb(r) ^ cf) << 11));
            r
        }
        RCR => {
            let n = count % (bits + 1);
            let cin = f.cf() as u64;
            let wide = ((cin << bits) | v as u64) as u128;
            let width = bits + 1;
            let rot =
                if n == 0 { wide } else { ((wide >> n) | (wide << (width - n))) & ((1u128 << width) - 1) };
            let r = (rot as u64 & m as u64) as u32;
            let cf = ((rot >> bits) & 1) as u32;
            let of = msb(r) ^ ((r >> (bits - 2)) & 1);
            f.set_some(CF | OF, cf | (of << 11));
            r
        }
        SHL | SAL => {
            let wide = (v as u64) << count;
            let r = (wide as u32) & m;
            let cf = ((wide >> bits) & 1) as u32;
            f.set_szp_with(W, r, CF | OF | AF, cf | ((msb(r) ^ cf) << 11));
            r
        }
        SHR => {
            let r = if count >= bits { 0 } else { v >> count };
            let cf = if count > bits { 0 } else { (v >> (count - 1)) & 1 };
            f.set_szp_with(W, r, CF | OF | AF, cf | (msb(v) << 11));
            r
        }
        _ => {
            let sv = ((v << (32 - bits)) as i32) >> (32 - bits);
            let r = (sv >> count) as u32 & m;
            let cf = ((sv >> (count - 1)) & 1) as u32;
            f.set_szp_with(W, r, CF | OF | AF, cf);
            r
        }
    }
}

/// Shift/rotate r/m by `op.imm` (`CL = false`) or by CL.
pub fn shift<const OP: u8, const W: u8, const MEM: bool, const CL: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let count = if CL { cx.c.regs[ECX as usize] & 0x1F } else { op.imm & 0x1F };
    if MEM {
        let l = lin!(cx, op, W);
        let v = cx.rd::<W>(l);
        if count != 0 {
            let r = shift_val::<OP, W>(&mut cx.c.flags, v, count);
            cx.wr::<W>(l, r);
        }
    } else if count != 0 {
        let v = cx.c.reg::<W>(op.m);
        let r = shift_val::<OP, W>(&mut cx.c.flags, v, count);
        cx.c.set_reg::<W>(op.m, r);
    }
    Flow::Next
}

/// SHLD/SHRD of a `W`-byte destination `d` with source `s` by `c` (1..=31): (result, CF, OF).
fn shd_val<const LEFT: bool, const W: u8>(d: u32, s: u32, c: u32) -> (u32, u32, u32) {
    if W == 2 {
        if LEFT {
            let t = (d << 16) | s;
            let mut r = t.wrapping_shl(c);
            if c > 16 {
                r |= d << (c - 16);
            }
            let r16 = r >> 16 & 0xFFFF;
            let cf = (t >> (32 - c)) & 1;
            (r16, cf, cf ^ (r16 >> 15))
        } else {
            let t = (s << 16) | d;
            let mut r = t >> c;
            if c > 16 {
                r |= d << (32 - c);
            }
            let r16 = r & 0xFFFF;
            let cf = (d >> (c - 1)) & 1;
            (r16, cf, (((r16 << 1) ^ r16) >> 15) & 1)
        }
    } else if LEFT {
        let r = (d << c) | (s >> (32 - c));
        let cf = (d >> (32 - c)) & 1;
        (r, cf, cf ^ (r >> 31))
    } else {
        let r = (s << (32 - c)) | (d >> c);
        let cf = (d >> (c - 1)) & 1;
        (r, cf, ((r << 1) ^ r) >> 31)
    }
}

/// SHLD/SHRD r/m, reg, imm8/CL.
pub fn shd<const LEFT: bool, const W: u8, const MEM: bool, const CL: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let c = if CL { cx.c.regs[ECX as usize] & 0x1F } else { op.imm & 0x1F };
    let s = cx.c.reg::<W>(op.r);
    if MEM {
        let l = lin!(cx, op, W);
        let d = cx.rd::<W>(l);
        if c != 0 {
            let (r, cf, of) = shd_val::<LEFT, W>(d, s, c);
            cx.c.flags.set_szp_with(W, r, CF | OF | AF, cf | (of << 11));
            cx.wr::<W>(l, r);
        }
    } else if c != 0 {
        let d = cx.c.reg::<W>(op.m);
        let (r, cf, of) = shd_val::<LEFT, W>(d, s, c);
        cx.c.flags.set_szp_with(W, r, CF | OF | AF, cf | (of << 11));
        cx.c.set_reg::<W>(op.m, r);
    }
    Flow::Next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<const OP: u8, const W: u8>(v: u32, c: u32, cin: bool) -> (u32, bool, bool) {
        let mut f = Flags::new(if cin { CF } else { 0 });
        let r = shift_val::<OP, W>(&mut f, v, c);
        (r, f.cf(), f.of())
    }

    #[test]
    fn rotates() {
        assert_eq!(run::<ROL, 1>(0x81, 1, false), (0x03, true, true));
        assert_eq!(run::<ROL, 1>(0x81, 8, false), (0x81, true, false));
        assert_eq!(run::<ROR, 1>(0x01, 1, false), (0x80, true, true));
        assert_eq!(run::<RCL, 1>(0x80, 1, false), (0x00, true, true));
        assert_eq!(run::<RCL, 1>(0x00, 9, true), (0x00, true, true));
        assert_eq!(run::<RCR, 1>(0x01, 1, true), (0x80, true, true));
        assert_eq!(run::<RCR, 2>(0x0001, 17, false).0, 0x0001);
        assert_eq!(run::<ROL, 4>(0x8000_0001, 4, false).0, 0x0000_0018);
    }

    #[test]
    fn shifts() {
        assert_eq!(run::<SHL, 1>(0x81, 1, false), (0x02, true, true));
        assert_eq!(run::<SHL, 1>(0x01, 8, false), (0x00, true, true));
        assert_eq!(run::<SHL, 1>(0x01, 9, false), (0x00, false, false));
        assert_eq!(run::<SHR, 2>(0x8001, 1, false), (0x4000, true, true));
        assert_eq!(run::<SHR, 1>(0x80, 8, false), (0x00, true, true));
        assert_eq!(run::<SAR, 1>(0x80, 1, false), (0xC0, false, false));
        assert_eq!(run::<SAR, 1>(0x80, 20, false), (0xFF, true, false));
        assert_eq!(run::<SAR, 4>(0x8000_0000, 31, false).0, 0xFFFF_FFFF);
    }

    #[test]
    fn double_shifts() {
        assert_eq!(shd_val::<true, 4>(0x1234_5678, 0x9ABC_DEF0, 8).0, 0x3456_789A);
        assert_eq!(shd_val::<false, 4>(0x1234_5678, 0x9ABC_DEF0, 8).0, 0xF012_3456);
        assert_eq!(shd_val::<true, 2>(0x1234, 0xABCD, 4).0, 0x234A);
        assert_eq!(shd_val::<false, 2>(0x1234, 0xABCD, 4).0, 0xD123);
    }
}
