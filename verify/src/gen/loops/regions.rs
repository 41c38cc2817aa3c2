//! Loop *regions* for the compiled tier: loops whose body has forward branches that stay
//! inside it, branches that leave it, and instructions the tier leaves to the interpreter
//! (calls, pushes and pops, CLD/STD, Bochs' `xchg bx, bx`), so that one compiled unit spans
//! several blocks.
//!
//! Layout (one assembled blob at `CODE_SEG:CODE_IP`):
//!
//! ```text
//! head:  chunk; [cmp r8, imm8; jcc skip_k | jcc out]; [leave]; [switch]; chunk; ...
//!        dec counter; jnz head      (or loop head)
//!        hlt
//! out:   hlt
//! sub:   inc word [..]; ret         (the target of the calls)
//! tables: dw case, case, case, case  (one per switch: later chunk starts or `out`)
//! ```
//! A switch is `and edx, 3; jmp word [cs:edx*2 + table]`.
//! Every instruction that reads a status flag, and every generated `jcc`, gets a
//! `cmp r8, imm8` right before it, so no path reads an undefined flag; the flags still
//! undefined at a stop are those of the path actually run (the caller tracks them with
//! [`crate::flagmask::UndefTracker`]).
use iced_x86::code_asm::{ecx, edx, word_ptr, CodeAssembler, CodeLabel};
use iced_x86::BlockEncoderOptions;
use iced_x86::{
    Code, ConditionCode, IcedError, Instruction, InstructionInfoFactory, MemoryOperand, Register,
};
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
    /// IP of the first instruction (the code is at `CODE_SEG:ip`).
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
    /// `call sub`.
    Call,
    /// `and edx, 3; jmp word [cs:edx*2 + table]`: a switch whose four cases are chunk starts
    /// (later chunks, `chunks` = the counter) or, as `usize::MAX`, `out`.
    Switch([usize; 4]),
}

/// Instructions the compiled tier leaves to the interpreter, with no flag effects a later
/// branch could read undefined.
fn leave_insn(rng: &mut SplitMix64) -> Vec<Piece> {
    match rng.below(5) {
        0 => vec![Piece::Call],
        1 => vec![Piece::Insn(Instruction::with(Code::Cld))],
        2 => {
            let r = *rng.pick(&[Register::AX, Register::DX, Register::BX]);
            let push = Instruction::with1(Code::Push_r16, r).ok();
            let pop = Instruction::with1(Code::Pop_r16, r).ok();
            push.into_iter().chain(pop).map(Piece::Insn).collect()
        }
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
    init.gpr[4] = 0x8000 + rng.below(0x100) as u32 * 2;
    let iters = rng.range(1, 200) as u32;
    init.gpr[1] = iters;
    let mut segs = vec![Register::None; 6];
    segs.extend_from_slice(&SEGS);
    let cx = Ctx { no_write: bases | 0b0001_0010, bases, disp: Disp::Small, segs, mem_pct: 40, a32 };
    let pieces = body(rng, cat, &cx);
    let pass = pieces.len() as u64 + 4;
    // A short branch that cannot reach is the only failure: then the program is a lone HLT.
    let code = assemble(&pieces).unwrap_or_else(|_| vec![0xF4]);
    init.eip = u32::from(CODE_IP);
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

/// Assembles the program (see the module doc) at `CODE_IP`, twice: the switch tables (after
/// `sub`) hold addresses only known after the first pass (every length stays the same).
fn assemble(pieces: &[(usize, Piece)]) -> Result<Vec<u8>, IcedError> {
    let (_, addrs) = assemble_with(pieces, None)?;
    let (code, _) = assemble_with(pieces, Some(&addrs))?;
    Ok(code)
}

/// Label addresses the second pass needs: chunk starts, `out`, and each switch's table.
#[derive(Debug, Default)]
struct Addrs {
    starts: Vec<u16>,
    out: u16,
    tables: Vec<u16>,
}

fn assemble_with(pieces: &[(usize, Piece)], known: Option<&Addrs>) -> Result<(Vec<u8>, Addrs), IcedError> {
    let mut a = CodeAssembler::new(16)?;
    let switches: Vec<[usize; 4]> =
        pieces.iter().filter_map(|p| if let Piece::Switch(c) = p.1 { Some(c) } else { None }).collect();
    let mut tables: Vec<CodeLabel> = switches.iter().map(|_| a.create_label()).collect();
    let mut switch_no = 0;
    let chunks = pieces.last().map_or(0, |p| p.0 + 1);
    let mut starts: Vec<CodeLabel> = (0..=chunks).map(|_| a.create_label()).collect();
    let (mut head, mut out, mut sub) = (a.create_label(), a.create_label(), a.create_label());
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
            Piece::Call => a.call(sub)?,
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
    a.set_label(&mut sub)?;
    a.add_instruction(Instruction::with1(
        Code::Inc_rm16,
        MemoryOperand::with_base_displ(Register::DI, 0x10),
    )?)?;
    a.ret()?;
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
    Ok((r.inner.code_buffer, addrs))
}
