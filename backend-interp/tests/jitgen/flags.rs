//! Which status flags an instruction leaves undefined, and the forward model along an executed
//! path that says which flags a comparison must mask.
//!
//! Rule: after each executed instruction `U = (U & !defined) | undefined`, where `defined` are
//! the status flags it certainly writes with a defined value and `undefined` the ones it may
//! leave undefined (iced-x86's `rflags_undefined`, refined with the shift/rotate count that
//! iced cannot know: count 0 touches nothing; a count in CL may be 0, so the instruction is
//! only a *possible* writer; CF is undefined for SHL/SHR with a count ≥ the operand size; a
//! rotate through carry by a nonzero multiple of size+1 may change OF). Only flags in `U` are
//! masked. The generator never lets an instruction *read* a flag in `U`.
use iced_x86::{Instruction, Mnemonic, OpKind, Register, RflagsBits};
use picoqemu_core::flags;

/// iced's `RflagsBits` → EFLAGS bits (status flags only).
pub fn to_eflags(bits: u32) -> u32 {
    const MAP: [(u32, u32); 6] = [
        (RflagsBits::OF, flags::OF),
        (RflagsBits::SF, flags::SF),
        (RflagsBits::ZF, flags::ZF),
        (RflagsBits::AF, flags::AF),
        (RflagsBits::CF, flags::CF),
        (RflagsBits::PF, flags::PF),
    ];
    MAP.iter().filter(|(i, _)| bits & i != 0).fold(0, |acc, (_, e)| acc | e)
}

/// What one instruction does to the status flags (EFLAGS bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagFx {
    pub read: u32,
    pub defined: u32,
    pub undefined: u32,
}

impl FlagFx {
    /// `U` after the instruction.
    pub fn apply(&self, u: u32) -> u32 {
        (u & !self.defined) | self.undefined
    }
}

fn is_shift(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Shl
            | Mnemonic::Sal
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Rol
            | Mnemonic::Ror
            | Mnemonic::Rcl
            | Mnemonic::Rcr
    )
}

fn op0_bits(ins: &Instruction) -> u32 {
    match ins.op0_kind() {
        OpKind::Register => ins.op0_register().size() as u32 * 8,
        _ => ins.memory_size().size() as u32 * 8,
    }
}

/// The flag effect of `ins`.
pub fn flag_fx(ins: &Instruction) -> FlagFx {
    let m = ins.mnemonic();
    let read = to_eflags(ins.rflags_read());
    let modified = to_eflags(ins.rflags_modified());
    let mut undefined = to_eflags(ins.rflags_undefined());
    let mut defined = modified & !undefined;
    if is_shift(m) && ins.op_count() == 2 {
        let bits = op0_bits(ins);
        let shl_shr = matches!(m, Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr);
        match ins.op1_kind() {
            OpKind::Register if ins.op1_register() == Register::CL => {
                // The count may be 0 (nothing written) or anything up to 31.
                defined = 0;
                if shl_shr && bits < 32 {
                    undefined |= flags::CF;
                }
                undefined |= flags::OF;
            }
            OpKind::Immediate8 => {
                let c = ins.immediate8() as u32 & 0x1F;
                if shl_shr && bits < 32 && c >= bits {
                    undefined |= flags::CF;
                    defined &= !flags::CF;
                }
                if matches!(m, Mnemonic::Rcl | Mnemonic::Rcr) && c != 0 && c.is_multiple_of(bits + 1) {
                    // iced reports "no flags" here; the SDM only says the masked count is
                    // nonzero, so OF may change (undefined) and CF keeps its value.
                    undefined |= flags::OF;
                }
            }
            _ => {}
        }
    }
    FlagFx { read, defined, undefined }
}
