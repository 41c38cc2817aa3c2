//! Which 286 observations do not constrain a 386-or-later CPU in real mode.
//!
//! Two jobs:
//! * [`skip_reason`]: tests whose outcome is legitimately different on a 386+ (each reason is a
//!   documented architectural difference, see SOURCE.md's table and the comments below). These
//!   are skipped and counted, never silently dropped.
//! * [`architectural_flags_mask`]: flags that the Intel SDM leaves undefined for a 386+ but the
//!   suite's per-opcode `flags-mask` does not cover, because that mask records what varied on the
//!   test chip rather than the architectural rule (SOURCE.md surprise 9).
//!
//! Decoding here is only the little needed to name a form: legacy prefixes, the opcode (with
//! `0F xx`), and the ModR/M byte for the forms that have one.
use std::fmt;

use super::metadata::{FormInfo, Metadata};
use super::moo::{Reg16, Test};

/// An instruction form as the suite names its files: opcode, plus ModR/M reg for group opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Form {
    /// One-byte opcode, or `0x0Fxx` for two-byte opcodes.
    pub opcode: u16,
    pub reg: Option<u8>,
}

impl Form {
    /// Parses `80`, `80.1`, `0F01`, `0F01.5` (case-insensitive).
    pub fn parse(s: &str) -> Option<Form> {
        let (op, reg) = match s.split_once('.') {
            Some((op, r)) => (op, Some(r.parse::<u8>().ok().filter(|&r| r < 8)?)),
            None => (s, None),
        };
        if !matches!(op.len(), 2 | 4) || (op.len() == 4 && !op.to_ascii_uppercase().starts_with("0F")) {
            return None;
        }
        Some(Form { opcode: u16::from_str_radix(op, 16).ok()?, reg })
    }

    /// The form a file name stands for: `80.1.MOO.gz` → `80.1`, `00.MOO` → `00`.
    pub fn from_file_name(name: &str) -> Option<Form> {
        let upper = name.to_ascii_uppercase();
        let stem = upper.strip_suffix(".MOO.GZ").or_else(|| upper.strip_suffix(".MOO"))?;
        Form::parse(stem)
    }

    /// True when a filter entry `self` selects `other` (`80` selects every `80.r`).
    pub fn selects(&self, other: &Form) -> bool {
        self.opcode == other.opcode && (self.reg.is_none() || self.reg == other.reg)
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.opcode > 0xFF {
            write!(f, "{:04X}", self.opcode)?;
        } else {
            write!(f, "{:02X}", self.opcode)?;
        }
        if let Some(r) = self.reg {
            write!(f, ".{r}")?;
        }
        Ok(())
    }
}

/// The few facts about an instruction's encoding that classification needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub lock: bool,
    /// The last segment-override prefix (26, 2E, 36 or 3E), which is the one that applies.
    pub seg_override: Option<u8>,
    pub opcode: u16,
    pub modrm: Option<u8>,
    /// Bytes of prefixes and instruction (without the HLT terminator).
    pub len: usize,
}

impl Decoded {
    /// The ModR/M reg field.
    pub fn reg(&self) -> Option<u8> {
        self.modrm.map(|m| (m >> 3) & 7)
    }
    /// True when the ModR/M operand is in memory.
    pub fn modrm_is_memory(&self) -> bool {
        self.modrm.is_some_and(|m| m >> 6 != 3)
    }
    /// The form in the suite's naming (reg only for group opcodes).
    pub fn form(&self, md: &Metadata) -> Form {
        Form { opcode: self.opcode, reg: if md.is_group(self.opcode) { self.reg() } else { None } }
    }
}

/// True for the one-byte opcodes that have a ModR/M byte on a 286 (and a 386).
fn has_modrm(opcode: u16) -> bool {
    match opcode {
        0x00..=0x3F => opcode & 7 < 4,
        0x62 | 0x63 | 0x69 | 0x6B => true,
        0x80..=0x8F => true,
        0xC0 | 0xC1 | 0xC4..=0xC7 => true,
        0xD0..=0xD3 | 0xD8..=0xDF => true,
        0xF6 | 0xF7 | 0xFE | 0xFF => true,
        // 286 two-byte system opcodes: 0F00 and 0F01 groups, LAR, LSL.
        0x0F00..=0x0F03 => true,
        _ => false,
    }
}

/// Legacy prefixes of the 286. (64–67 are not prefixes on a 286 and the suite has no tests
/// that use them as such.)
fn is_prefix(b: u8) -> bool {
    matches!(b, 0x26 | 0x2E | 0x36 | 0x3E | 0xF0 | 0xF2 | 0xF3)
}

/// Decodes prefixes, opcode and ModR/M of `insn` (the test bytes without the HLT).
/// `None` when the bytes end before the opcode (or the ModR/M byte).
pub fn decode(insn: &[u8]) -> Option<Decoded> {
    let mut lock = false;
    let mut seg_override = None;
    let mut i = 0;
    while let Some(&b) = insn.get(i) {
        if !is_prefix(b) {
            break;
        }
        match b {
            0xF0 => lock = true,
            0xF2 | 0xF3 => {}
            _ => seg_override = Some(b),
        }
        i += 1;
    }
    let mut opcode = u16::from(*insn.get(i)?);
    i += 1;
    if opcode == 0x0F {
        opcode = 0x0F00 | u16::from(*insn.get(i)?);
        i += 1;
    }
    let modrm = if has_modrm(opcode) { Some(*insn.get(i)?) } else { None };
    Some(Decoded { lock, seg_override, opcode, modrm, len: insn.len() })
}

/// Why a test does not apply to a 386+ in real mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// ESC/x87 form (`status: fpu`): the test 286 had no FPU; a 386+ executes it or raises #NM.
    Fpu,
    /// LOCK on a form that is not lockable: accepted by the 286, #UD on a 386+.
    LockNotLockable,
    /// More than 10 bytes: #GP on the 286, executed on a 386+ (limit 15).
    TooLong,
    /// 8C/8E with reg 4 or 5: #UD on the 286, MOV to/from FS/GS on a 386+.
    MovFsGs,
    /// SS-segment overrun: int 13 on the 286, #SS (int 12) on a 386+.
    StackOverrun,
    /// String instruction faulting on a segment overrun: the 286 has already advanced SI/DI
    /// (and CX under REP) when it raises int 13; a 386+ faults before the iteration's updates.
    StringFault,
}

impl SkipReason {
    pub const ALL: [SkipReason; 6] = [
        SkipReason::Fpu,
        SkipReason::LockNotLockable,
        SkipReason::TooLong,
        SkipReason::MovFsGs,
        SkipReason::StackOverrun,
        SkipReason::StringFault,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Fpu => "x87/ESC form: the test 286 had no FPU; a 386+ executes it or raises #NM",
            SkipReason::LockNotLockable => {
                "LOCK on a non-lockable form: the 286 runs it, a 386+ raises #UD (vector 6 is not in the test RAM)"
            }
            SkipReason::TooLong => {
                "instruction longer than 10 bytes: #GP on the 286, executed on a 386+ (limit 15 bytes)"
            }
            SkipReason::MovFsGs => "8C/8E with reg 4/5: #UD on the 286, MOV to/from FS/GS on a 386+",
            SkipReason::StackOverrun => {
                "SS-segment overrun: int 13 on the 286, #SS (int 12) on a 386+ (vector 12 is not in the test RAM)"
            }
            SkipReason::StringFault => {
                "string instruction with a segment overrun: the 286 advances SI/DI (and CX) before its int 13, a 386+ faults first"
            }
        }
    }
}

/// The forms a 386+ accepts LOCK on (with a memory destination): ADD/ADC/AND/OR/SBB/SUB/XOR
/// r/m,reg; 80–83 /0–/6; XCHG; NOT/NEG; INC/DEC. (BT*, XADD, CMPXCHG are 0F forms, absent here.)
fn lockable(d: &Decoded) -> bool {
    let reg = d.reg().unwrap_or(0);
    let form_ok = match d.opcode {
        0x00 | 0x01 | 0x08 | 0x09 | 0x10 | 0x11 | 0x18 | 0x19 | 0x20 | 0x21 | 0x28 | 0x29 | 0x30 | 0x31 => {
            true
        }
        0x80..=0x83 => reg != 7,
        0x86 | 0x87 => true,
        0xF6 | 0xF7 => reg == 2 || reg == 3,
        0xFE | 0xFF => reg <= 1,
        _ => false,
    };
    form_ok && d.modrm_is_memory()
}

/// How an instruction uses the stack implicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StackUse {
    /// Pushes this many words (below SP).
    Pushes(u16),
    /// Pops this many words (from SP up).
    Pops(u16),
    /// LEAVE: SP = BP, then one pop.
    Leave,
    /// ENTER: pushes and copies frame pointers; not modelled, any int 13 counts as a stack one.
    Enter,
}

fn stack_use(d: &Decoded) -> Option<StackUse> {
    use StackUse::*;
    let reg = d.reg().unwrap_or(0);
    Some(match d.opcode {
        0x06 | 0x0E | 0x16 | 0x1E | 0x50..=0x57 | 0x68 | 0x6A | 0x9C | 0xE8 => Pushes(1),
        0xFF if reg == 2 || reg == 6 => Pushes(1),
        0x9A => Pushes(2),
        0xFF if reg == 3 => Pushes(2),
        0xCC..=0xCE => Pushes(3),
        0x60 => Pushes(8),
        0x07 | 0x17 | 0x1F | 0x58..=0x5F | 0x8F | 0x9D | 0xC2 | 0xC3 => Pops(1),
        0xCA | 0xCB => Pops(2),
        0xCF => Pops(3),
        0x61 => Pops(8),
        0xC9 => Leave,
        0xC8 => Enter,
        _ => return None,
    })
}

/// True when one of the instruction's implicit stack word accesses, computed from the INIT SP
/// (and BP for LEAVE), lies at offset FFFFh of SS, i.e. runs past the 64 KiB limit.
fn stack_access_overruns(test: &Test, d: &Decoded) -> bool {
    let sp = test.init.regs.values[Reg16::Sp as usize];
    let bp = test.init.regs.values[Reg16::Bp as usize];
    match stack_use(d) {
        None => false,
        Some(StackUse::Pushes(n)) => (1..=n).any(|k| sp.wrapping_sub(2 * k) == 0xFFFF),
        Some(StackUse::Pops(n)) => (0..n).any(|k| sp.wrapping_add(2 * k) == 0xFFFF),
        Some(StackUse::Leave) => bp == 0xFFFF,
        Some(StackUse::Enter) => true,
    }
}

/// True when the instruction has an explicit memory operand whose segment is SS: a ModR/M
/// memory operand based on BP (without override) or any overridable operand (ModR/M memory,
/// A0–A3 moffs, the string source of MOVS/CMPS/LODS/OUTS, XLAT) under a final `SS:` override.
fn has_ss_memory_operand(d: &Decoded) -> bool {
    let overridable =
        d.modrm_is_memory() || matches!(d.opcode, 0xA0..=0xA7 | 0xAC | 0xAD | 0x6E | 0x6F | 0xD7);
    match d.seg_override {
        Some(0x36) => overridable,
        Some(_) => false,
        None => d.modrm.is_some_and(|m| {
            let (md, rm) = (m >> 6, m & 7);
            md != 3 && (rm == 2 || rm == 3 || (rm == 6 && md != 0))
        }),
    }
}

/// Why `test` does not apply to a 386+ in real mode, or `None` when it must be compared.
pub fn skip_reason(test: &Test, d: &Decoded, info: Option<&FormInfo>) -> Option<SkipReason> {
    let vector = test.exception.map(|e| e.vector);
    if info.is_some_and(|i| i.status == "fpu") {
        return Some(SkipReason::Fpu);
    }
    if matches!(d.opcode, 0x8C | 0x8E) && matches!(d.reg(), Some(4 | 5)) {
        return Some(SkipReason::MovFsGs);
    }
    // A 386+ raises #UD for LOCK on a non-lockable form. When the 286 also raised #UD (an
    // invalid form), the outcomes agree and the test is kept.
    if d.lock && !lockable(d) && vector != Some(6) {
        return Some(SkipReason::LockNotLockable);
    }
    // The 286's limit is 10 bytes (#GP); a 386's is 15. Over 15 bytes both raise #GP and the
    // test is kept; a long form that the 286 rejected with #UD for another reason is kept too.
    if d.len > 10 && d.len <= 15 && vector == Some(13) {
        return Some(SkipReason::TooLong);
    }
    // A word at offset FFFFh of SS: the 286 raises int 13, a 386+ #SS (int 12). An int 13 is
    // charged to SS when an implicit stack access overruns (computed from SP/BP) or when the
    // instruction's explicit memory operand is SS-based (its only data segment, except for
    // string forms, whose ES:DI side is not told apart). DS/ES/CS overruns raise int 13 on
    // both CPUs and are kept.
    if vector == Some(13) && d.len <= 10 && (stack_access_overruns(test, d) || has_ss_memory_operand(d)) {
        return Some(SkipReason::StackOverrun);
    }
    // A string instruction (INS/OUTS/MOVS/CMPS/STOS/LODS/SCAS) whose word access overruns DS
    // or ES: the 286 raises int 13 only after updating SI/DI for the faulting iteration (and
    // CX under REP). Evidence: in every one of the 78 such tests of the shared slice FINA has
    // SI/DI advanced, e.g. A5 #41 `movsw` SI=DI=FFFF → SI=0001, A5 #42 (DF=1) SI A91A→A918,
    // DI FFFF→FFFD, 6D #1 `insw` DI FFFF→FFFD, AB #89 `stosw` DI FFFF→0001. A 386+ faults are
    // precise (the instruction restarts), which KVM's emulator also shows on all of them.
    if vector == Some(13) && matches!(d.opcode, 0x6C..=0x6F | 0xA4..=0xA7 | 0xAA..=0xAF) {
        return Some(SkipReason::StringFault);
    }
    None
}

/// Flags the Intel SDM leaves undefined on a 386+ for this execution, as a mask to AND with
/// FLAGS (bits cleared = undefined). Only shifts and rotates need this: the suite's masks for
/// them are inconsistent between byte and word forms (SOURCE.md surprise 9). The rules, for a
/// count masked to 5 bits (a masked count of 0 changes no flag):
/// * ROL/ROR/RCL/RCR (reg 0–3): OF is defined only for a count of 1.
/// * SHL/SHR/SAL/SAR (reg 4–7): OF is defined only for a count of 1; AF is undefined for any
///   nonzero count; for SHL/SAL/SHR CF is undefined when the count is ≥ the operand width.
pub fn architectural_flags_mask(test: &Test, d: &Decoded) -> u16 {
    const CF: u16 = 1;
    const AF: u16 = 1 << 4;
    const OF: u16 = 1 << 11;
    let insn = test.instruction();
    let (count, width) = match d.opcode {
        0xD0 => (1, 8),
        0xD1 => (1, 16),
        0xD2 => (test.init.regs.values[Reg16::Cx as usize] & 0xFF, 8),
        0xD3 => (test.init.regs.values[Reg16::Cx as usize] & 0xFF, 16),
        0xC0 => (insn.last().map_or(0, |&b| u16::from(b)), 8),
        0xC1 => (insn.last().map_or(0, |&b| u16::from(b)), 16),
        _ => return 0xFFFF,
    };
    let count = count & 0x1F;
    if count == 0 {
        return 0xFFFF;
    }
    let mut undefined = 0;
    if count != 1 {
        undefined |= OF;
    }
    let reg = d.reg().unwrap_or(0);
    if reg >= 4 {
        undefined |= AF;
        if reg != 7 && count >= width {
            undefined |= CF;
        }
    }
    !undefined
}

#[cfg(test)]
mod tests {
    use super::super::moo::Exception;
    use super::*;

    fn test_with(bytes: &[u8], vector: Option<u8>) -> Test {
        let mut t = Test { bytes: bytes.to_vec(), ..Test::default() };
        t.bytes.push(0xF4);
        t.exception = vector.map(|vector| Exception { vector, flag_address: 0 });
        t
    }

    fn skip(bytes: &[u8], vector: Option<u8>) -> Option<SkipReason> {
        let t = test_with(bytes, vector);
        let d = decode(t.instruction()).unwrap();
        skip_reason(&t, &d, None)
    }

    #[test]
    fn forms_parse_and_print() {
        assert_eq!(Form::parse("80.1"), Some(Form { opcode: 0x80, reg: Some(1) }));
        assert_eq!(Form::parse("f6"), Some(Form { opcode: 0xF6, reg: None }));
        assert_eq!(Form::parse("0F01.5"), Some(Form { opcode: 0x0F01, reg: Some(5) }));
        assert_eq!(Form::parse("8"), None);
        assert_eq!(Form::parse("80.8"), None);
        assert_eq!(Form::parse("1234"), None);
        assert_eq!(Form::from_file_name("C0.3.MOO.gz"), Some(Form { opcode: 0xC0, reg: Some(3) }));
        assert_eq!(Form::from_file_name("9c.moo"), Some(Form { opcode: 0x9C, reg: None }));
        assert_eq!(Form::from_file_name("metadata.json"), None);
        assert_eq!(Form { opcode: 0x0F01, reg: Some(5) }.to_string(), "0F01.5");
        assert_eq!(Form { opcode: 0x80, reg: Some(1) }.to_string(), "80.1");
        let f80 = Form::parse("80").unwrap();
        assert!(f80.selects(&Form { opcode: 0x80, reg: Some(3) }));
        assert!(!Form::parse("80.1").unwrap().selects(&Form { opcode: 0x80, reg: Some(3) }));
    }

    #[test]
    fn decodes_prefixes_opcode_modrm() {
        let d = decode(&[0x26, 0xF0, 0x36, 0x80, 0x46, 0x02, 0x05]).unwrap();
        assert!(d.lock);
        assert_eq!(d.seg_override, Some(0x36));
        assert_eq!((d.opcode, d.modrm, d.len), (0x80, Some(0x46), 7));
        assert_eq!(d.reg(), Some(0));
        assert_eq!(decode(&[0x90]).unwrap().modrm, None);
        assert_eq!(decode(&[0x0F, 0x01, 0xE0]).unwrap().opcode, 0x0F01);
        assert_eq!(decode(&[0x26, 0x2E]), None);
        assert_eq!(decode(&[0x00]), None);
    }

    #[test]
    fn skip_reasons() {
        // lock add [bx],al: lockable.
        assert_eq!(skip(&[0xF0, 0x00, 0x07], None), None);
        // lock add al,bl (register destination) and lock add al,[bx] (02): not lockable.
        assert_eq!(skip(&[0xF0, 0x00, 0xD8], None), Some(SkipReason::LockNotLockable));
        assert_eq!(skip(&[0xF0, 0x02, 0x07], None), Some(SkipReason::LockNotLockable));
        // lock cmp byte [bx],1 (80 /7): not lockable. lock lea ax,ax: #UD on both, kept.
        assert_eq!(skip(&[0xF0, 0x80, 0x3F, 0x01], None), Some(SkipReason::LockNotLockable));
        assert_eq!(skip(&[0xF0, 0x8D, 0xC0], Some(6)), None);
        // Eleven bytes, #GP on the 286.
        let mut long = vec![0x26; 9];
        long.extend_from_slice(&[0x00, 0x07]);
        assert_eq!(skip(&long, Some(13)), Some(SkipReason::TooLong));
        // Long, but #UD on the 286 too (les ax,bx): kept.
        let mut les = vec![0x26; 9];
        les.extend_from_slice(&[0xC4, 0xC3]);
        assert_eq!(skip(&les, Some(6)), None);
        assert_eq!(skip(&[0x8E, 0xE0], Some(6)), Some(SkipReason::MovFsGs));
        assert_eq!(skip(&[0x8C, 0xE8], Some(6)), Some(SkipReason::MovFsGs));
        assert_eq!(skip(&[0x8E, 0xC8], Some(6)), None);
        // Stack overruns: push ax with SP=1; pop ax with SP=FFFF; iret with SP=FFFB; leave
        // with BP=FFFF; mov ax,[bp+2]; ss: mov ax,[bx]; ss: lodsw.
        let with = |bytes: &[u8], sp: u16, bp: u16| {
            let mut t = test_with(bytes, Some(13));
            t.init.regs.set(Reg16::Sp, sp);
            t.init.regs.set(Reg16::Bp, bp);
            skip_reason(&t, &decode(t.instruction()).unwrap(), None)
        };
        assert_eq!(with(&[0x50], 1, 0), Some(SkipReason::StackOverrun));
        assert_eq!(with(&[0x58], 0xFFFF, 0), Some(SkipReason::StackOverrun));
        assert_eq!(with(&[0xCF], 0xFFFB, 0), Some(SkipReason::StackOverrun));
        assert_eq!(with(&[0x60], 0x0009, 0), Some(SkipReason::StackOverrun));
        assert_eq!(with(&[0xC9], 0x1234, 0xFFFF), Some(SkipReason::StackOverrun));
        // push word [si] faulting on its DS operand (SP is far from the end): #GP on both.
        assert_eq!(with(&[0xFF, 0x34], 0xE338, 0), None);
        assert_eq!(with(&[0x50], 0x0000, 0), None);
        assert_eq!(skip(&[0x8B, 0x46, 0x02], Some(13)), Some(SkipReason::StackOverrun));
        assert_eq!(skip(&[0x36, 0x8B, 0x07], Some(13)), Some(SkipReason::StackOverrun));
        assert_eq!(skip(&[0x36, 0xAD], Some(13)), Some(SkipReason::StackOverrun));
        assert_eq!(skip(&[0x8B, 0x07], Some(13)), None);
        assert_eq!(skip(&[0x3E, 0x8B, 0x46, 0x02], Some(13)), None);
        // mov ax,[bp] is mod 0 rm 6 = disp16, DS-based.
        assert_eq!(skip(&[0x8B, 0x06, 0x34, 0x12], Some(13)), None);
        assert_eq!(skip(&[0x50], None), None);
        assert_eq!(skip(&[0x50], Some(13)), None);
        // movsw / rep stosw faulting on DS/ES: string fault. Without a fault: compared.
        assert_eq!(skip(&[0xA5], Some(13)), Some(SkipReason::StringFault));
        assert_eq!(skip(&[0xF3, 0xAB], Some(13)), Some(SkipReason::StringFault));
        assert_eq!(skip(&[0xF3, 0xAB], None), None);
        let t = test_with(&[0xD8, 0xC0], None);
        let info = FormInfo { status: "fpu".into(), arch: None, flags: None, flags_mask: 0xFFFF };
        let d = decode(&[0xD8, 0xC0]).unwrap();
        assert_eq!(skip_reason(&t, &d, Some(&info)), Some(SkipReason::Fpu));
    }

    #[test]
    fn shift_undefined_flags() {
        let mask = |bytes: &[u8], cl: u16| {
            let mut t = test_with(bytes, None);
            t.init.regs.set(Reg16::Cx, 0xAB00 | cl);
            architectural_flags_mask(&t, &decode(t.instruction()).unwrap())
        };
        // rol al,1: all defined. rol al,3: OF undefined. rol al,0x20: count 0, all defined.
        assert_eq!(mask(&[0xD0, 0xC0], 0), 0xFFFF);
        assert_eq!(mask(&[0xC0, 0xC0, 0x03], 0), 0xF7FF);
        assert_eq!(mask(&[0xC0, 0xC0, 0x20], 0), 0xFFFF);
        // shl al,cl with cl=8: OF, AF, CF undefined; sar ax,cl with cl=17: CF defined.
        assert_eq!(mask(&[0xD2, 0xE0], 8), 0xF7EE);
        assert_eq!(mask(&[0xD3, 0xF8], 17), 0xF7EF);
        // shr ax,1: AF undefined only. shr ax,cl with cl=0x21 (masked 1): same.
        assert_eq!(mask(&[0xD1, 0xE8], 0), 0xFFEF);
        assert_eq!(mask(&[0xD3, 0xE8], 0x21), 0xFFEF);
        // Not a shift.
        assert_eq!(mask(&[0x00, 0xC0], 0), 0xFFFF);
    }
}
