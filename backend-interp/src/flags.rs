//! Lazy EFLAGS: arithmetic instructions record their operands and result, and a flag is only
//! computed when something reads it (Jcc, PUSHF, ...). The value read is always exact.
//!
//! `bits` holds every EFLAGS bit; for the status flags listed in `lazy` the value in `bits` is
//! stale and the flag is derived from (`kind`, `a`, `b`, `r`, `sb`) instead.
use picoqemu_core::flags::{AF, CF, FIXED, OF, PF, SF, STATUS, ZF};

/// How lazily held flags are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// r = a + b
    Add,
    /// r = a + b + 1
    Adc,
    /// r = a - b
    Sub,
    /// r = a - b - 1
    Sbb,
    /// Only SF, ZF, PF are lazy (from r).
    Szp,
}

/// EFLAGS with lazily computed status flags.
#[derive(Debug, Clone, Copy)]
pub struct Flags {
    pub bits: u32,
    pub lazy: u32,
    pub kind: Kind,
    /// Index of the sign bit (7, 15 or 31).
    pub sb: u32,
    pub a: u32,
    pub b: u32,
    pub r: u32,
}

/// Even parity of the low byte (PF).
#[inline(always)]
pub fn parity(v: u32) -> bool {
    (0x6996u32 >> ((v ^ (v >> 4)) & 0xF)) & 1 == 0
}

/// The mask of a `w`-byte operand.
#[inline(always)]
pub const fn wmask(w: u8) -> u32 {
    match w {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

impl Default for Flags {
    fn default() -> Self {
        Flags::new(FIXED)
    }
}

impl Flags {
    pub fn new(v: u32) -> Flags {
        Flags { bits: v | FIXED, lazy: 0, kind: Kind::Szp, sb: 7, a: 0, b: 0, r: 0 }
    }

    /// Records an arithmetic result of width `w` bytes; all six status flags become lazy.
    #[inline(always)]
    pub fn set_arith(&mut self, kind: Kind, w: u8, a: u32, b: u32, r: u32) {
        self.lazy = STATUS;
        self.kind = kind;
        self.sb = (w as u32) * 8 - 1;
        self.a = a;
        self.b = b;
        self.r = r & wmask(w);
    }

    /// INC/DEC: like ADD/SUB of 1 but CF is kept.
    #[inline(always)]
    pub fn set_incdec(&mut self, kind: Kind, w: u8, a: u32, r: u32) {
        if self.lazy & CF != 0 {
            self.bits = (self.bits & !CF) | self.cf_bit();
        }
        self.set_arith(kind, w, a, 1, r);
        self.lazy = STATUS & !CF;
    }

    /// Logic ops: CF = OF = AF = 0, SF/ZF/PF from the result.
    #[inline(always)]
    pub fn set_logic(&mut self, w: u8, r: u32) {
        // `lazy` is always a subset of the status flags, so once SF/ZF/PF become lazy and
        // CF/OF/AF are written nothing else is pending (no `compute` as in `set_szp_with`).
        self.bits &= !(CF | OF | AF);
        self.lazy = SF | ZF | PF;
        self.kind = Kind::Szp;
        self.sb = (w as u32) * 8 - 1;
        self.r = r & wmask(w);
    }

    /// SF/ZF/PF lazy from `r`, the flags in `mask` set to `val`, the rest kept.
    #[inline(always)]
    pub fn set_szp_with(&mut self, w: u8, r: u32, mask: u32, val: u32) {
        let keep = self.lazy & !(SF | ZF | PF) & !mask;
        if keep != 0 {
            let v = self.compute(keep);
            self.bits = (self.bits & !keep) | v;
        }
        self.bits = (self.bits & !mask) | (val & mask);
        self.lazy = SF | ZF | PF;
        self.kind = Kind::Szp;
        self.sb = (w as u32) * 8 - 1;
        self.r = r & wmask(w);
    }

    /// Sets the status flags in `mask` eagerly to `val`, keeping the others' values.
    #[inline(always)]
    pub fn set_some(&mut self, mask: u32, val: u32) {
        // The flags that stay lazy still derive from the unchanged record.
        self.lazy &= !mask;
        self.bits = (self.bits & !mask) | (val & mask);
    }

    #[inline(always)]
    fn cf_bit(&self) -> u32 {
        let (a, b, r) = (self.a, self.b, self.r);
        let c = match self.kind {
            Kind::Add => r < a,
            Kind::Adc => r <= a,
            Kind::Sub => a < b,
            Kind::Sbb => a <= b,
            Kind::Szp => self.bits & CF != 0,
        };
        c as u32
    }

    /// Computes the flags in `mask` (a subset of `lazy`) from the recorded operation.
    fn compute(&self, mask: u32) -> u32 {
        let (a, b, r, sb) = (self.a, self.b, self.r, self.sb);
        let mut v = 0;
        if r == 0 {
            v |= ZF;
        }
        if (r >> sb) & 1 != 0 {
            v |= SF;
        }
        if parity(r) {
            v |= PF;
        }
        match self.kind {
            Kind::Add | Kind::Adc => {
                v |= self.cf_bit();
                v |= (a ^ b ^ r) & AF;
                if ((a ^ r) & (b ^ r)) >> sb & 1 != 0 {
                    v |= OF;
                }
            }
            Kind::Sub | Kind::Sbb => {
                v |= self.cf_bit();
                v |= (a ^ b ^ r) & AF;
                if ((a ^ b) & (a ^ r)) >> sb & 1 != 0 {
                    v |= OF;
                }
            }
            Kind::Szp => {}
        }
        v & mask
    }

    /// The full EFLAGS value.
    #[inline]
    pub fn get(&self) -> u32 {
        if self.lazy == 0 {
            self.bits
        } else {
            (self.bits & !self.lazy) | self.compute(self.lazy)
        }
    }

    /// Replaces EFLAGS entirely (bit 1 forced on).
    #[inline]
    pub fn set(&mut self, v: u32) {
        self.bits = v | FIXED;
        self.lazy = 0;
    }

    #[inline(always)]
    pub fn cf(&self) -> bool {
        if self.lazy & CF != 0 {
            self.cf_bit() != 0
        } else {
            self.bits & CF != 0
        }
    }

    #[inline(always)]
    pub fn zf(&self) -> bool {
        if self.lazy & ZF != 0 {
            self.r == 0
        } else {
            self.bits & ZF != 0
        }
    }

    #[inline(always)]
    pub fn sf(&self) -> bool {
        if self.lazy & SF != 0 {
            (self.r >> self.sb) & 1 != 0
        } else {
            self.bits & SF != 0
        }
    }

    #[inline(always)]
    pub fn of(&self) -> bool {
        if self.lazy & OF != 0 {
            self.compute(OF) != 0
        } else {
            self.bits & OF != 0
        }
    }

    #[inline(always)]
    pub fn pf(&self) -> bool {
        if self.lazy & PF != 0 {
            parity(self.r)
        } else {
            self.bits & PF != 0
        }
    }

    #[inline(always)]
    pub fn af(&self) -> bool {
        if self.lazy & AF != 0 {
            self.compute(AF) != 0
        } else {
            self.bits & AF != 0
        }
    }

    /// Evaluates condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc opcodes).
    #[inline(always)]
    pub fn cond(&self, cc: u8) -> bool {
        let v = match cc >> 1 {
            0 => self.of(),
            1 => self.cf(),
            2 => self.zf(),
            3 => self.cf() || self.zf(),
            4 => self.sf(),
            5 => self.pf(),
            6 => self.sf() != self.of(),
            _ => self.zf() || (self.sf() != self.of()),
        };
        v != (cc & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eager_add(w: u8, a: u32, b: u32, cin: u32) -> u32 {
        let m = wmask(w) as u64;
        let full = a as u64 + b as u64 + cin as u64;
        let r = (full & m) as u32;
        let sb = w as u32 * 8 - 1;
        let mut f = 0;
        if full > m {
            f |= CF;
        }
        if r == 0 {
            f |= ZF;
        }
        if r >> sb & 1 != 0 {
            f |= SF;
        }
        if parity(r) {
            f |= PF;
        }
        if (a ^ b ^ r) & 0x10 != 0 {
            f |= AF;
        }
        let (sa, sbb, sr) = (a >> sb & 1, b >> sb & 1, r >> sb & 1);
        if sa == sbb && sr != sa {
            f |= OF;
        }
        f
    }

    #[test]
    fn add_flags_match_eager_reference() {
        for &(a, b) in
            &[(0u32, 0u32), (0x7F, 1), (0xFF, 1), (0x80, 0x80), (0x0F, 0x01), (0x55, 0xAA), (0x12, 0xEE)]
        {
            for cin in 0..2 {
                let mut f = Flags::default();
                let r = a + b + cin;
                f.set_arith(if cin == 1 { Kind::Adc } else { Kind::Add }, 1, a, b, r);
                assert_eq!(f.get() & STATUS, eager_add(1, a, b, cin), "a={a:x} b={b:x} cin={cin}");
            }
        }
    }

    #[test]
    fn sub_flags() {
        let mut f = Flags::default();
        // 0 - 1 = 0xFFFF: CF, SF, AF, PF set; OF clear.
        f.set_arith(Kind::Sub, 2, 0, 1, 0u32.wrapping_sub(1));
        assert_eq!(f.get() & STATUS, CF | SF | AF | PF);
        // 0x8000 - 1 = 0x7FFF: OF, AF set.
        f.set_arith(Kind::Sub, 2, 0x8000, 1, 0x7FFF);
        assert_eq!(f.get() & STATUS, OF | AF | PF);
        assert!(f.cond(0x0)); // JO
        assert!(f.cond(0xC)); // JL: SF != OF
    }

    #[test]
    fn incdec_keeps_cf() {
        let mut f = Flags::default();
        f.set_arith(Kind::Add, 1, 0xFF, 1, 0x100); // CF = 1
        f.set_incdec(Kind::Add, 1, 0x7F, 0x80);
        assert!(f.cf());
        assert!(f.of());
        assert!(f.sf());
        assert!(f.af());
    }

    #[test]
    fn logic_and_set_some() {
        let mut f = Flags::new(CF | OF | AF);
        f.set_logic(4, 0);
        assert_eq!(f.get() & STATUS, ZF | PF);
        f.set_some(CF, CF);
        assert_eq!(f.get() & STATUS, ZF | PF | CF);
        assert!(parity(0) && !parity(1) && parity(3));
    }
}
