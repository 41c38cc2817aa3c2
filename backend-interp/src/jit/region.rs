//! Loop regions: the stretch of guest code the compiled tier translates as one unit.
//!
//! A region starts at a hot block's first instruction (the head) and runs, in address order,
//! through the last branch back to the head found in the same 4 KiB page, then through any
//! later branch back into that stretch (the cases of a `switch` that rejoin the loop), at most
//! [`MAX_INSNS`] instructions, never past offset FFFFh. Inside it:
//! * a translatable instruction is a [`Slot::Plain`];
//! * a near `jmp`/`jcc`/`loop*` is a [`Slot::Branch`]: to an instruction of the region it stays
//!   in host code (forward branches inside loops, inner loops, the back edge), anywhere else
//!   it leaves with EIP at its target;
//! * `jmp r/m16` (a `switch` through a jump table) is a [`Slot::Indirect`]: its target is
//!   looked up among the region's run starts at run time, and leaves when it is none;
//! * a near `call` is a [`Slot::Call`] (the return address is pushed in host code; the callee
//!   runs in host code when it is part of the region, else the call leaves at its target) and
//!   a near `ret` a [`Slot::Ret`] (the popped address is looked up like an indirect jump's);
//! * any other instruction (string instructions, I/O, far transfers, ...) is a
//!   [`Slot::Leave`]: reaching it leaves compiled code with EIP on it, and the interpreter
//!   runs it.
//!
//! The functions the loop calls directly that lie in the same page join the region as further
//! pieces (each from its entry to where no branch seen reaches past an unconditional transfer,
//! at most 64 instructions; calls they make are not followed), so a loop calling small helpers
//! (`strlen`, a classifier) stays in host code.
//!
//! Instructions are charged against the budget per run ([`Region::run_end`]): a maximal
//! sequence of slots entered only at its first one (a piece start, a branch or call target,
//! the slot after a branch, an indirect jump, a call, a return or a leave, and — where an
//! indirect jump may land — every instruction after an unconditional transfer up to the first
//! that is not alignment padding), ending after a branch, an indirect jump, a call or a
//! return, or before a leave.
use iced_x86::{Code, ConditionCode, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Longest loop of a region, in guest instructions.
pub const MAX_INSNS: usize = 192;
/// Longest region with its callees, in guest instructions.
pub const MAX_TOTAL: usize = 320;
/// Longest callee, in guest instructions.
const MAX_CALLEE: usize = 64;

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
    /// A near `call`, planned as the push of its return address; the target as an offset
    /// from the region start (mod 64 KiB).
    Call(P, u32),
    /// A near `ret`, planned as the read of the return address.
    Ret(P),
    Leave,
}

impl<P> Slot<P> {
    /// Control never falls through to the next slot.
    pub fn transfers(&self) -> bool {
        matches!(
            self,
            Slot::Branch(Branch { kind: BranchKind::Jmp, .. })
                | Slot::Indirect(_)
                | Slot::Ret(_)
                | Slot::Leave
        )
    }

    /// The last slot of a run (a run start follows).
    fn ends_run(&self) -> bool {
        matches!(self, Slot::Branch(_) | Slot::Indirect(_) | Slot::Call(..) | Slot::Ret(_) | Slot::Leave)
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

/// A decoded region, ready to emit: the loop (piece 0) and the functions it calls (one piece
/// each), in address order of their offsets from the start.
#[derive(Debug)]
pub struct Region<P> {
    /// EIP of the first instruction.
    pub start: u32,
    pub slots: Vec<Slot<P>>,
    /// Offset of each slot's instruction from the region start (mod 64 KiB; increasing).
    pub offs: Vec<u32>,
    /// Bytes the loop covers (the end of its last back edge).
    pub bytes: u32,
    /// Each piece: its first slot and the offset just past its last instruction.
    pub pieces: Vec<(usize, u32)>,
    /// Offset of the lowest instruction, and bytes from it to the end of the highest one
    /// (the span a dispatch table covers).
    pub lo: u32,
    pub span: u32,
    /// Per slot: the index of the region slot its branch or call targets, when it is one.
    pub inner: Vec<Option<usize>>,
    /// Per slot: whether a run starts there (a budget charge is emitted).
    pub run_start: Vec<bool>,
    /// Per slot: the end (exclusive) of the charged run it belongs to.
    pub run_end: Vec<usize>,
}

impl<P> Region<P> {
    /// The guest code the region was translated from: (EIP, bytes) per piece.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        self.pieces
            .iter()
            .map(|&(i, end)| (ip_at(self.start, self.offs[i]), end.wrapping_sub(self.offs[i]) & 0xFFFF))
            .collect()
    }
}

/// The EIP at offset `off` (mod 64 KiB) from EIP `start`.
fn ip_at(start: u32, off: u32) -> u32 {
    start.wrapping_add(off) & 0xFFFF
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

/// The target of a near call the tier can follow (`call rel16`, or `call rel32` to an EIP
/// inside 64 KiB), as an offset from the region start.
fn call_target(ins: &Instruction, start_eip: u32) -> Option<u32> {
    let ip = match ins.code() {
        Code::Call_rel16 => ins.near_branch16() as u32,
        Code::Call_rel32_32 if ins.near_branch32() <= 0xFFFF => ins.near_branch32(),
        _ => return None,
    };
    Some(ip.wrapping_sub(start_eip) & 0xFFFF)
}

/// Guest code the region is decoded from: `code[0]` is at EIP `eip`.
#[derive(Clone, Copy)]
struct Window<'a> {
    code: &'a [u8],
    eip: u32,
    start: u32,
}

/// One decoded instruction.
#[derive(Clone, Copy)]
struct Decoded<P> {
    slot: Slot<P>,
    off: u32,
    len: u32,
    padding: bool,
}

impl Window<'_> {
    /// Decodes from EIP `ip` while `more(slots so far, next offset)` holds, at most `max`
    /// instructions, never past the window or offset FFFFh.
    fn decode<P: Copy>(
        &self,
        ip: u32,
        max: usize,
        plan: &impl Fn(&Instruction, u32) -> Option<P>,
        mut more: impl FnMut(&[Decoded<P>], u32) -> bool,
    ) -> Vec<Decoded<P>> {
        let mut out = Vec::new();
        let Some(at) = ip.checked_sub(self.eip).map(|a| a as usize).filter(|&a| a < self.code.len()) else {
            return out;
        };
        let mut dec = Decoder::with_ip(16, &self.code[at..], u64::from(ip), DecoderOptions::NONE);
        let mut off = ip.wrapping_sub(self.start) & 0xFFFF;
        while dec.can_decode() && out.len() < max && more(&out, off) {
            let ins = dec.decode();
            let len = ins.len() as u32;
            if ins.is_invalid() || ins.ip32() + len > 0x1_0000 {
                break;
            }
            let slot = if let Some(b) = branch_of(&ins, self.start) {
                Slot::Branch(b)
            } else {
                let p = plan(&ins, off);
                match (call_target(&ins, self.start), ins.mnemonic()) {
                    (Some(t), _) => p.map_or(Slot::Leave, |p| Slot::Call(p, t)),
                    (None, Mnemonic::Ret) => p.map_or(Slot::Leave, Slot::Ret),
                    _ if ins.code() == Code::Jmp_rm16 => p.map_or(Slot::Leave, Slot::Indirect),
                    _ => p.map_or(Slot::Leave, Slot::Plain),
                }
            };
            out.push(Decoded { slot, off, len, padding: is_padding(&ins) });
            off = (off + len) & 0xFFFF;
        }
        out
    }

    /// The loop: from the start through its last branch back to the start (`None`: none).
    fn main<P: Copy>(&self, plan: &impl Fn(&Instruction, u32) -> Option<P>) -> Option<Vec<Decoded<P>>> {
        let mut all = self.decode(self.start, MAX_INSNS, plan, |_, _| true);
        let mut n = all.iter().rposition(|d| matches!(d.slot, Slot::Branch(b) if b.target == 0))?;
        // Later branches back into the loop (the cases of a switch that rejoin it) join it.
        let mut end = all[n].off + all[n].len;
        for (i, d) in all.iter().enumerate().skip(n + 1) {
            if matches!(d.slot, Slot::Branch(b) if b.target < end) {
                (n, end) = (i, d.off + d.len);
            }
        }
        all.truncate(n + 1);
        Some(all)
    }

    /// A function called from the region: from `ip` to where no branch seen so far reaches
    /// past an unconditional transfer, stopping before code another piece holds (`taken`:
    /// IP ranges). Empty when it does not end within [`MAX_CALLEE`] instructions (a large
    /// function, or the one the loop is in: left to the interpreter and its own regions).
    fn callee<P: Copy>(
        &self,
        ip: u32,
        max: usize,
        taken: &[(u32, u32)],
        plan: &impl Fn(&Instruction, u32) -> Option<P>,
    ) -> Vec<Decoded<P>> {
        let start = self.start;
        let (mut reach, mut ended) = (ip, false);
        let mut more = |out: &[Decoded<P>], off: u32| {
            let next = ip_at(start, off);
            if let Some(d) = out.last() {
                if let Slot::Branch(b) = d.slot {
                    reach = reach.max(ip_at(start, b.target));
                }
                ended = d.slot.transfers() && next > reach;
            }
            ended |= taken.iter().any(|&(a, e)| (a..e).contains(&next));
            !ended
        };
        let f = self.decode(ip, max.min(MAX_CALLEE), plan, &mut more);
        if ended {
            f
        } else {
            Vec::new()
        }
    }
}

/// Decodes the region starting at EIP `start_eip` from `code` (whose first byte is at EIP
/// `code_eip`; it ends at the end of the page), planning each instruction with
/// `plan(instruction, offset)`: the loop through the last branch back to the start, then the
/// functions it calls that lie in `code`. `None` when no branch back to the start is found.
pub fn discover<P: Copy>(
    code: &[u8],
    code_eip: u32,
    start_eip: u32,
    plan: impl Fn(&Instruction, u32) -> Option<P>,
) -> Option<Region<P>> {
    let w = Window { code, eip: code_eip, start: start_eip };
    let main = w.main(&plan)?;
    let bytes = end_of(&main);
    // IP ranges the pieces hold (a callee entry inside one is not decoded again).
    let mut taken = vec![(start_eip, start_eip + bytes)];
    let mut targets: Vec<u32> = main
        .iter()
        .filter_map(|d| if let Slot::Call(_, t) = d.slot { Some(ip_at(start_eip, t)) } else { None })
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let mut pieces = vec![main];
    let mut total = pieces[0].len();
    for ip in targets {
        let f = w.callee(ip, MAX_TOTAL - total, &taken, &plan);
        if let Some(last) = f.last() {
            taken.push((ip, ip_at(start_eip, last.off) + last.len));
            total += f.len();
            pieces.push(f);
        }
    }
    pieces.sort_by_key(|p| p[0].off);
    assemble(start_eip, bytes, &pieces)
}

/// The offset just past a piece's last instruction.
fn end_of<P>(p: &[Decoded<P>]) -> u32 {
    p.last().map_or(0, |d| (d.off + d.len) & 0xFFFF)
}

/// Joins the pieces (in offset order) into a region.
fn assemble<P: Copy>(start: u32, bytes: u32, pieces: &[Vec<Decoded<P>>]) -> Option<Region<P>> {
    let all: Vec<&Decoded<P>> = pieces.iter().flatten().collect();
    let slots: Vec<Slot<P>> = all.iter().map(|d| d.slot).collect();
    let offs: Vec<u32> = all.iter().map(|d| d.off).collect();
    let padding: Vec<bool> = all.iter().map(|d| d.padding).collect();
    let mut piece_list = Vec::new();
    let mut first = 0;
    for p in pieces {
        piece_list.push((first, end_of(p)));
        first += p.len();
    }
    // Lowest and highest instruction by EIP (offsets wrap below the start).
    let lo_ip = pieces.iter().map(|p| ip_at(start, p[0].off)).min()?;
    let hi_ip =
        pieces.iter().map(|p| ip_at(start, p[0].off) + (end_of(p).wrapping_sub(p[0].off) & 0xFFFF)).max()?;
    let inner: Vec<Option<usize>> = slots
        .iter()
        .map(|s| match s {
            Slot::Branch(Branch { target, .. }) | Slot::Call(_, target) => offs.binary_search(target).ok(),
            _ => None,
        })
        .collect();
    let run_start = run_starts(&slots, &inner, &padding, &piece_list);
    let run_end = run_ends(&slots, &run_start);
    Some(Region {
        start,
        slots,
        offs,
        bytes,
        pieces: piece_list,
        lo: lo_ip.wrapping_sub(start) & 0xFFFF,
        span: hi_ip - lo_ip,
        inner,
        run_start,
        run_end,
    })
}

/// Slots where a run starts: the first of each piece, every branch or call target, every slot
/// after a branch, an indirect jump, a call, a return or a leave, and after an unconditional
/// transfer every padding slot and the first slot after them (where an indirect jump may land).
fn run_starts<P>(
    slots: &[Slot<P>],
    inner: &[Option<usize>],
    padding: &[bool],
    pieces: &[(usize, u32)],
) -> Vec<bool> {
    let mut start = vec![false; slots.len()];
    let mut landing = false;
    for &(first, _) in pieces {
        start[first] = true;
    }
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
    use iced_x86::BlockEncoderOptions;

    fn region(f: impl FnOnce(&mut CodeAssembler, CodeLabel) -> Result<(), IcedError>) -> Region<()> {
        let mut a = CodeAssembler::new(16).expect("asm");
        let mut head = a.create_label();
        a.set_label(&mut head).expect("label");
        f(&mut a, head).expect("body");
        let code = a.assemble(0x100).expect("assemble");
        // Plain: anything but CALL/RET and string instructions.
        discover(&code, 0x100, 0x100, |i, _| (!i.is_call_near() && !i.is_string_instruction()).then_some(()))
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
    fn later_branches_back_into_the_loop_join_it() {
        let r = region(|a, head| {
            let mut mid = a.create_label();
            a.add(ax, bx)?; // 0
            a.set_label(&mut mid)?;
            a.dec(dx)?; // 1
            a.jnz(head)?; // 2: back edge
            a.inc(cx)?; // 3: a case after the back edge
            a.jmp(mid)?; // 4: rejoins the loop
            a.hlt() // not in the region
        });
        assert_eq!(r.slots.len(), 5);
        assert_eq!(r.inner[4], Some(1));
        assert_eq!(r.pieces, vec![(0, r.bytes)]);
    }

    #[test]
    fn small_callees_join_as_pieces_large_ones_do_not() {
        let mut a = CodeAssembler::new(16).expect("asm");
        let (mut small, mut head, mut large) = (a.create_label(), a.create_label(), a.create_label());
        a.set_label(&mut small).expect("label");
        a.inc(ax).expect("inc");
        a.ret().expect("ret");
        a.set_label(&mut head).expect("label");
        a.call(small).expect("call");
        a.call(large).expect("call");
        a.dec(cx).expect("dec");
        a.jnz(head).expect("back edge");
        a.hlt().expect("hlt");
        a.set_label(&mut large).expect("label");
        for _ in 0..MAX_CALLEE {
            a.inc(dx).expect("inc");
        }
        a.ret().expect("ret");
        let r = a.assemble_options(0x100, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).expect("asm");
        let start = r.label_ip(&head).expect("head") as u32;
        let code = r.inner.code_buffer;
        let r = discover(&code, 0x100, start, |_, _| Some(())).expect("region");
        // The loop (4 slots, 9 bytes), then the small callee at offset -2 (mod 64 KiB).
        assert_eq!(r.slots.len(), 6);
        assert_eq!(r.pieces, vec![(0, 9), (4, 0)]);
        assert_eq!(r.offs[4], 0xFFFE);
        assert_eq!(r.inner[0], Some(4));
        assert!(matches!(r.slots[1], Slot::Call((), _)) && r.inner[1].is_none());
        assert!(matches!(r.slots[5], Slot::Ret(())));
        assert_eq!((r.lo, r.span), (0xFFFE, 11));
        assert!(r.run_start[1] && r.run_start[2] && r.run_start[4]);
    }

    #[test]
    fn no_back_edge_is_no_region() {
        let mut a = CodeAssembler::new(16).expect("asm");
        a.add(ax, bx).expect("add");
        a.jnz(0x300u64).expect("jnz");
        let code = a.assemble(0x100).expect("assemble");
        assert!(discover(&code, 0x100, 0x100, |_, _| Some(())).is_none());
    }
}
