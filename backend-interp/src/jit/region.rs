//! Loop regions: the stretch of guest code the compiled tier translates as one unit.
//!
//! A region starts at a hot block's first instruction (the head) and runs, in address order,
//! through the last branch back to the head found in the same 4 KiB page (at most
//! [`MAX_INSNS`] instructions, never past offset FFFFh). Inside it:
//! * a translatable instruction is a [`Slot::Plain`];
//! * a near `jmp`/`jcc`/`loop*` is a [`Slot::Branch`]: to an instruction of the region it stays
//!   in host code (forward branches inside loops, inner loops, the back edge), anywhere else
//!   it leaves with EIP at its target;
//! * `jmp r/m16` (a `switch` through a jump table) is a [`Slot::Indirect`]: its target is
//!   looked up among the region's run starts at run time, and leaves when it is none;
//! * any other instruction (calls, returns, string instructions, I/O, ...) is a
//!   [`Slot::Leave`]: reaching it leaves compiled code with EIP on it, and the interpreter
//!   runs it.
//!
//! Instructions are charged against the budget per run ([`Region::run_end`]): a maximal
//! sequence of slots entered only at its first one (the region start, a branch target, the
//! slot after a branch, an indirect jump or a leave, and — where an indirect jump may land —
//! every instruction after an unconditional transfer up to the first that is not alignment
//! padding), ending after a branch or an indirect jump, or before a leave.
use iced_x86::{Code, ConditionCode, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Longest region, in guest instructions.
pub const MAX_INSNS: usize = 128;

/// How a branch decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchKind {
    Jmp,
    Jcc(ConditionCode),
    /// LOOP/LOOPE/LOOPNE (`cond`: `Some(true)` LOOPE, `Some(false)` LOOPNE) counting with CX,
    /// or ECX when `wide`.
    Loop {
        wide: bool,
        cond: Option<bool>,
    },
}

/// A near branch: its kind and its target as an offset from the region start (mod 64 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    pub kind: BranchKind,
    pub target: u32,
}

/// One guest instruction of a region.
#[derive(Debug, Clone, Copy)]
pub enum Slot<P> {
    Plain(P),
    Branch(Branch),
    /// `jmp r/m16`, planned as a read of its operand.
    Indirect(P),
    Leave,
}

impl<P> Slot<P> {
    /// Control never falls through to the next slot.
    fn transfers(&self) -> bool {
        matches!(self, Slot::Branch(Branch { kind: BranchKind::Jmp, .. }) | Slot::Indirect(_) | Slot::Leave)
    }

    /// The last slot of a run (a run start follows).
    fn ends_run(&self) -> bool {
        matches!(self, Slot::Branch(_) | Slot::Indirect(_) | Slot::Leave)
    }
}

/// Alignment padding compilers put between functions and jump targets: NOP forms,
/// `xchg ax, ax`, `lea r, [r]` / `lea r, [r + 0]`.
fn is_padding(ins: &Instruction) -> bool {
    match ins.mnemonic() {
        Mnemonic::Nop => true,
        Mnemonic::Xchg => {
            ins.op_count() == 2
                && ins.op0_kind() == OpKind::Register
                && ins.op0_register() == ins.op1_register()
        }
        Mnemonic::Lea => {
            ins.memory_index() == Register::None
                && ins.memory_displacement64() == 0
                && ins.memory_base().full_register32() == ins.op0_register().full_register32()
                && ins.memory_base().size() == ins.op0_register().size()
        }
        _ => false,
    }
}

/// A decoded region, ready to emit.
#[derive(Debug)]
pub struct Region<P> {
    /// EIP of the first instruction.
    pub start: u32,
    pub slots: Vec<Slot<P>>,
    /// Offset of each slot's instruction from the region start.
    pub offs: Vec<u32>,
    /// Bytes the region covers (the end of its last back edge).
    pub bytes: u32,
    /// Per slot: the index of the region slot its branch targets, when it is one.
    pub inner: Vec<Option<usize>>,
    /// Per slot: whether a run starts there (a budget charge is emitted).
    pub run_start: Vec<bool>,
    /// Per slot: the end (exclusive) of the charged run it belongs to.
    pub run_end: Vec<usize>,
}

/// The near branch `ins` is, when the tier can follow it (16-bit targets only).
fn branch_of(ins: &Instruction, start_eip: u32) -> Option<Branch> {
    if ins.op0_kind() != OpKind::NearBranch16 {
        return None;
    }
    let kind = match ins.code() {
        Code::Jmp_rel8_16 | Code::Jmp_rel16 => BranchKind::Jmp,
        Code::Loop_rel8_16_CX => BranchKind::Loop { wide: false, cond: None },
        Code::Loope_rel8_16_CX => BranchKind::Loop { wide: false, cond: Some(true) },
        Code::Loopne_rel8_16_CX => BranchKind::Loop { wide: false, cond: Some(false) },
        Code::Loop_rel8_16_ECX => BranchKind::Loop { wide: true, cond: None },
        Code::Loope_rel8_16_ECX => BranchKind::Loop { wide: true, cond: Some(true) },
        Code::Loopne_rel8_16_ECX => BranchKind::Loop { wide: true, cond: Some(false) },
        _ if ins.is_jcc_short_or_near() && ins.condition_code() != ConditionCode::None => {
            BranchKind::Jcc(ins.condition_code())
        }
        _ => return None,
    };
    Some(Branch { kind, target: (ins.near_branch16() as u32).wrapping_sub(start_eip) & 0xFFFF })
}

/// Decodes the region at the start of `code` (EIP `start_eip`; `code` ends at the page end),
/// planning each instruction with `plan(instruction, offset)`. `None` when no branch back to
/// the start is found.
pub fn discover<P: Copy>(
    code: &[u8],
    start_eip: u32,
    plan: impl Fn(&Instruction, u32) -> Option<P>,
) -> Option<Region<P>> {
    let mut dec = Decoder::with_ip(16, code, u64::from(start_eip), DecoderOptions::NONE);
    let (mut slots, mut offs, mut padding) = (Vec::new(), Vec::new(), Vec::new());
    let (mut off, mut n, mut bytes) = (0u32, 0usize, 0u32);
    while dec.can_decode() && slots.len() < MAX_INSNS {
        let ins = dec.decode();
        let len = ins.len() as u32;
        if ins.is_invalid() || start_eip + off + len > 0x1_0000 {
            break;
        }
        let slot = match branch_of(&ins, start_eip) {
            Some(b) => Slot::Branch(b),
            None if ins.code() == Code::Jmp_rm16 => plan(&ins, off).map_or(Slot::Leave, Slot::Indirect),
            None => plan(&ins, off).map_or(Slot::Leave, Slot::Plain),
        };
        slots.push(slot);
        offs.push(off);
        padding.push(is_padding(&ins));
        off += len;
        if matches!(slot, Slot::Branch(b) if b.target == 0) {
            (n, bytes) = (slots.len(), off);
        }
    }
    if n == 0 {
        return None;
    }
    slots.truncate(n);
    offs.truncate(n);
    let inner: Vec<Option<usize>> = slots
        .iter()
        .map(|s| match s {
            Slot::Branch(b) => offs.binary_search(&b.target).ok(),
            _ => None,
        })
        .collect();
    let run_start = run_starts(&slots, &inner, &padding);
    let run_end = run_ends(&slots, &run_start);
    Some(Region { start: start_eip, slots, offs, bytes, inner, run_start, run_end })
}

/// Slots where a run starts: the first, every branch target, every slot after a branch, an
/// indirect jump or a leave, and after an unconditional transfer every padding slot and the
/// first slot after them (where an indirect jump may land).
fn run_starts<P>(slots: &[Slot<P>], inner: &[Option<usize>], padding: &[bool]) -> Vec<bool> {
    let mut start = vec![false; slots.len()];
    start[0] = true;
    let mut landing = false;
    for (i, s) in slots.iter().enumerate() {
        if landing {
            start[i] = true;
            landing = padding[i];
        }
        if let Some(t) = inner[i] {
            start[t] = true;
        }
        if s.ends_run() && i + 1 < slots.len() {
            start[i + 1] = true;
        }
        landing |= s.transfers();
    }
    start
}

/// For each slot, the end of its run: slots up to and including a branch, stopping before a
/// leave or the next run start (a leave's own run is empty).
fn run_ends<P>(slots: &[Slot<P>], start: &[bool]) -> Vec<usize> {
    let mut end = vec![0; slots.len()];
    let mut cur = 0;
    for i in 0..slots.len() {
        if start[i] || matches!(slots[i], Slot::Leave) {
            let mut k = i;
            while k < slots.len() && !matches!(slots[k], Slot::Leave) && (k == i || !start[k]) {
                k += 1;
                if slots[k - 1].ends_run() {
                    break;
                }
            }
            cur = k;
        }
        end[i] = cur;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::code_asm::*;

    fn region(f: impl FnOnce(&mut CodeAssembler, CodeLabel) -> Result<(), IcedError>) -> Region<()> {
        let mut a = CodeAssembler::new(16).expect("asm");
        let mut head = a.create_label();
        a.set_label(&mut head).expect("label");
        f(&mut a, head).expect("body");
        let code = a.assemble(0x100).expect("assemble");
        // Plain: anything but CALL/RET and string instructions.
        discover(&code, 0x100, |i, _| (!i.is_call_near() && !i.is_string_instruction()).then_some(()))
            .expect("region")
    }

    #[test]
    fn forward_branch_inside_a_loop_splits_runs_and_stays_inside() {
        let r = region(|a, head| {
            let mut skip = a.create_label();
            a.add(ax, bx)?; // 0
            a.jz(skip)?; // 1: inner forward branch
            a.inc(cx)?; // 2
            a.set_label(&mut skip)?;
            a.dec(dx)?; // 3
            a.jnz(head)?; // 4: back edge
            a.hlt() // not in the region
        });
        assert_eq!(r.slots.len(), 5);
        assert_eq!(r.inner[1], Some(3));
        assert_eq!(r.inner[4], Some(0));
        assert_eq!(r.run_start, vec![true, false, true, true, false]);
        assert_eq!(r.run_end, vec![2, 2, 3, 5, 5]);
    }

    #[test]
    fn a_call_leaves_and_the_region_ends_at_the_last_back_edge() {
        let r = region(|a, head| {
            a.add(ax, bx)?; // 0
            a.call(0x400u64)?; // 1: leave
            a.inc(cx)?; // 2
            a.jnz(head)?; // 3: back edge
            a.jmp(0x300u64)?; // 4: past the back edge, not in the region
            a.jmp(head) // 5: a later back edge: the region grows to it
        });
        assert_eq!(r.slots.len(), 6);
        assert!(matches!(r.slots[1], Slot::Leave));
        assert_eq!(r.run_end[..4], [1, 1, 4, 4]);
        assert_eq!(r.inner[4], None);
        assert_eq!(r.run_start, vec![true, false, true, false, true, true]);
    }

    #[test]
    fn landing_places_after_a_transfer_start_runs_past_the_padding() {
        let r = region(|a, head| {
            a.add(ax, bx)?; // 0
            a.jmp(word_ptr(si + 0x40))?; // 1: indirect (planned as plain here: a leave-free region)
            a.nop()?; // 2: padding
            a.db(&[0x8D, 0x74, 0x00])?; // 3: lea si, [si + 0]
            a.inc(cx)?; // 4: where a switch lands
            a.inc(dx)?; // 5
            a.jnz(head) // 6
        });
        assert!(matches!(r.slots[1], Slot::Indirect(())));
        assert_eq!(r.run_start, vec![true, false, true, true, true, false, false]);
        assert_eq!(r.run_end, vec![2, 2, 3, 4, 7, 7, 7]);
    }

    #[test]
    fn no_back_edge_is_no_region() {
        let mut a = CodeAssembler::new(16).expect("asm");
        a.add(ax, bx).expect("add");
        a.jnz(0x300u64).expect("jnz");
        let code = a.assemble(0x100).expect("assemble");
        assert!(discover(&code, 0x100, |_, _| Some(())).is_none());
    }
}
