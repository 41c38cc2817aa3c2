//! Decimal and ASCII adjust: DAA, DAS, AAA, AAS, AAM (imm 0 raises #DE), AAD, and the
//! undocumented SALC (D6: AL = CF ? FF : 00).
//!
//! 386+ rules: AAA/AAS adjust the whole AX (AX += 0106h / AX -= 6, AH -= 1). Undefined
//! flags: DAA/DAS set OF as the signed overflow of the adjustment; AAA/AAS set SF/ZF/PF
//! from the final AL and clear OF; AAM clears OF/AF/CF; AAD sets every flag as the 8-bit
//! addition AL + AH*imm it performs.
use picoqemu_core::flags::{AF, CF, OF};

use crate::arith::{alu, ADD};
use crate::cpu::EAX;
use crate::interrupt::DE;
use crate::op::{Flow, Op};
use crate::operand::Ctx;

/// DAA (`SUB = false`) and DAS (`SUB = true`).
pub fn daa<const SUB: bool>(cx: &mut Ctx, _op: &Op) -> Flow {
    let old_al = cx.c.r8(0);
    let f = &mut cx.c.flags;
    let old_cf = f.cf();
    let old_af = f.af();
    let mut al = old_al;
    let mut cf = false;
    let mut af = false;
    if (al & 0xF) > 9 || old_af {
        cf = old_cf || if SUB { al < 6 } else { al + 6 > 0xFF };
        al = if SUB { al.wrapping_sub(6) } else { al + 6 } & 0xFF;
        af = true;
    }
    if old_al > 0x99 || old_cf {
        al = if SUB { al.wrapping_sub(0x60) } else { al + 0x60 } & 0xFF;
        cf = true;
    } else if !SUB {
        cf = false;
    }
    let adj = if SUB { old_al.wrapping_sub(al) } else { al.wrapping_sub(old_al) } & 0xFF;
    let of = if SUB {
        ((old_al ^ adj) & (old_al ^ al) & 0x80) != 0
    } else {
        ((old_al ^ al) & (adj ^ al) & 0x80) != 0
    };
    let v = (cf as u32) | if af { AF } else { 0 } | if of { OF } else { 0 };
    f.set_szp_with(1, al, CF | AF | OF, v);
    cx.c.set_r8(0, al);
    Flow::Next
}

/// AAA (`SUB = false`) and AAS (`SUB = true`).
pub fn aaa<const SUB: bool>(cx: &mut Ctx, _op: &Op) -> Flow {
    let mut ax = cx.c.r16(EAX);
    let adjust = (ax & 0xF) > 9 || cx.c.flags.af();
    if adjust {
        if SUB {
            ax = ax.wrapping_sub(6);
            ax = ax.wrapping_sub(0x100);
        } else {
            ax = ax.wrapping_add(0x106);
        }
    }
    ax &= 0xFF0F;
    cx.c.set_r16(EAX, ax);
    let v = if adjust { CF | AF } else { 0 };
    cx.c.flags.set_szp_with(1, ax & 0xFF, CF | AF | OF, v);
    Flow::Next
}

/// AAM imm8 (base in `op.imm`).
pub fn aam(cx: &mut Ctx, op: &Op) -> Flow {
    let base = op.imm & 0xFF;
    if base == 0 {
        return Flow::Fault(DE);
    }
    let al = cx.c.r8(0);
    let (ah, al) = (al / base, al % base);
    cx.c.set_r16(EAX, ah << 8 | al);
    cx.c.flags.set_szp_with(1, al, CF | AF | OF, 0);
    Flow::Next
}

/// AAD imm8: AL = AL + AH * imm, AH = 0.
pub fn aad(cx: &mut Ctx, op: &Op) -> Flow {
    let base = op.imm & 0xFF;
    let (al, ah) = (cx.c.r8(0), cx.c.r8(4));
    let r = alu::<ADD, 1>(&mut cx.c.flags, al, (ah * base) & 0xFF);
    cx.c.set_r16(EAX, r);
    Flow::Next
}

/// SALC: AL = CF ? 0xFF : 0x00 (flags unchanged).
pub fn salc(cx: &mut Ctx, _op: &Op) -> Flow {
    let v = if cx.c.flags.cf() { 0xFF } else { 0 };
    cx.c.set_r8(0, v);
    Flow::Next
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use picoqemu_core::flags::{AF, CF};

    fn al_flags(code: &[u8], ax: u32, fl: u32) -> (u32, u32) {
        let mut prog = code.to_vec();
        prog.push(0xF4);
        let mut t = T::new(&prog);
        t.cpu.gpr[0] = ax;
        t.cpu.eflags = 2 | fl;
        let s = t.run();
        (s.st.gpr[0] & 0xFFFF, s.st.eflags)
    }

    #[test]
    fn daa_das() {
        // 0x15 + 0x27 = 0x3C -> DAA -> 0x42
        assert_eq!(al_flags(&[0x27], 0x3C, 0).0, 0x42);
        let (ax, f) = al_flags(&[0x27], 0x9A, 0);
        assert_eq!((ax, f & CF), (0x00, CF));
        // 0x42 - 0x15 = 0x2D -> DAS -> 0x27
        assert_eq!(al_flags(&[0x2F], 0x2D, AF).0, 0x27);
    }

    #[test]
    fn aaa_aas_use_whole_ax() {
        let (ax, f) = al_flags(&[0x37], 0x00FB, 0);
        assert_eq!(ax, 0x0201); // 0xFB + 0x106 = 0x201, AL &= 0x0F
        assert_eq!(f & (CF | AF), CF | AF);
        // AX -= 6 borrows into AH, then AH -= 1 (the 286 data agrees).
        assert_eq!(al_flags(&[0x3F], 0x0205, AF).0, 0x000F);
    }

    #[test]
    fn aam_aad_salc() {
        assert_eq!(al_flags(&[0xD4, 0x0A], 0x004F, 0).0, 0x0709);
        assert_eq!(al_flags(&[0xD5, 0x0A], 0x0709, 0).0, 0x004F);
        assert_eq!(al_flags(&[0xD6], 0x1234, CF).0, 0x12FF);
        assert_eq!(al_flags(&[0xD6], 0x1234, 0).0, 0x1200);
    }

    #[test]
    fn aam_zero_is_divide_error() {
        let mut t = T::new(&[0xD4, 0x00, 0xF4]);
        t.cpu.gpr[4] = 0x800;
        t.poke(0, &[0x00, 0x05, 0, 0]);
        t.poke(0x500, &[0xF4]);
        let s = t.run();
        assert_eq!(s.st.eip, 0x501);
        assert_eq!(t.peek16(0x7FA), 0x100);
    }
}
