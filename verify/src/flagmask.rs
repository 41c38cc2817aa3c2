//! Which EFLAGS bits an instruction leaves *undefined*, and the tracker that follows them
//! through a run so that the comparison masks exactly those flags and no others.
//!
//! The rule (documented in `docs/known-differences.md`): after every executed instruction,
//! `U = (U & !defined) | undefined`, where `defined` are the status flags the instruction
//! certainly wrote with an architecturally defined value and `undefined` those it may have left
//! undefined (iced-x86's `rflags_undefined`, refined with the actual shift/rotate count, which
//! iced cannot know). Flags that an instruction does not touch keep their status. At a
//! comparison the flags in `U` are masked. When an instruction *reads* a flag in `U` (a `jcc`,
//! `adc`, `pushf`, an interrupt or fault pushing FLAGS), the run's later state may depend on an
//! undefined value: the tracker records that as a [`Taint`] so a report can say so.
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register, RflagsBits};
use picoqemu_core::flags;

/// The six arithmetic status flags as EFLAGS bits.
pub const STATUS: u32 = flags::STATUS;

/// Converts iced's `RflagsBits` to EFLAGS bit positions (status flags, DF, IF, AC).
pub fn to_eflags(bits: u32) -> u32 {
    const MAP: [(u32, u32); 9] = [
        (RflagsBits::OF, flags::OF),
        (RflagsBits::SF, flags::SF),
        (RflagsBits::ZF, flags::ZF),
        (RflagsBits::AF, flags::AF),
        (RflagsBits::CF, flags::CF),
        (RflagsBits::PF, flags::PF),
        (RflagsBits::DF, flags::DF),
        (RflagsBits::IF, flags::IF),
        (RflagsBits::AC, flags::AC),
    ];
    MAP.iter().filter(|(i, _)| bits & i != 0).fold(0, |acc, (_, e)| acc | e)
}

/// What one instruction does to the status flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagEffect {
    /// Flags whose value the instruction uses (EFLAGS bits).
    pub read: u32,
    /// Flags certainly written with a defined value.
    pub defined: u32,
    /// Flags possibly left undefined.
    pub undefined: u32,
}

impl FlagEffect {
    /// The set of undefined flags after the instruction, given the set `u` before it.
    pub fn apply(&self, u: u32) -> u32 {
        (u & !self.defined) | self.undefined
    }
}

/// True for the instructions that push FLAGS (so they "read" every flag).
pub fn pushes_flags(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Pushf | Mnemonic::Pushfd | Mnemonic::Int | Mnemonic::Int3 | Mnemonic::Into | Mnemonic::Int1
    )
}

/// The shift count operand: `Some(imm)`, `Some(1)` for the `,1` forms, `None` for CL.
fn shift_count_operand(instr: &Instruction) -> Option<Option<u32>> {
    let last = instr.op_count().checked_sub(1)?;
    match instr.op_kind(last) {
        OpKind::Immediate8 => Some(Some(instr.immediate8() as u32)),
        OpKind::Register if instr.op_register(last) == Register::CL => Some(None),
        _ => None,
    }
}

/// Operand size in bits of the first operand.
fn op_bits(instr: &Instruction) -> u32 {
    match instr.op0_kind() {
        OpKind::Register => instr.op0_register().size() as u32 * 8,
        _ => instr.memory_size().size() as u32 * 8,
    }
}

/// The count register a REP-prefixed string instruction uses: ECX with a 32-bit address size.
fn rep_uses_ecx(instr: &Instruction) -> bool {
    (0..instr.op_count()).any(|i| {
        matches!(instr.op_kind(i), OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI)
    })
}

/// The iteration count a REP string instruction starts with, from ECX before it (`None` when
/// `instr` is not a REP string instruction).
pub fn rep_count(instr: &Instruction, ecx: u32) -> Option<u32> {
    if !(instr.is_string_instruction() && (instr.has_rep_prefix() || instr.has_repne_prefix())) {
        return None;
    }
    Some(if rep_uses_ecx(instr) { ecx } else { ecx & 0xFFFF })
}

/// The flag effect of `instr`. `ecx` is the value of ECX before the instruction when known
/// (dynamic tracking: the shift count in CL, the REP count); `None` makes the answer
/// conservative for count-dependent instructions.
pub fn flag_effect(instr: &Instruction, ecx: Option<u32>) -> FlagEffect {
    let cl = ecx.map(|v| v as u8);
    if instr.is_string_instruction() && (instr.has_rep_prefix() || instr.has_repne_prefix()) {
        let iced = FlagEffect {
            read: to_eflags(instr.rflags_read()),
            defined: to_eflags(instr.rflags_modified()) & !to_eflags(instr.rflags_undefined()),
            undefined: to_eflags(instr.rflags_undefined()),
        };
        return match ecx.and_then(|v| rep_count(instr, v)) {
            // No iteration: no flag is read or written.
            Some(0) => FlagEffect::default(),
            Some(_) => iced,
            // Unknown count: maybe no iteration, so nothing is certainly written.
            None => FlagEffect { defined: 0, ..iced },
        };
    }
    let read = if pushes_flags(instr.mnemonic()) {
        STATUS | to_eflags(instr.rflags_read())
    } else {
        to_eflags(instr.rflags_read())
    };
    let modified = to_eflags(instr.rflags_modified());
    let undef = to_eflags(instr.rflags_undefined());
    let m = instr.mnemonic();
    let is_shift = matches!(
        m,
        Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr | Mnemonic::Sar | Mnemonic::Rol | Mnemonic::Ror
    ) || matches!(m, Mnemonic::Rcl | Mnemonic::Rcr | Mnemonic::Shld | Mnemonic::Shrd);
    if !is_shift {
        return FlagEffect { read, defined: modified & !undef, undefined: undef };
    }
    let count = match shift_count_operand(instr) {
        Some(Some(imm)) => Some(imm),
        Some(None) => cl.map(u32::from),
        None => Some(1),
    };
    let bits = op_bits(instr);
    let (of, cf, af) = (flags::OF, flags::CF, flags::AF);
    // Flags that may become undefined for *some* count, for the unknown-count case.
    let maybe = match m {
        Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr => of | af | cf,
        Mnemonic::Sar | Mnemonic::Shld | Mnemonic::Shrd => of | af | cf,
        _ => of,
    };
    let Some(count) = count else {
        // CL unknown: nothing is certainly written, anything may become undefined.
        return FlagEffect { read, defined: 0, undefined: maybe };
    };
    let c = count & 0x1F;
    if c == 0 {
        // A masked count of 0 changes no flag (and reads none: RCL/RCR keep CF).
        return FlagEffect::default();
    }
    let mut undefined = if c == 1 { 0 } else { of };
    let mut defined = modified & !of;
    match m {
        Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr => {
            undefined |= af;
            defined &= !af;
            if c >= bits {
                // SDM: CF is undefined for SHL/SHR when the count is >= the operand size.
                undefined |= cf;
                defined &= !cf;
            }
        }
        Mnemonic::Sar => {
            undefined |= af;
            defined &= !af;
        }
        Mnemonic::Shld | Mnemonic::Shrd => {
            undefined |= af;
            defined &= !af;
            if c > bits {
                // Count larger than the operand: result and all flags undefined.
                undefined |= STATUS;
                defined = 0;
            }
        }
        Mnemonic::Rcl | Mnemonic::Rcr => {
            let tmp = if bits < 32 { c % (bits + 1) } else { c };
            if tmp == 0 {
                defined &= !cf;
            }
        }
        _ => {}
    }
    if c == 1 {
        defined |= modified & of;
    }
    FlagEffect { read, defined: defined & !undefined, undefined }
}

/// A flag read that depended on undefined flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taint {
    /// Number of the instruction (0-based) that read them.
    pub step: u64,
    /// The undefined flags it read (EFLAGS bits).
    pub flags: u32,
}

/// Follows the undefined status flags through a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UndefTracker {
    undefined: u32,
    taint: Option<Taint>,
}

impl UndefTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The flags undefined right now (EFLAGS bits).
    pub fn undefined(&self) -> u32 {
        self.undefined
    }

    /// The first read of an undefined flag, if any.
    pub fn taint(&self) -> Option<Taint> {
        self.taint
    }

    /// Records one executed instruction (`ecx` is ECX before it; `step` its 0-based number).
    pub fn executed(&mut self, instr: &Instruction, ecx: u32, step: u64) {
        let e = flag_effect(instr, Some(ecx));
        self.apply(e, step);
    }

    /// Records an exception delivered instead of executing an instruction: FLAGS were pushed
    /// (read) and no status flag changed.
    pub fn fault_delivered(&mut self, step: u64) {
        self.apply(FlagEffect { read: STATUS, defined: 0, undefined: 0 }, step);
    }

    fn apply(&mut self, e: FlagEffect, step: u64) {
        let r = e.read & self.undefined;
        if r != 0 && self.taint.is_none() {
            self.taint = Some(Taint { step, flags: r });
        }
        self.undefined = e.apply(self.undefined);
    }
}

/// True for codes whose count operand is CL (used by the generator's static analysis).
pub fn count_in_cl(instr: &Instruction) -> bool {
    matches!(shift_count_operand(instr), Some(None))
        && !matches!(instr.code(), Code::INVALID)
        && is_shift_or_rotate(instr.mnemonic())
}

/// True for the shift and rotate mnemonics (whose flags depend on the masked count).
pub fn is_shift_or_rotate(m: Mnemonic) -> bool {
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
            | Mnemonic::Shld
            | Mnemonic::Shrd
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn decode(bytes: &[u8]) -> Instruction {
        Decoder::new(16, bytes, DecoderOptions::NONE).decode()
    }

    #[test]
    fn logic_ops_leave_af_undefined() {
        let e = flag_effect(&decode(&[0x21, 0xD8]), None); // and ax, bx
        assert_eq!(e.undefined, flags::AF);
        assert_eq!(e.defined, flags::CF | flags::OF | flags::SF | flags::ZF | flags::PF);
    }

    #[test]
    fn mul_and_div() {
        let mul = flag_effect(&decode(&[0xF7, 0xE3]), None); // mul bx
        assert_eq!(mul.undefined, flags::SF | flags::ZF | flags::AF | flags::PF);
        assert_eq!(mul.defined, flags::CF | flags::OF);
        let div = flag_effect(&decode(&[0xF7, 0xF3]), None); // div bx
        assert_eq!(div.undefined, STATUS);
    }

    #[test]
    fn shift_counts() {
        let shl1 = flag_effect(&decode(&[0xD1, 0xE0]), None); // shl ax, 1
        assert_eq!(shl1.undefined, flags::AF);
        assert!(shl1.defined & flags::OF != 0);
        let shl_cl = decode(&[0xD3, 0xE0]); // shl ax, cl
        assert_eq!(flag_effect(&shl_cl, Some(0)), FlagEffect::default());
        assert_eq!(flag_effect(&shl_cl, Some(0x100)), FlagEffect::default()); // CL = 0
        assert_eq!(flag_effect(&shl_cl, Some(32)), FlagEffect::default()); // masked to 0
        let repe = decode(&[0xF3, 0xA6]); // repe cmpsb
        assert_eq!(flag_effect(&repe, Some(0x1_0000)), FlagEffect::default()); // CX = 0
        assert_eq!(flag_effect(&repe, Some(2)).defined, STATUS);
        assert_eq!(flag_effect(&repe, None).defined, 0);
        let e3 = flag_effect(&shl_cl, Some(3));
        assert_eq!(e3.undefined, flags::OF | flags::AF);
        assert!(e3.defined & flags::CF != 0);
        let e17 = flag_effect(&shl_cl, Some(17));
        assert!(e17.undefined & flags::CF != 0);
        let unknown = flag_effect(&shl_cl, None);
        assert_eq!(unknown.defined, 0);
        let rcl9 = flag_effect(&decode(&[0xC0, 0xD0, 0x09]), None); // rcl al, 9
        assert_eq!(rcl9.defined & flags::CF, 0);
        assert_eq!(rcl9.undefined, flags::OF);
        assert!(count_in_cl(&shl_cl));
    }

    #[test]
    fn tracker_masks_and_taints() {
        let mut t = UndefTracker::new();
        t.executed(&decode(&[0x21, 0xD8]), 0, 0); // and ax, bx: AF undefined
        assert_eq!(t.undefined(), flags::AF);
        t.executed(&decode(&[0x72, 0x00]), 0, 1); // jb: reads CF only
        assert_eq!(t.taint(), None);
        t.executed(&decode(&[0x9C]), 0, 2); // pushf reads AF
        assert_eq!(t.taint(), Some(Taint { step: 2, flags: flags::AF }));
        t.executed(&decode(&[0x01, 0xD8]), 0, 3); // add ax, bx defines all
        assert_eq!(t.undefined(), 0);
    }
}
