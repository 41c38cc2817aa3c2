//! The predecoded instruction ([`Op`]) the decode cache stores, the handler signature, and the
//! [`Flow`] a handler returns to the step loop.
//!
//! An `Op` is built once per instruction address from iced-x86's `Instruction` (see
//! `decode.rs`): the handler is chosen at decode time and every operand is reduced to small
//! register indices, an effective-address recipe and immediates, so executing it never looks
//! at iced again.
//!
//! Dependencies point one way: this module uses [`Ctx`] (the handler signature) and
//! [`Flow`]; `operand.rs` knows nothing of `Op`. The two `Ctx` methods that read an `Op`'s
//! address recipe live here for that reason.
pub use crate::flow::Flow;
use crate::operand::Ctx;

/// An instruction handler: executes `op` on the CPU in `cx`.
pub type Handler = fn(&mut Ctx<'_>, &Op) -> Flow;

/// Register index meaning "no register" in an effective-address recipe (reads as 0).
pub const NO_REG: u8 = 8;

/// One predecoded instruction.
#[derive(Clone, Copy)]
pub struct Op {
    pub exec: Handler,
    /// Instruction length in bytes, prefixes included.
    pub len: u8,
    /// Offset of the instruction's first byte from the start of its block (the step loop
    /// derives EIP from it instead of advancing EIP after every instruction).
    pub off: u16,
    /// Set by the block optimiser for instructions that cannot fault, stop the block or read
    /// EIP: the step loop then neither sets EIP nor checks the outcome.
    pub pure: bool,
    /// The ModR/M reg operand (GPR index, segment index, CR number, ...).
    pub r: u8,
    /// The ModR/M r/m register when the operand is a register.
    pub m: u8,
    /// Segment of the memory operand (or the source segment of string instructions).
    pub seg: u8,
    /// Effective address: `(regs[base] + (regs[index] << scale) + disp) & amask`.
    pub base: u8,
    pub index: u8,
    pub scale: u8,
    /// Operand size in bytes (2 or 4) for handlers shared by both sizes, or a small argument.
    pub osz: u8,
    /// A handler-specific small argument (condition code, ALU op, REP kind, ...).
    pub aux: u8,
    pub amask: u32,
    pub disp: u32,
    pub imm: u32,
    pub imm2: u32,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op")
            .field("len", &self.len)
            .field("off", &self.off)
            .field("pure", &self.pure)
            .field("r", &self.r)
            .field("m", &self.m)
            .field("seg", &self.seg)
            .field("base", &self.base)
            .field("index", &self.index)
            .field("scale", &self.scale)
            .field("osz", &self.osz)
            .field("aux", &self.aux)
            .field("disp", &self.disp)
            .field("imm", &self.imm)
            .field("imm2", &self.imm2)
            .finish()
    }
}

impl Op {
    /// An op with `exec` and every operand field empty.
    pub fn new(exec: Handler, len: u8) -> Op {
        Op {
            exec,
            len,
            off: 0,
            pure: false,
            r: 0,
            m: 0,
            seg: 3,
            base: NO_REG,
            index: NO_REG,
            scale: 0,
            osz: 2,
            aux: 0,
            amask: 0xFFFF,
            disp: 0,
            imm: 0,
            imm2: 0,
        }
    }
}

impl Ctx<'_> {
    /// The effective address (offset) of `op`'s memory operand.
    #[inline(always)]
    pub fn ea(&self, op: &Op) -> u32 {
        let r = &self.c.regs;
        r[(op.base & 15) as usize]
            .wrapping_add(r[(op.index & 15) as usize] << (op.scale & 3))
            .wrapping_add(op.disp)
            & op.amask
    }

    /// Linear address of `op`'s `W`-byte memory operand, or `None` past the segment limit.
    #[inline(always)]
    pub fn mem_lin<const W: u8>(&self, op: &Op) -> Option<u32> {
        self.seg_lin::<W>(op.seg, self.ea(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Cpu;
    use picoqemu_core::IoBus;

    #[test]
    fn ea_wraps_at_64k_for_16bit_addressing() {
        let mut ram = vec![0u8; 0x11_0000];
        let mut pages = vec![0u8; 0x110];
        let mut bus = IoBus::capturing();
        let mut cx = Ctx::new(Cpu::default(), &mut ram, &mut bus, &mut pages, u32::MAX);
        cx.c.regs[5] = 0x0001; // BP
        let mut op = Op::new(|_, _| Flow::Next, 3);
        op.base = 5;
        op.index = NO_REG;
        op.disp = 0xFFFE; // [bp-2]
        assert_eq!(cx.ea(&op), 0xFFFF);
        op.amask = u32::MAX;
        op.disp = 0xFFFF_FFFE;
        assert_eq!(cx.ea(&op), 0xFFFF_FFFF);
    }
}
