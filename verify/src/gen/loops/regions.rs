//! Loop *regions* for the compiled tier: loops whose body has forward branches that stay
//! inside it, branches that leave it, calls to helper functions (which the tier compiles with
//! the loop), pushes and pops, and instructions the tier leaves to the interpreter (CLD/STD,
//! Bochs' `xchg bx, bx`), so that one compiled unit spans several blocks and functions.
//!
//! Layout (one assembled blob at `CODE_SEG:CODE_IP`; the helpers come first or last):
//!
//! ```text
//! [helpers]
//! head:  chunk; [cmp r8, imm8; jcc skip_k | jcc out]; [call | push/pop | leave]; [switch]; ...
//!        dec counter; jnz head      (or loop head)
//!        hlt
//! out:   hlt
//! [helpers]
//! tables: dw case, case, case, case  (one per switch: later chunk starts or `out`)
//! ```
//! A switch is `and edx, 3; jmp word [cs:edx*2 + table]`. The helpers (`Helper`): a
//! one-liner, one taking a pushed argument (`ret 2`), a 32-bit one (`calld`/`retd`, two
//! returns), one calling another, and one with a loop inside.
//! Every instruction that reads a status flag, and every generated `jcc`, gets a
//! `cmp r8, imm8` right before it, so no path reads an undefined flag; the flags still
//! undefined at a stop are those of the path actually run (the caller tracks them with
//! [`crate::flagmask::UndefTracker`]).
use iced_x86::code_asm::{self as asm, word_ptr, CodeAssembler, CodeLabel};
use iced_x86::code_asm::{ax, bp, bx, di, ebx, ecx, edx, sp};
use iced_x86::BlockEncoderOptions;
use iced_x86::{Code, ConditionCode, IcedError, Instruction, InstructionInfoFactory, Register};
use picoqemu_core::{flags, CpuState};

use super::{
    data_seg, definer, emit_term, gen_insn, seg, Catalogue, Ctx, Disp, Term, CODE_IP, CODE_SEG, CONDS, SEGS,
};
use crate::flagmask::flag_effect;
use crate::rng::SplitMix64;

/// A generated region program.
#[derive(Debug, Clone)]
pub struct RegionProgram {
    pub init: CpuState,
    pub code: Vec<u8>,
    /// IP of the code's first byte (the code is at `CODE_SEG:ip`; `init.eip` is the loop head,
    /// after the helpers when they come first).
    pub ip: u16,
    /// Seed of the data area's random contents (`FILL_BASE`, `FILL_LEN`).
    pub fill_seed: u64,
    /// Instruction budget of a whole run.
    pub cap: u64,
}

/// One piece of the loop body.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Insn(Instruction),
    /// `jcc` to the start of chunk `k` (later in the body).
    Skip(ConditionCode, usize),
    /// `jcc out` (leaves the region and ends the program).
    Out(ConditionCode),
    /// A call of a helper (with its pushed argument when it takes one).
    Call(Helper),
    /// `and edx, 3; jmp word [cs:edx*2 + table]`: a switch whose four cases are chunk starts
    /// (later chunks, `chunks` = the counter) or, as `usize::MAX`, `out`.
    Switch([usize; 4]),
}

/// The helper functions calls go to (all keep BX, SI, DI, BP and CX, and set every flag they
/// change from defined inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Helper {
    /// `inc word [di+10h]; ret`.
    Inc,
    /// Called after `push ax`: `push bp; mov bp, sp; mov ax, [bp+4]; add [di+12h], ax; pop bp;
    /// ret 2`.
    Arg,
    /// Called with `calld`: `push ebx; mov ebx, 7; add [di+14h], bx; jz r2; inc word [di+16h];
    /// pop ebx; retd; r2: pop ebx; retd`.
    Wide,
    /// `call Inc; inc word [di+18h]; ret` (a call inside a callee).
    Nested,
    /// `push cx; mov cx, 3; l: inc word [di+1Ah]; loop l; pop cx; ret`.
    Looping,
    /// `inc word [di+1Ch]; dec ecx; jz out` running into the loop head (`jmp head` when the
    /// helpers come last): entry code that falls into the loop, as a function's prologue
    /// falls into its loop. It never returns (the stack grows by a word per call) and counts
    /// a pass.
    Into,
}

const HELPERS: [Helper; 6] =
    [Helper::Inc, Helper::Arg, Helper::Wide, Helper::Nested, Helper::Looping, Helper::Into];

/// Calls, pushes and pops (compiled), and instructions the compiled tier leaves to the
/// interpreter, with no flag effects a later branch could read undefined.
fn leave_insn(rng: &mut SplitMix64) -> Vec<Piece> {
    // Both or neither: a lone push or pop would unbalance the stack the returns use.
    let pair = |push: Option<Instruction>, pop: Option<Instruction>| match (push, pop) {
        (Some(a), Some(b)) => vec![Piece::Insn(a), Piece::Insn(b)],
        _ => Vec::new(),
    };
    match rng.below(8) {
        0 | 5 => vec![Piece::Call(*rng.pick(&HELPERS))],
        7 => vec![Piece::Call(Helper::Into)],
        1 => vec![Piece::Insn(Instruction::with(Code::Cld))],
        2 => {
            let r = *rng.pick(&[Register::AX, Register::DX, Register::BX]);
            pair(Instruction::with1(Code::Push_r16, r).ok(), Instruction::with1(Code::Pop_r16, r).ok())
        }
        6 => match rng.below(3) {
            0 => pair(
                Instruction::with1(Code::Push_r32, *rng.pick(&[Register::EAX, Register::EBX, Register::ESP]))
                    .ok(),
                Instruction::with1(Code::Pop_r32, *rng.pick(&[Register::EAX, Register::EDX])).ok(),
            ),
            1 => pair(
                Instruction::with1(Code::Push_imm16, rng.value(16)).ok(),
                Instruction::with1(Code::Pop_r16, Register::DX).ok(),
            ),
            _ => pair(
                Instruction::with1(Code::Pushd_imm8, i32::from(rng.value(8) as u8 as i8)).ok(),
                Instruction::with1(Code::Pop_rm32, Register::EAX).ok(),
            ),
        },
        3 => vec![Piece::Insn(
            Instruction::with2(Code::Xchg_rm16_r16, Register::BX, Register::BX).unwrap_or_default(),
        )],
        _ => vec![Piece::Insn(Instruction::with(Code::Std)), Piece::Insn(Instruction::with(Code::Cld))],
    }
}

/// Generates one region program.
pub fn generate_region(rng: &mut SplitMix64, cat: &Catalogue) -> RegionProgram {
    let mut init =
        CpuState { eflags: flags::FIXED | (rng.next_u32() & flags::STATUS), ..CpuState::default() };
    init.segs[1] = seg(CODE_SEG);
    for g in 0..8 {
        init.gpr[g] = rng.value(32);
    }
    for s in [0, 2, 3, 4, 5] {
        init.segs[s] = data_seg(rng);
    }
    // BX, SI, DI (and BP) are unwritten bases; CX counts the passes; SP stays a stack.
    let bases = 0b1110_1000u8;
    let a32 = rng.chance(1, 3);
    for g in [3usize, 5, 6, 7] {
        let lo = rng.below(0x400) as u32;
        init.gpr[g] = if a32 { lo } else { (init.gpr[g] & 0xFFFF_0000) | lo };
    }
    // Now and then SP 0: the first push wraps to FFFEh/FFFCh.
    init.gpr[4] = if rng.chance(1, 6) { 0 } else { 0x8000 + rng.below(0x100) as u32 * 2 };
    let iters = rng.range(1, 200) as u32;
    init.gpr[1] = iters;
    let mut segs = vec![Register::None; 6];
    segs.extend_from_slice(&SEGS);
    let cx = Ctx { no_write: bases | 0b0001_0010, bases, disp: Disp::Small, segs, mem_pct: 40, a32 };
    let pieces = body(rng, cat, &cx);
    let pass = pieces.len() as u64 + 4;
    // A short branch that cannot reach is the only failure: then the program is a lone HLT.
    let helpers_first = rng.chance(1, 2);
    let (code, head) = assemble(&pieces, helpers_first).unwrap_or_else(|_| (vec![0xF4], CODE_IP));
    init.eip = u32::from(head);
    RegionProgram {
        init,
        code,
        ip: CODE_IP,
        fill_seed: rng.next_u64(),
        cap: u64::from(iters) * pass * 2 + 64,
    }
}

/// The loop body: 2–5 chunks of random instructions with skips, exits and leaves between.
fn body(rng: &mut SplitMix64, cat: &Catalogue, cx: &Ctx) -> Vec<(usize, Piece)> {
    let mut info = InstructionInfoFactory::new();
    let chunks = rng.range(2, 5) as usize;
    let mut out = Vec::new();
    for k in 0..chunks {
        for _ in 0..rng.range(1, 6) {
            let ins = gen_insn(rng, cat, cx, &mut info);
            if flag_effect(&ins, None).read != 0 {
                out.push((k, Piece::Insn(definer(rng))));
            }
            out.push((k, Piece::Insn(ins)));
        }
        if k + 1 < chunks && rng.chance(2, 3) {
            out.push((k, Piece::Insn(definer(rng))));
            let to = rng.range(k as u64 + 1, chunks as u64) as usize;
            out.push((k, Piece::Skip(*rng.pick(&CONDS), to)));
        }
        if rng.chance(1, 6) {
            out.push((k, Piece::Insn(definer(rng))));
            out.push((k, Piece::Out(*rng.pick(&CONDS))));
        }
        if rng.chance(1, 4) {
            out.extend(leave_insn(rng).into_iter().map(|p| (k, p)));
        }
        if k + 1 < chunks && rng.chance(1, 3) {
            let case = |rng: &mut SplitMix64| {
                if rng.chance(1, 8) {
                    usize::MAX
                } else {
                    rng.range(k as u64 + 1, chunks as u64) as usize
                }
            };
            let cases = [case(rng), case(rng), case(rng), case(rng)];
            out.push((k, Piece::Switch(cases)));
        }
    }
    out
}

/// Assembles the program (see the module doc) at `CODE_IP`, twice: the switch tables and the
/// 32-bit calls hold addresses only known after the first pass (every length stays the same).
/// Returns the code and the IP of the loop head.
fn assemble(pieces: &[(usize, Piece)], helpers_first: bool) -> Result<(Vec<u8>, u16), IcedError> {
    let (_, addrs) = assemble_with(pieces, helpers_first, None)?;
    let (code, addrs) = assemble_with(pieces, helpers_first, Some(&addrs))?;
    Ok((code, addrs.starts[0]))
}

/// Label addresses the second pass needs: chunk starts, `out`, each switch's table and each
/// helper.
#[derive(Debug, Default)]
struct Addrs {
    starts: Vec<u16>,
    out: u16,
    tables: Vec<u16>,
    helpers: Vec<u16>,
}

fn assemble_with(
    pieces: &[(usize, Piece)],
    helpers_first: bool,
    known: Option<&Addrs>,
) -> Result<(Vec<u8>, Addrs), IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let switches: Vec<[usize; 4]> =
        pieces.iter().filter_map(|p| if let Piece::Switch(c) = p.1 { Some(c) } else { None }).collect();
    let mut tables: Vec<CodeLabel> = switches.iter().map(|_| a.create_label()).collect();
    let mut helpers: Vec<CodeLabel> = HELPERS.iter().map(|_| a.create_label()).collect();
    let mut switch_no = 0;
    let chunks = pieces.last().map_or(0, |p| p.0 + 1);
    let mut starts: Vec<CodeLabel> = (0..=chunks).map(|_| a.create_label()).collect();
    let (mut head, mut out) = (a.create_label(), a.create_label());
    if helpers_first {
        emit_helpers(&mut a, &mut helpers, None, out)?;
    }
    a.set_label(&mut head)?;
    let mut cur = 0;
    for &(k, p) in pieces {
        if k != cur {
            cur = k;
            a.set_label(&mut starts[k])?;
        }
        match p {
            Piece::Insn(ins) => a.add_instruction(ins)?,
            Piece::Skip(cc, to) => emit_term(&mut a, Term::Jcc(cc), false, starts[to])?,
            Piece::Out(cc) => emit_term(&mut a, Term::Jcc(cc), false, out)?,
            Piece::Call(h) => emit_call(&mut a, h, &helpers, known)?,
            Piece::Switch(_) => {
                let table = known.map_or(0, |k| k.tables[switch_no]);
                switch_no += 1;
                a.and(edx, 3)?;
                a.jmp(word_ptr(edx * 2 + u32::from(table)).cs())?;
            }
        }
    }
    // A skip past the last chunk lands on the counter.
    a.set_label(&mut starts[chunks])?;
    a.dec(ecx)?;
    a.jne(head)?;
    a.hlt()?;
    a.set_label(&mut out)?;
    a.hlt()?;
    if !helpers_first {
        emit_helpers(&mut a, &mut helpers, Some(head), out)?;
    }
    for (cases, label) in switches.iter().zip(tables.iter_mut()) {
        a.set_label(label)?;
        let entry = |c: usize| known.map_or(0, |k| if c == usize::MAX { k.out } else { k.starts[c] });
        a.dw(&cases.map(entry))?;
    }
    let r = a.assemble_options(u64::from(CODE_IP), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let ip = |l: &CodeLabel| r.label_ip(l).map(|v| v as u16);
    let mut addrs = Addrs { out: ip(&out)?, ..Addrs::default() };
    addrs.starts.push(ip(&head)?);
    for l in &starts[1..] {
        addrs.starts.push(ip(l)?);
    }
    for l in &tables {
        addrs.tables.push(ip(l)?);
    }
    for l in &helpers {
        addrs.helpers.push(ip(l)?);
    }
    Ok((r.inner.code_buffer, addrs))
}

/// A call of helper `h` (see [`Helper`]); `calld` needs its target's address (`known`).
fn emit_call(
    a: &mut CodeAssembler,
    h: Helper,
    labels: &[CodeLabel],
    known: Option<&Addrs>,
) -> Result<(), IcedError> {
    let i = HELPERS.iter().position(|&x| x == h).unwrap_or(0);
    match h {
        Helper::Arg => {
            a.push(ax)?;
            a.call(labels[i])
        }
        Helper::Wide => {
            let target = known.map_or(0, |k| u64::from(k.helpers[i]));
            a.add_instruction(Instruction::with_branch(Code::Call_rel32_32, target)?)
        }
        _ => a.call(labels[i]),
    }
}

/// The helper functions, in [`HELPERS`] order (right before the loop head, or after the loop
/// with `head` to jump back to); `out` ends the program.
fn emit_helpers(
    a: &mut CodeAssembler,
    labels: &mut [CodeLabel],
    head: Option<CodeLabel>,
    out: CodeLabel,
) -> Result<(), IcedError> {
    let at = |d: i32| word_ptr(di + d);
    let inc = labels[0];
    for (h, label) in HELPERS.iter().zip(labels.iter_mut()) {
        a.set_label(label)?;
        match h {
            Helper::Inc => {
                a.inc(at(0x10))?;
                a.ret()?;
            }
            Helper::Arg => {
                a.push(bp)?;
                a.mov(bp, sp)?;
                a.mov(ax, word_ptr(bp + 4))?;
                a.add(at(0x12), ax)?;
                a.pop(bp)?;
                a.ret_1(2)?;
            }
            Helper::Wide => {
                let mut r2 = a.create_label();
                a.push(ebx)?;
                a.mov(ebx, 7u32)?;
                a.add(at(0x14), bx)?;
                a.jz(r2)?;
                a.inc(at(0x16))?;
                a.pop(ebx)?;
                a.db(&[0x66, 0xC3])?;
                a.set_label(&mut r2)?;
                a.pop(ebx)?;
                a.db(&[0x66, 0xC3])?;
            }
            Helper::Nested => {
                a.call(inc)?;
                a.inc(at(0x18))?;
                a.ret()?;
            }
            Helper::Looping => {
                let mut l = a.create_label();
                a.push(asm::cx)?;
                a.mov(asm::cx, 3u32)?;
                a.set_label(&mut l)?;
                a.inc(at(0x1A))?;
                a.loop_(l)?;
                a.pop(asm::cx)?;
                a.ret()?;
            }
            Helper::Into => {
                a.inc(at(0x1C))?;
                a.dec(ecx)?;
                a.jz(out)?;
                if let Some(head) = head {
                    a.jmp(head)?;
                }
            }
        }
    }
    Ok(())
}
