//! The random program generator: loop programs made of the instructions the compiled tier
//! accepts (picked from iced's `Code` table by mnemonic and operand kinds, so every encoding
//! form of MOV, the ALU group, shifts, MUL/IMUL, SETcc, BT*, … appears), assembled with
//! iced-x86's `code_asm`, plus the initial CPU state and machine set-up of each program class.
//!
//! Layout of every program: IVT at 0 with every vector pointing at a `hlt` at 0000:0500; code
//! at CS=0100h, IP=8000h (linear 9000h): `prefix…; head: body…; back-branch; hlt`. Data
//! segments point at a random-filled area from 20000h, except in the side-exit classes.
pub mod regions;

use super::{ADDR16_FORMS, R16, R32, R8, SEGS};
use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::{
    Code, ConditionCode, Decoder, DecoderOptions, EncodingKind, IcedError, Instruction,
    InstructionInfoFactory, MemoryOperand, Mnemonic, OpAccess, OpCodeOperandKind, OpKind, Register,
};
use picoqemu_core::{flags, CpuState, Segment};

use crate::flagmask::{flag_effect, is_shift_or_rotate, FlagEffect};
use crate::rng::SplitMix64;

/// Code segment selector (base 1000h) and the usual IP of the first instruction.
pub const CODE_SEG: u16 = 0x0100;
pub const CODE_IP: u16 = 0x8000;
/// Linear address of CS:0.
pub const CODE_BASE: usize = 0x1000;
/// Linear address of the first instruction at the usual IP.
pub const CODE_LINEAR: usize = CODE_BASE + CODE_IP as usize;
/// Linear address of the `hlt` every interrupt vector points at (0000:0500).
pub const HANDLER: usize = 0x0500;
/// Random-filled data area.
pub const FILL_BASE: usize = 0x20000;
pub const FILL_LEN: usize = 0x4000;
/// Where the MMIO console sits when a program uses it.
pub const MMIO_BASE: u64 = 0xD0000;

/// What a program is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Random loop over the data area; address registers used as bases are not written.
    Normal,
    /// Any register may be written, bases included: addresses roam the whole segment.
    Wild,
    /// Bases start just below FFFFh and move: word/dword accesses at FFFFh fault.
    Edge,
    /// A data segment covers the tail of the code page: stores there are side exits.
    Smc,
    /// A body store rewrites an immediate of a body instruction every pass.
    SmcPatch,
    /// A data segment covers the MMIO console page.
    Mmio,
    /// A segment at FFFFh with A20 wrapping (accesses wrap to low memory).
    A20,
    /// A segment at FFFFh without wrapping (the high memory area above 1 MiB).
    Hma,
}

/// How the loop branches back to its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Jcc(ConditionCode),
    Loop,
    Loope,
    Loopne,
    /// `dec reg; jnz head` (16- or 32-bit register).
    DecJnz(Register),
    /// `jmp head`: only a budget ends it.
    Jmp,
}

/// A generated program.
#[derive(Debug, Clone)]
pub struct Program {
    pub class: Class,
    pub prefix: Vec<Instruction>,
    pub body: Vec<Instruction>,
    pub term: Term,
    pub init: CpuState,
    pub a20_wrap: bool,
    pub mmio: bool,
    /// Seed of the data area's random contents.
    pub fill_seed: u64,
    /// Instruction budget of a whole run (loops with a random condition may not end).
    pub cap: u64,
    /// Self-modifying store: (index of the store in `body`, index of the instruction whose
    /// immediate it overwrites).
    pub patch: Option<(usize, usize)>,
    /// IP of the first instruction.
    pub code_ip: u16,
    /// Place the program so that it ends this many bytes below the end of the code segment.
    pub top: Option<u16>,
    /// LOOP/LOOPE/LOOPNE count with ECX (address-size prefix) instead of CX.
    pub ecx_loop: bool,
}

/// The shrinker removes prefix and body instructions (prefix first in the numbering); the
/// body keeps at least one instruction and the self-modifying store's indices follow.
impl crate::shrink::Shrinkable for Program {
    fn parts(&self) -> usize {
        self.prefix.len() + self.body.len()
    }
    fn without(&self, range: std::ops::Range<usize>) -> Option<Self> {
        let mut q = self.clone();
        for i in range.rev() {
            if i < q.prefix.len() {
                q.prefix.remove(i);
                continue;
            }
            let j = i - q.prefix.len();
            if j >= q.body.len() {
                return None;
            }
            q.body.remove(j);
            if let Some((s, t)) = q.patch {
                q.patch = if s == j || t == j {
                    None
                } else {
                    Some((s - usize::from(s > j), t - usize::from(t > j)))
                };
            }
        }
        (!q.body.is_empty()).then_some(q)
    }
}

/// One instruction of the assembled program, in path order.
#[derive(Debug, Clone, Copy)]
pub struct Item {
    pub ip: u16,
    pub fx: FlagEffect,
}

/// An assembled program.
#[derive(Debug, Clone)]
pub struct Built {
    pub code: Vec<u8>,
    /// Prefix items, then the loop's items (body and back-branch), in execution order.
    pub items: Vec<Item>,
    pub prefix_len: usize,
    /// IP of the final `hlt`.
    pub hlt_ip: u16,
    /// IP of the first instruction.
    pub ip: u16,
}

fn gpr(r: Register) -> usize {
    r.full_register32() as usize - Register::EAX as usize
}

/// Mnemonics of the compiled tier (translate.rs) with their generator weights.
const MNEMONICS: [(Mnemonic, u32); 54] = [
    (Mnemonic::Mov, 12),
    (Mnemonic::Add, 6),
    (Mnemonic::Or, 4),
    (Mnemonic::Adc, 5),
    (Mnemonic::Sbb, 5),
    (Mnemonic::And, 4),
    (Mnemonic::Sub, 5),
    (Mnemonic::Xor, 4),
    (Mnemonic::Cmp, 5),
    (Mnemonic::Test, 3),
    (Mnemonic::Inc, 3),
    (Mnemonic::Dec, 3),
    (Mnemonic::Neg, 2),
    (Mnemonic::Not, 2),
    (Mnemonic::Shl, 3),
    (Mnemonic::Shr, 3),
    (Mnemonic::Sar, 3),
    (Mnemonic::Rol, 3),
    (Mnemonic::Ror, 3),
    (Mnemonic::Rcl, 3),
    (Mnemonic::Rcr, 3),
    (Mnemonic::Lea, 3),
    (Mnemonic::Movzx, 3),
    (Mnemonic::Movsx, 3),
    (Mnemonic::Xchg, 3),
    (Mnemonic::Cbw, 1),
    (Mnemonic::Cwde, 1),
    (Mnemonic::Cwd, 1),
    (Mnemonic::Cdq, 1),
    (Mnemonic::Mul, 3),
    (Mnemonic::Imul, 4),
    (Mnemonic::Nop, 1),
    (Mnemonic::Clc, 1),
    (Mnemonic::Stc, 1),
    (Mnemonic::Cmc, 1),
    (Mnemonic::Bt, 2),
    (Mnemonic::Bts, 2),
    (Mnemonic::Btr, 2),
    (Mnemonic::Btc, 2),
    (Mnemonic::Seto, 1),
    (Mnemonic::Setno, 1),
    (Mnemonic::Setb, 1),
    (Mnemonic::Setae, 1),
    (Mnemonic::Sete, 1),
    (Mnemonic::Setne, 1),
    (Mnemonic::Setbe, 1),
    (Mnemonic::Seta, 1),
    (Mnemonic::Sets, 1),
    (Mnemonic::Setns, 1),
    (Mnemonic::Setp, 1),
    (Mnemonic::Setnp, 1),
    (Mnemonic::Setl, 1),
    (Mnemonic::Setge, 1),
    (Mnemonic::Setle, 1),
];

/// Every 16-bit-mode legacy encoding of the generator's mnemonics, grouped by mnemonic with
/// the mnemonic's weight.
pub struct Catalogue {
    groups: Vec<(u32, Vec<Code>)>,
    total: u32,
}

impl Catalogue {
    pub fn new() -> Catalogue {
        let mut groups = Vec::new();
        let mut total = 0;
        for &(m, w) in MNEMONICS.iter().chain([(Mnemonic::Setg, 1)].iter()) {
            let codes: Vec<Code> = Code::values()
                .filter(|c| {
                    let oc = c.op_code();
                    c.mnemonic() == m
                        && oc.is_instruction()
                        && oc.mode16()
                        && oc.encoding() == EncodingKind::Legacy
                        && oc.decoder_option() == DecoderOptions::NONE
                        && oc.op_kinds().iter().all(|&k| super::plain_operand_kind(k))
                })
                .collect();
            assert!(!codes.is_empty(), "no encodings for {m:?}");
            total += w;
            groups.push((w, codes));
        }
        Catalogue { groups, total }
    }

    fn pick(&self, rng: &mut SplitMix64) -> Code {
        let mut x = rng.below(self.total as u64) as u32;
        for (w, codes) in &self.groups {
            if x < *w {
                return *rng.pick(codes);
            }
            x -= w;
        }
        Code::Nopw
    }

    /// Number of encodings in the catalogue.
    pub fn encodings(&self) -> usize {
        self.groups.iter().map(|g| g.1.len()).sum()
    }
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue::new()
    }
}

/// The catalogue, built once.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: std::sync::OnceLock<Catalogue> = std::sync::OnceLock::new();
    CATALOGUE.get_or_init(Catalogue::new)
}

/// How displacements are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disp {
    /// Small, mostly positive: stays in the filled area.
    Small,
    /// Anything.
    Any,
}

/// Per-program generator constraints.
#[derive(Debug, Clone)]
struct Ctx {
    /// Guest GPRs (bit per index) the body must not write.
    no_write: u8,
    /// Guest GPRs usable as address registers.
    bases: u8,
    disp: Disp,
    /// Segment override choices (Register::None = default segment).
    segs: Vec<Register>,
    /// Percent of r/m operands that are memory.
    mem_pct: u64,
    /// Half of the memory operands use 32-bit addressing (67h).
    a32: bool,
}

enum Opnd {
    R(Register),
    M(MemoryOperand),
    I(u32),
}

fn make(code: Code, ops: &[Opnd]) -> Option<Instruction> {
    use Opnd::*;
    match ops {
        [] => Some(Instruction::with(code)),
        [R(a)] => Instruction::with1(code, *a).ok(),
        [M(a)] => Instruction::with1(code, *a).ok(),
        [R(a), R(b)] => Instruction::with2(code, *a, *b).ok(),
        [R(a), M(b)] => Instruction::with2(code, *a, *b).ok(),
        [M(a), R(b)] => Instruction::with2(code, *a, *b).ok(),
        [R(a), I(b)] => Instruction::with2(code, *a, *b).ok(),
        [M(a), I(b)] => Instruction::with2(code, *a, *b).ok(),
        [R(a), R(b), I(c)] => Instruction::with3(code, *a, *b, *c).ok(),
        [R(a), M(b), I(c)] => Instruction::with3(code, *a, *b, *c).ok(),
        _ => None,
    }
}

fn mem_operand(rng: &mut SplitMix64, cx: &Ctx) -> MemoryOperand {
    if cx.a32 && rng.chance(1, 2) {
        return mem_operand32(rng, cx);
    }
    let forms: Vec<(Register, Register)> = ADDR16_FORMS
        .iter()
        .copied()
        .filter(|&(b, i)| [b, i].iter().all(|&r| r == Register::None || cx.bases & (1 << gpr(r)) != 0))
        .collect();
    let (base, index) = *rng.pick(&forms);
    let seg = *rng.pick(&cx.segs);
    if base == Register::None {
        let d = match cx.disp {
            Disp::Small => rng.below(0x1000),
            Disp::Any => rng.value(16) as u64,
        };
        return MemoryOperand::new(base, index, 1, d as i64, 2, false, seg);
    }
    let size = if base == Register::BP && index == Register::None { rng.range(1, 2) } else { rng.below(3) };
    let d: i64 = match size {
        0 => 0,
        1 => match cx.disp {
            Disp::Small => rng.range(0, 0x7F) as i64 - if rng.chance(1, 8) { 0x40 } else { 0 },
            Disp::Any => rng.below(256) as i64 - 128,
        },
        _ => match cx.disp {
            Disp::Small => {
                if rng.chance(1, 10) {
                    // Negative: the effective address wraps around 64 KiB.
                    0x10000 - rng.range(1, 0x100) as i64
                } else {
                    rng.below(0x800) as i64
                }
            }
            Disp::Any => rng.value(16) as i64,
        },
    };
    MemoryOperand::new(base, index, 1, d, size as u32, false, seg)
}

/// A 32-bit-addressing operand (67h): base and index among the address registers, any scale;
/// an offset past FFFFh faults (#GP, #SS on the stack segment).
fn mem_operand32(rng: &mut SplitMix64, cx: &Ctx) -> MemoryOperand {
    let regs: Vec<Register> =
        [3usize, 5, 6, 7].iter().filter(|&&g| cx.bases & (1 << g) != 0).map(|&g| R32[g]).collect();
    let pick = |rng: &mut SplitMix64| {
        if regs.is_empty() || rng.chance(1, 4) {
            Register::None
        } else {
            *rng.pick(&regs)
        }
    };
    let (base, index) = (pick(rng), pick(rng));
    let scale = *rng.pick(&[1u32, 2, 4, 8]);
    let seg = *rng.pick(&cx.segs);
    let (d, size) = match rng.below(3) {
        0 if base != Register::None => (0, 0),
        1 if base != Register::None => (rng.below(0x80) as i64 - if rng.chance(1, 8) { 0x80 } else { 0 }, 1),
        _ => match cx.disp {
            Disp::Small => (rng.below(0x800) as i64, 4),
            // Mostly small, so that bases near FFFFh cross the limit by a few bytes.
            Disp::Any if rng.chance(1, 4) => (rng.value(32) as i32 as i64, 4),
            Disp::Any => (rng.below(0x200) as i64, 4),
        },
    };
    MemoryOperand::new(base, index, scale, d, size, false, seg)
}

fn reg_of(rng: &mut SplitMix64, table: &[Register; 8]) -> Register {
    *rng.pick(table)
}

fn shift_count(rng: &mut SplitMix64) -> u32 {
    match rng.below(6) {
        0 => rng.range(0, 8) as u32,
        1 => *rng.pick(&[8u32, 9, 15, 16, 17, 24, 31, 32, 33, 63]),
        2 => rng.below(256) as u32,
        _ => rng.range(1, 7) as u32,
    }
}

/// Instructions that make the compiled tier decline the block: CH; AH/BH/DH together with a
/// register that needs a REX prefix on the host; BT* with a memory operand and a register bit
/// offset; the 82h encodings.
fn declines(ins: &Instruction) -> bool {
    let mut high = false;
    let mut rex = false;
    for i in 0..ins.op_count() {
        if ins.op_kind(i) == OpKind::Register {
            let r = ins.op_register(i);
            if r == Register::CH {
                return true;
            }
            high |= matches!(r, Register::AH | Register::BH | Register::DH);
            rex |= matches!(r, Register::CL | Register::SP | Register::BP | Register::SI | Register::DI)
                || matches!(r, Register::ESP | Register::EBP | Register::ESI | Register::EDI);
        }
    }
    let bt_mem_reg = matches!(ins.mnemonic(), Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc)
        && ins.op0_kind() == OpKind::Memory
        && ins.op1_kind() == OpKind::Register;
    // 82h is an alias of 80h that does not exist in 64-bit mode: the host cannot re-encode it.
    let op82 = format!("{:?}", ins.code()).ends_with("_82");
    (high && rex) || bt_mem_reg || op82
}

/// Guest GPRs `ins` writes (explicitly or implicitly).
fn written_gprs(info: &mut InstructionInfoFactory, ins: &Instruction) -> u8 {
    let mut w = 0u8;
    for u in info.info(ins).used_registers() {
        let r = u.register();
        if r.is_gpr()
            && matches!(
                u.access(),
                OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite
            )
        {
            let f = r.full_register32();
            if (Register::EAX..=Register::EDI).contains(&f) {
                w |= 1 << gpr(f);
            }
        }
    }
    w
}

/// One random eligible instruction respecting `cx`.
fn gen_insn(
    rng: &mut SplitMix64,
    cat: &Catalogue,
    cx: &Ctx,
    info: &mut InstructionInfoFactory,
) -> Instruction {
    for _ in 0..200 {
        let code = cat.pick(rng);
        let m = code.mnemonic();
        let mut ops = Vec::with_capacity(3);
        for &k in code.op_code().op_kinds() {
            use OpCodeOperandKind as K;
            let mem = rng.below(100) < cx.mem_pct;
            ops.push(match k {
                K::r8_or_mem if mem => Opnd::M(mem_operand(rng, cx)),
                K::r16_or_mem if mem => Opnd::M(mem_operand(rng, cx)),
                K::r32_or_mem if mem => Opnd::M(mem_operand(rng, cx)),
                K::r8_or_mem | K::r8_reg | K::r8_opcode => Opnd::R(reg_of(rng, &R8)),
                K::r16_or_mem | K::r16_reg | K::r16_opcode => Opnd::R(reg_of(rng, &R16)),
                K::r32_or_mem | K::r32_reg | K::r32_opcode => Opnd::R(reg_of(rng, &R32)),
                K::al => Opnd::R(Register::AL),
                K::ax => Opnd::R(Register::AX),
                K::eax => Opnd::R(Register::EAX),
                K::cl => Opnd::R(Register::CL),
                K::imm8 if is_shift_or_rotate(m) => Opnd::I(shift_count(rng)),
                K::imm8 => Opnd::I(rng.value(8)),
                K::imm8_const_1 => Opnd::I(1),
                K::imm8sex16 => Opnd::I(rng.value(8) as u8 as i8 as i16 as u16 as u32),
                K::imm8sex32 => Opnd::I(rng.value(8) as u8 as i8 as i32 as u32),
                K::imm16 => Opnd::I(rng.value(16)),
                K::imm32 => Opnd::I(rng.value(32)),
                K::mem_offs => {
                    let d = match cx.disp {
                        Disp::Small => rng.below(0x1000),
                        Disp::Any => rng.value(16) as u64,
                    };
                    Opnd::M(MemoryOperand::new(
                        Register::None,
                        Register::None,
                        1,
                        d as i64,
                        2,
                        false,
                        *rng.pick(&cx.segs),
                    ))
                }
                K::mem => Opnd::M(mem_operand(rng, cx)),
                _ => Opnd::I(0),
            });
        }
        let Some(ins) = make(code, &ops) else { continue };
        if written_gprs(info, &ins) & cx.no_write != 0 {
            continue;
        }
        if declines(&ins) && !rng.chance(1, 20) {
            continue;
        }
        return ins;
    }
    Instruction::with(Code::Nopw)
}

/// Status flags a branch condition reads.
fn cond_reads(cc: ConditionCode) -> u32 {
    use ConditionCode as C;
    match cc {
        C::o | C::no => flags::OF,
        C::b | C::ae => flags::CF,
        C::e | C::ne => flags::ZF,
        C::be | C::a => flags::CF | flags::ZF,
        C::s | C::ns => flags::SF,
        C::p | C::np => flags::PF,
        C::l | C::ge => flags::SF | flags::OF,
        C::le | C::g => flags::ZF | flags::SF | flags::OF,
        C::None => 0,
    }
}

const CONDS: [ConditionCode; 16] = [
    ConditionCode::o,
    ConditionCode::no,
    ConditionCode::b,
    ConditionCode::ae,
    ConditionCode::e,
    ConditionCode::ne,
    ConditionCode::be,
    ConditionCode::a,
    ConditionCode::s,
    ConditionCode::ns,
    ConditionCode::p,
    ConditionCode::np,
    ConditionCode::l,
    ConditionCode::ge,
    ConditionCode::le,
    ConditionCode::g,
];

/// The back-branch's own flag effect (reads; `dec` defines all but CF).
fn term_fx(t: Term) -> (u32, FlagEffect) {
    match t {
        Term::Jcc(cc) => (cond_reads(cc), FlagEffect::default()),
        Term::Loope | Term::Loopne => (flags::ZF, FlagEffect::default()),
        Term::Loop | Term::Jmp => (0, FlagEffect::default()),
        Term::DecJnz(_) => {
            let d = flags::OF | flags::SF | flags::ZF | flags::AF | flags::PF;
            (0, FlagEffect { read: 0, defined: d, undefined: 0 })
        }
    }
}

/// `cmp r8, imm8` (defines all six status flags, writes nothing).
fn definer(rng: &mut SplitMix64) -> Instruction {
    let r = *rng.pick(&[Register::AL, Register::DL, Register::BL, Register::AH, Register::DH, Register::BH]);
    Instruction::with2(Code::Cmp_rm8_imm8, r, rng.value(8)).unwrap_or_else(|_| Instruction::with(Code::Nopw))
}

/// Makes sure no instruction reads a status flag that may be undefined when it runs (on any
/// pass): inserts `cmp r8, imm8` before such readers, and picks a back-branch that only reads
/// defined flags.
pub fn make_flag_safe(p: &mut Program, rng: &mut SplitMix64) {
    for _ in 0..64 {
        // Prefix from the initial (defined) flags.
        let mut u = 0u32;
        let mut fixed = false;
        for i in 0..p.prefix.len() {
            let fx = flag_effect(&p.prefix[i], None);
            if fx.read & u != 0 {
                p.prefix.insert(i, definer(rng));
                fixed = true;
                break;
            }
            u = fx.apply(u);
        }
        if fixed {
            continue;
        }
        let u_entry = u;
        // Fixed point of U at the loop head.
        let mut head = u_entry;
        let mut u_end;
        loop {
            u_end = head;
            for ins in &p.body {
                u_end = flag_effect(ins, None).apply(u_end);
            }
            let (_, tfx) = term_fx(p.term);
            let after = tfx.apply(u_end);
            let next = u_entry | after;
            if next == head {
                break;
            }
            head = next;
        }
        let mut u = head;
        for i in 0..p.body.len() {
            let fx = flag_effect(&p.body[i], None);
            if fx.read & u != 0 {
                p.body.insert(i, definer(rng));
                if let Some((s, t)) = p.patch.as_mut() {
                    if *s >= i {
                        *s += 1;
                    }
                    if *t >= i {
                        *t += 1;
                    }
                }
                fixed = true;
                break;
            }
            u = fx.apply(u);
        }
        if fixed {
            continue;
        }
        let (reads, _) = term_fx(p.term);
        if reads & u != 0 {
            match p.term {
                Term::Jcc(_) => {
                    let ok: Vec<ConditionCode> =
                        CONDS.iter().copied().filter(|&c| cond_reads(c) & u == 0).collect();
                    if ok.is_empty() {
                        p.body.push(definer(rng));
                    } else {
                        p.term = Term::Jcc(*rng.pick(&ok));
                    }
                }
                _ => p.term = Term::Loop,
            }
            continue;
        }
        return;
    }
    // Could not converge (never expected): a loop of plain moves is always safe.
    p.body.retain(|i| flag_effect(i, None).read == 0);
    p.term = Term::Loop;
}

fn seg(selector: u16) -> Segment {
    Segment::real(selector)
}

/// A random data segment inside the filled area (sometimes with a base that is not a multiple
/// of 16, sometimes with a 4 GiB "unreal" limit).
fn data_seg(rng: &mut SplitMix64) -> Segment {
    let sel = 0x2000 + rng.below(0x300) as u16;
    let mut s = seg(sel);
    if rng.chance(1, 10) {
        s.base = FILL_BASE as u32 + rng.below(0x3000) as u32;
    }
    if rng.chance(1, 20) {
        s.limit = u32::MAX;
    }
    s
}

/// Generates program number `n` of a campaign.
pub fn generate(rng: &mut SplitMix64, cat: &Catalogue) -> Program {
    let class = match rng.below(100) {
        0..=59 => Class::Normal,
        60..=69 => Class::Wild,
        70..=75 => Class::Edge,
        76..=81 => Class::Smc,
        82..=85 => Class::SmcPatch,
        86..=91 => Class::Mmio,
        92..=95 => Class::A20,
        _ => Class::Hma,
    };
    let mut init =
        CpuState { eflags: flags::FIXED | (rng.next_u32() & flags::STATUS), ..CpuState::default() };
    init.segs[1] = seg(CODE_SEG);
    let (code_ip, top) = match rng.below(10) {
        _ if matches!(class, Class::Smc | Class::SmcPatch) => (CODE_IP, None),
        0 | 1 => (CODE_IP + rng.below(0x7000) as u16, None),
        2 => (CODE_IP, Some(rng.below(4) as u16)),
        _ => (CODE_IP, None),
    };
    init.eip = code_ip as u32;
    for g in 0..8 {
        init.gpr[g] = rng.value(32);
    }
    for s in [0, 2, 3, 4, 5] {
        init.segs[s] = data_seg(rng);
    }

    // Which of BX, BP, SI, DI serve as (unwritten) bases.
    let addr_regs = [3usize, 5, 6, 7];
    let roaming = matches!(class, Class::Wild | Class::Edge);
    let mut bases = 0u8;
    for &g in &addr_regs {
        if roaming || rng.chance(3, 5) {
            bases |= 1 << g;
        }
    }
    // The loop counter.
    let term = match rng.below(10) {
        // The store's source is CL: the code changes on every pass.
        _ if class == Class::SmcPatch => Term::Loop,
        0..=2 => Term::Jcc(*rng.pick(&CONDS)),
        3 => Term::Loop,
        4 => Term::Loope,
        5 => Term::Loopne,
        6 if rng.chance(1, 4) => Term::Jmp,
        _ => {
            let candidates: Vec<usize> = (0..8)
                .filter(|&g| g != 4 || rng.chance(1, 2))
                .filter(|&g| roaming || bases & (1 << g) == 0)
                .collect();
            let g = *rng.pick(&candidates);
            bases &= !(1 << g);
            Term::DecJnz(if rng.chance(1, 2) { R16[g] } else { R32[g] })
        }
    };
    let smc_heavy = matches!(class, Class::Smc | Class::SmcPatch);
    let long = !smc_heavy && rng.chance(1, 50);
    let iters = if long {
        rng.range(1_000, 70_000)
    } else if smc_heavy {
        rng.range(1, 40)
    } else if rng.chance(1, 4) {
        rng.range(1, 8)
    } else {
        rng.range(1, 300)
    };
    let mut no_write = if roaming { 0 } else { bases };
    let ecx_loop = matches!(term, Term::Loop | Term::Loope | Term::Loopne) && rng.chance(1, 3);
    match term {
        Term::Loop | Term::Loope | Term::Loopne if ecx_loop => {
            no_write |= 1 << 1;
            // Sometimes with upper bits, so counting with CX instead of ECX would show.
            init.gpr[1] = iters as u32 | if rng.chance(1, 2) { (rng.range(1, 4) as u32) << 16 } else { 0 };
        }
        Term::Loop | Term::Loope | Term::Loopne => {
            no_write |= 1 << 1;
            init.gpr[1] = (init.gpr[1] & 0xFFFF_0000) | (iters as u32 & 0xFFFF);
        }
        Term::DecJnz(r) => {
            let g = gpr(r);
            no_write |= 1 << g;
            init.gpr[g] = if r.size() == 2 {
                (init.gpr[g] & 0xFFFF_0000) | (iters as u32 & 0xFFFF)
            } else {
                iters as u32
            };
        }
        Term::Jcc(_) | Term::Jmp => {}
    }
    // Base register values.
    for &g in &addr_regs {
        if bases & (1 << g) == 0 {
            continue;
        }
        let lo = match class {
            Class::Wild => rng.value(16),
            Class::Edge => 0xFFFF - rng.below(0x40) as u32,
            Class::A20 | Class::Hma => 0x1000 + rng.below(0x400) as u32,
            _ => rng.below(0x400) as u32,
        };
        init.gpr[g] = (init.gpr[g] & 0xFFFF_0000) | lo;
    }
    // 32-bit addressing: base registers mostly without upper bits (those fault).
    let a32 = rng.chance(1, 3);
    if a32 {
        for &g in &addr_regs {
            if bases & (1 << g) != 0 && !rng.chance(1, 5) {
                init.gpr[g] &= 0xFFFF;
            }
        }
    }
    // Segment overrides: the default segment most of the time.
    let mut segs = vec![Register::None; 6];
    segs.extend_from_slice(&SEGS);
    let mut mmio = false;
    let mut a20_wrap = false;
    let mut patch = None;
    let disp = if matches!(class, Class::Wild | Class::Edge) { Disp::Any } else { Disp::Small };
    let special = |rng: &mut SplitMix64, init: &mut CpuState, s: Segment, segs: &mut Vec<Register>| {
        let i = *rng.pick(&[0usize, 2, 3, 4, 5]);
        init.segs[i] = s;
        for _ in 0..4 {
            segs.push(SEGS[i]);
        }
    };
    match class {
        Class::Smc => {
            // Code page tail: linear 9800h.. (the code itself is at 9000h..).
            let s = seg(0x0980 - rng.below(0x10) as u16);
            special(rng, &mut init, s, &mut segs);
        }
        Class::Mmio => {
            mmio = true;
            let s = seg(*rng.pick(&[0xD000u16, 0xCFF0, 0xCFFF, 0xCF80]));
            special(rng, &mut init, s, &mut segs);
        }
        Class::A20 | Class::Hma => {
            a20_wrap = class == Class::A20;
            special(rng, &mut init, seg(0xFFFF), &mut segs);
        }
        _ => {}
    }
    let cx = Ctx { no_write, bases, disp, segs, mem_pct: if rng.chance(1, 5) { 70 } else { 35 }, a32 };

    let mut info = InstructionInfoFactory::new();
    let n_prefix = if rng.chance(1, 2) { rng.range(1, 3) } else { 0 };
    let prefix: Vec<Instruction> = (0..n_prefix).map(|_| gen_insn(rng, cat, &cx, &mut info)).collect();
    let n_body = rng.range(1, if long { 5 } else { 25 }) as usize;
    let mut body: Vec<Instruction> = (0..n_body).map(|_| gen_insn(rng, cat, &cx, &mut info)).collect();
    if class == Class::SmcPatch {
        // Target: a non-shift instruction with an immediate; the store goes before or after it.
        let targets: Vec<usize> = (0..body.len())
            .filter(|&i| {
                let ins = &body[i];
                !is_shift_or_rotate(ins.mnemonic())
                    && (0..ins.op_count()).any(|k| {
                        matches!(
                            ins.op_kind(k),
                            OpKind::Immediate8
                                | OpKind::Immediate16
                                | OpKind::Immediate32
                                | OpKind::Immediate8to16
                                | OpKind::Immediate8to32
                        )
                    })
            })
            .collect();
        // Or an accumulator in memory, so that every rewrite of its immediate shows.
        let acc = Instruction::with2(
            Code::Add_rm16_imm16,
            MemoryOperand::new(
                Register::None,
                Register::None,
                1,
                0x0F00 + rng.below(0x100) as i64,
                2,
                false,
                Register::None,
            ),
            rng.value(16),
        );
        let targets = match acc {
            Ok(acc) if targets.is_empty() || rng.chance(1, 2) => {
                let at = rng.below(body.len() as u64 + 1) as usize;
                body.insert(at, acc);
                vec![at]
            }
            _ => targets,
        };
        if !targets.is_empty() {
            let t = *rng.pick(&targets);
            // The counter's low byte changes every pass, so the code really changes.
            let src = match term {
                Term::Loop | Term::Loope | Term::Loopne => Register::CL,
                Term::DecJnz(r) if gpr(r) < 4 => R8[gpr(r)],
                _ => *rng.pick(&[Register::AL, Register::DL, Register::BL, Register::AH]),
            };
            let mem = MemoryOperand::new(Register::None, Register::None, 1, 0, 2, false, Register::CS);
            if let Ok(store) = Instruction::with2(Code::Mov_rm8_r8, mem, src) {
                let at = rng.below(body.len() as u64 + 1) as usize;
                body.insert(at, store);
                let t = if t >= at { t + 1 } else { t };
                patch = Some((at, t));
            }
        }
    }
    let fixed_cap = if long { rng.range(100_000, 300_000) } else { rng.range(2_000, 12_000) };
    // Passes a 16-bit counter really gives (0 means 65536).
    let iters = match term {
        Term::Loop | Term::Loope | Term::Loopne if ecx_loop => iters,
        Term::Loop | Term::Loope | Term::Loopne => {
            (iters & 0xFFFF).max(1) + if iters & 0xFFFF == 0 { 0xFFFF } else { 0 }
        }
        Term::DecJnz(r) if r.size() == 2 => {
            (iters & 0xFFFF).max(1) + if iters & 0xFFFF == 0 { 0xFFFF } else { 0 }
        }
        _ => iters,
    };
    let mut p = Program {
        class,
        prefix,
        body,
        term,
        init,
        a20_wrap,
        mmio,
        fill_seed: rng.next_u64(),
        cap: 0,
        patch,
        code_ip,
        top,
        ecx_loop,
    };
    make_flag_safe(&mut p, rng);
    let pass = p.body.len() as u64 + 2;
    p.cap = match p.term {
        Term::Jcc(_) | Term::Jmp => fixed_cap.min(p.prefix.len() as u64 + iters * pass + 2),
        _ => p.prefix.len() as u64 + iters * pass + 16,
    };
    p
}

fn emit_term(a: &mut CodeAssembler, t: Term, ecx: bool, head: CodeLabel) -> Result<(), IcedError> {
    use ConditionCode as C;
    if ecx && matches!(t, Term::Loop | Term::Loope | Term::Loopne) {
        // Address-size prefix: the LOOP counts with ECX (same rel8: it is relative to the end).
        a.db(&[0x67])?;
    }
    match t {
        Term::Jcc(cc) => match cc {
            C::o => a.jo(head),
            C::no => a.jno(head),
            C::b => a.jb(head),
            C::ae => a.jae(head),
            C::e => a.je(head),
            C::ne => a.jne(head),
            C::be => a.jbe(head),
            C::a => a.ja(head),
            C::s => a.js(head),
            C::ns => a.jns(head),
            C::p => a.jp(head),
            C::np => a.jnp(head),
            C::l => a.jl(head),
            C::ge => a.jge(head),
            C::le => a.jle(head),
            C::g => a.jg(head),
            C::None => a.jmp(head),
        },
        Term::Loop => a.loop_(head),
        Term::Loope => a.loope(head),
        Term::Loopne => a.loopne(head),
        Term::Jmp => a.jmp(head),
        Term::DecJnz(r) => {
            let dec = if r.size() == 2 {
                Instruction::with1(Code::Dec_r16, r)?
            } else {
                Instruction::with1(Code::Dec_r32, r)?
            };
            a.add_instruction(dec)?;
            a.jne(head)
        }
    }
}

fn assemble_once(p: &Program) -> Result<Vec<u8>, IcedError> {
    let code = assemble_at(p, p.code_ip)?;
    match p.top {
        // Lengths do not depend on the origin (branches are relative).
        Some(gap) => assemble_at(p, (0x1_0000 - code.len() - gap as usize) as u16),
        None => Ok(code),
    }
}

/// IP of the first instruction once placed.
pub fn placed_ip(p: &Program, code_len: usize) -> u16 {
    match p.top {
        Some(gap) => (0x1_0000 - code_len - gap as usize) as u16,
        None => p.code_ip,
    }
}

fn assemble_at(p: &Program, origin: u16) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(16)?;
    for ins in &p.prefix {
        a.add_instruction(*ins)?;
    }
    let mut head = a.create_label();
    a.set_label(&mut head)?;
    for ins in &p.body {
        a.add_instruction(*ins)?;
    }
    emit_term(&mut a, p.term, p.ecx_loop, head)?;
    a.hlt()?;
    a.assemble(origin as u64)
}

fn decode_all(code: &[u8], ip: u16) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(16, code, ip as u64, DecoderOptions::NONE);
    let mut v = Vec::new();
    while d.can_decode() {
        v.push(d.decode());
    }
    v
}

/// Assembles `p` (shortening a body whose `loop` cannot reach the head). `None` when it cannot
/// be assembled at all.
pub fn build(p: &mut Program) -> Option<Built> {
    let code = loop {
        match assemble_once(p) {
            Ok(c) => break c,
            Err(_) if p.body.len() > 1 => {
                p.body.pop();
                if let Some((s, t)) = p.patch {
                    if s >= p.body.len() || t >= p.body.len() {
                        p.patch = None;
                    }
                }
            }
            Err(_) => return None,
        }
    };
    let mut code = code;
    let mut decoded = decode_all(&code, placed_ip(p, code.len()));
    if let Some((s, t)) = p.patch {
        // Point the store's disp16 at the target's immediate.
        let n = p.prefix.len();
        let mut d = Decoder::with_ip(16, &code, placed_ip(p, code.len()) as u64, DecoderOptions::NONE);
        let mut target = None;
        let mut i = 0;
        while d.can_decode() {
            let ins = d.decode();
            if i == n + t {
                let co = d.get_constant_offsets(&ins);
                if co.has_immediate() {
                    target = Some(ins.ip() as u16 + co.immediate_offset() as u16);
                }
            }
            i += 1;
        }
        if let Some(addr) = target {
            p.body[s].set_memory_displacement32(addr as u32);
            code = assemble_once(p).ok()?;
            decoded = decode_all(&code, placed_ip(p, code.len()));
        } else {
            p.patch = None;
        }
    }
    let term_len = match p.term {
        Term::DecJnz(_) => 2,
        _ => 1,
    };
    let expect = p.prefix.len() + p.body.len() + term_len + 1;
    if decoded.len() != expect || decoded.iter().any(|i| i.is_invalid()) {
        return None;
    }
    let items: Vec<Item> = decoded[..expect - 1]
        .iter()
        .map(|ins| Item { ip: ins.ip() as u16, fx: flag_effect(ins, None) })
        .collect();
    let hlt_ip = decoded[expect - 1].ip() as u16;
    let ip = placed_ip(p, code.len());
    p.init.eip = ip as u32;
    Some(Built { code, items, prefix_len: p.prefix.len(), hlt_ip, ip })
}

/// A "fat" program for filling the code buffer: `loops` loops one after the other, each
/// `mov cx, 3; cmp r8, imm8; head: body (25 instructions, mostly memory operands); dec cx; jnz
/// head`,
/// then `cmp al, 0; hlt` (all six flags defined at the end). Returns the initial state and the
/// code (at IP `origin`).
pub fn generate_fat(
    rng: &mut SplitMix64,
    cat: &Catalogue,
    loops: usize,
    origin: u16,
) -> Option<(CpuState, Vec<u8>)> {
    let mut init =
        CpuState { eflags: flags::FIXED | (rng.next_u32() & flags::STATUS), ..CpuState::default() };
    init.segs[1] = seg(CODE_SEG);
    init.eip = origin as u32;
    for g in 0..8 {
        init.gpr[g] = rng.value(32);
    }
    for s in [0, 2, 3, 4, 5] {
        init.segs[s] = data_seg(rng);
    }
    for g in [3usize, 5, 6, 7] {
        init.gpr[g] = (init.gpr[g] & 0xFFFF_0000) | rng.below(0x400) as u32;
    }
    let mut segs = vec![Register::None; 6];
    segs.extend_from_slice(&SEGS[..1]);
    segs.extend_from_slice(&SEGS[2..]);
    let cx =
        Ctx { no_write: 0b1110_1010, bases: 0b1110_1000, disp: Disp::Small, segs, mem_pct: 80, a32: false };
    let mut info = InstructionInfoFactory::new();
    let mut a = CodeAssembler::new(16).ok()?;
    for _ in 0..loops {
        let mut p = Program {
            class: Class::Normal,
            prefix: Vec::new(),
            body: (0..25).map(|_| gen_insn(rng, cat, &cx, &mut info)).collect(),
            term: Term::DecJnz(Register::CX),
            init,
            a20_wrap: false,
            mmio: false,
            fill_seed: 0,
            cap: 0,
            patch: None,
            code_ip: CODE_IP,
            top: None,
            ecx_loop: false,
        };
        make_flag_safe(&mut p, rng);
        a.mov(iced_x86::code_asm::cx, 3u32).ok()?;
        a.add_instruction(definer(rng)).ok()?;
        let mut head = a.create_label();
        a.set_label(&mut head).ok()?;
        for ins in &p.body {
            a.add_instruction(*ins).ok()?;
        }
        emit_term(&mut a, p.term, false, head).ok()?;
    }
    a.cmp(iced_x86::code_asm::al, 0).ok()?;
    a.hlt().ok()?;
    Some((init, a.assemble(origin as u64).ok()?))
}

impl Program {
    /// A program of class Normal around already assembled code at [`CODE_IP`].
    pub fn plain(init: CpuState, fill_seed: u64, cap: u64) -> Program {
        Program {
            class: Class::Normal,
            prefix: Vec::new(),
            body: Vec::new(),
            term: Term::Jmp,
            init,
            a20_wrap: false,
            mmio: false,
            fill_seed,
            cap,
            patch: None,
            code_ip: CODE_IP,
            top: None,
            ecx_loop: false,
        }
    }
}
