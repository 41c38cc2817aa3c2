//! The interpreter's register file ([`Cpu`]) and its conversion to and from the
//! backend-neutral [`CpuState`].
use picoqemu_core::{CpuState, Segment};

use crate::flags::Flags;

pub const ES: u8 = 0;
pub const CS: u8 = 1;
pub const SS: u8 = 2;
pub const DS: u8 = 3;
pub const FS: u8 = 4;
pub const GS: u8 = 5;

pub const EAX: u8 = 0;
pub const ECX: u8 = 1;
pub const EDX: u8 = 2;
pub const EBX: u8 = 3;
pub const ESP: u8 = 4;
pub const EBP: u8 = 5;
pub const ESI: u8 = 6;
pub const EDI: u8 = 7;

/// CR0 bits the interpreter looks at.
pub mod cr0 {
    pub const PE: u32 = 1 << 0;
    pub const MP: u32 = 1 << 1;
    pub const EM: u32 = 1 << 2;
    pub const TS: u32 = 1 << 3;
    pub const ET: u32 = 1 << 4;
    pub const NW: u32 = 1 << 29;
    pub const CD: u32 = 1 << 30;
    pub const PG: u32 = 1 << 31;
}

/// The CPU's architectural state as the interpreter keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    /// EAX..EDI, then slots that are always 0 (index 8 is the "no register" of an EA
    /// recipe); 16 entries so that a masked index needs no bounds check.
    pub regs: [u32; 16],
    pub eip: u32,
    pub flags: Flags,
    pub segs: [Segment; 6],
    pub cr0: u32,
    pub cr2: u32,
    pub cr3: u32,
    pub cr4: u32,
    pub idt_base: u32,
    pub idt_limit: u16,
    pub gdt_base: u32,
    pub gdt_limit: u16,
    /// Set by MOV SS / POP SS / LSS: debug traps are held off for one instruction.
    pub inhibit: bool,
    /// Set by STI (with IF clear before), MOV SS and POP SS: external interrupts are held off
    /// at the next instruction boundary (the interrupt shadow).
    pub irq_shadow: bool,
    /// Always `0xFFFF_0000`: the high-half mask of [`Cpu::set_r16`], read from memory so the
    /// compiler cannot narrow the merge into a 16-bit store (see there).
    hi16: u32,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu::from_state(&CpuState::default())
    }
}

impl Cpu {
    pub fn from_state(s: &CpuState) -> Cpu {
        let mut regs = [0u32; 16];
        regs[..8].copy_from_slice(&s.gpr);
        Cpu {
            regs,
            eip: s.eip,
            flags: Flags::new(s.eflags),
            segs: s.segs,
            cr0: s.cr0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            idt_base: s.idt_base,
            idt_limit: s.idt_limit,
            gdt_base: 0,
            gdt_limit: 0xFFFF,
            inhibit: false,
            irq_shadow: false,
            hi16: 0xFFFF_0000,
        }
    }

    /// Loads the fields a [`CpuState`] carries, keeping the ones it does not (GDTR, CR2-4).
    pub fn load_state(&mut self, s: &CpuState) {
        let keep = *self;
        *self = Cpu::from_state(s);
        self.cr2 = keep.cr2;
        self.cr3 = keep.cr3;
        self.cr4 = keep.cr4;
        self.gdt_base = keep.gdt_base;
        self.gdt_limit = keep.gdt_limit;
    }

    pub fn to_state(self) -> CpuState {
        let mut gpr = [0u32; 8];
        gpr.copy_from_slice(&self.regs[..8]);
        CpuState {
            gpr,
            eip: self.eip,
            eflags: self.flags.get(),
            segs: self.segs,
            cr0: self.cr0,
            idt_base: self.idt_base,
            idt_limit: self.idt_limit,
        }
    }

    /// Loads segment register `s` the real-mode way: selector and base change, the hidden
    /// limit is kept (as on a 386, which is what makes "unreal mode" work).
    #[inline]
    pub fn load_seg(&mut self, s: u8, sel: u16) {
        let seg = &mut self.segs[s as usize];
        seg.selector = sel;
        seg.base = (sel as u32) << 4;
    }

    #[inline(always)]
    pub fn r8(&self, i: u8) -> u32 {
        (self.regs[(i & 3) as usize] >> ((i & 4) << 1)) & 0xFF
    }

    #[inline(always)]
    pub fn set_r8(&mut self, i: u8, v: u32) {
        let sh = (i & 4) << 1;
        let r = &mut self.regs[(i & 3) as usize];
        *r = (*r & !(0xFF << sh)) | ((v & 0xFF) << sh);
    }

    #[inline(always)]
    pub fn r16(&self, i: u8) -> u32 {
        self.regs[(i & 15) as usize] & 0xFFFF
    }

    #[inline(always)]
    pub fn set_r16(&mut self, i: u8, v: u32) {
        // The mask comes from a field, not a constant, so that the compiler keeps a full
        // 32-bit store: a 16-bit store followed by the 32-bit load of the next instruction
        // reading the register defeats store-to-load forwarding (a stall of ~10+ cycles per
        // dependent instruction). AND+OR is shorter on the dependency chain than the
        // SHRD+ROL a rotate-based merge compiles to.
        let m = self.hi16;
        let r = &mut self.regs[(i & 7) as usize];
        *r = (*r & m) | (v & !m);
    }

    /// Reads a `W`-byte register (for `W = 1`, index 4..7 are AH..BH).
    #[inline(always)]
    pub fn reg<const W: u8>(&self, i: u8) -> u32 {
        match W {
            1 => self.r8(i),
            2 => self.r16(i),
            _ => self.regs[(i & 15) as usize],
        }
    }

    #[inline(always)]
    pub fn set_reg<const W: u8>(&mut self, i: u8, v: u32) {
        match W {
            1 => self.set_r8(i, v),
            2 => self.set_r16(i, v),
            _ => self.regs[(i & 7) as usize] = v,
        }
    }

    #[inline]
    pub fn set_reg_w(&mut self, w: u8, i: u8, v: u32) {
        match w {
            1 => self.set_r8(i, v),
            2 => self.set_r16(i, v),
            _ => self.regs[(i & 7) as usize] = v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_registers_alias_words() {
        let mut c = Cpu::default();
        c.regs[0] = 0x1234_5678;
        assert_eq!(c.r8(0), 0x78);
        assert_eq!(c.r8(4), 0x56);
        c.set_r8(4, 0xAB);
        assert_eq!(c.regs[0], 0x1234_AB78);
        c.set_r16(0, 0xCAFE);
        assert_eq!(c.regs[0], 0x1234_CAFE);
        c.set_reg::<4>(0, 7);
        assert_eq!(c.reg::<4>(0), 7);
    }

    #[test]
    fn state_round_trip_keeps_hidden_fields() {
        let mut s = CpuState::default();
        s.gpr[3] = 0xDEAD;
        s.eflags = 0x202;
        let mut c = Cpu::from_state(&s);
        c.gdt_base = 0x1000;
        c.load_state(&s);
        assert_eq!(c.gdt_base, 0x1000);
        assert_eq!(c.to_state(), s);
        c.load_seg(DS, 0xB800);
        assert_eq!(c.segs[DS as usize].base, 0xB8000);
    }
}
