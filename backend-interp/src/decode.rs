//! Decoding: turns instruction bytes into an [`Op`] once, using iced-x86's 16-bit decoder.
//!
//! The handler is chosen here (a generic instance per operation, width and register/memory
//! form) and every operand is reduced to register indices, an effective-address recipe and
//! immediates. Anything the interpreter does not implement gets the `unsupported` handler;
//! encodings a 386+ rejects in real mode get #UD (invalid opcodes, VEX/EVEX/XOP, LOCK on a
//! non-lockable instruction or a register destination, protected-mode-only instructions);
//! an instruction longer than 15 bytes (or running past the CS limit) gets #GP.
use picoqemu_core::flags::{CF, STATUS};

use iced_x86::{
    Code, ConditionCode, Decoder, DecoderError, DecoderOptions, EncodingKind, FlowControl, Instruction,
    Mnemonic, OpKind, Register,
};

use crate::arith::{
    self, alu_eg, alu_eg_nf, alu_ei, alu_ei_nf, alu_ge, cmpxchg, cmpxchg8b, unary, unary_nf, xadd,
};
use crate::bcd;
use crate::control::{
    bound, call_rel, call_rm, far_direct, far_indirect, jcc, jmp_rel, jmp_rm, loop_, ret, retf,
};
use crate::cpu::{DS, ES, FS, GS, SS};
use crate::flags::wmask;
use crate::interrupt;
use crate::io::{in_, out};
use crate::logic::{bsf, bt, setcc};
use crate::muldiv::{imul2, muldiv};
use crate::op::{Handler, Op, NO_REG};
use crate::shift::{shd, shift};
use crate::stack::{
    enter, leave, pop_m, pop_r, pop_s, popa, popf, push_i, push_m, push_r, push_s, pusha, pushf,
};
use crate::string::{self, string};
use crate::system::{self, flag_op, lxdt, sxdt};
use crate::transfer::{self, cmov, lxs, mov_eg, mov_ei, mov_from_sreg, mov_gm, mov_sreg, movx, xchg};

/// A decoded instruction and how it shapes a cached block.
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    pub op: Op,
    /// The block must end after this instruction (control flow, SS load, POPF, HLT, ...).
    pub ends_block: bool,
    /// The instruction must be a block of its own (REP string instructions).
    pub alone: bool,
    /// What the block optimiser (`opt.rs`) may assume about the instruction.
    pub fx: Fx,
}

/// Facts about an instruction for the block optimiser. The default ([`Fx::OPAQUE`]) is the
/// safe one: the instruction may fault, end the block or read any flag, so every flag must be
/// exact before it.
#[derive(Debug, Clone, Copy)]
pub struct Fx {
    /// Cannot fault, cannot stop the block, reads no flag.
    pub safe: bool,
    /// Status flags it writes (only meaningful when `safe`).
    pub writes: u32,
    /// An equivalent handler that leaves EFLAGS alone, usable when none of `writes` is read
    /// before being overwritten.
    pub nf: Option<Handler>,
    /// DEC reg: the handler of `dec reg; jnz rel` fused into one op.
    pub fuse_jnz: Option<Handler>,
    /// JNZ rel.
    pub jnz: bool,
}

impl Fx {
    pub const OPAQUE: Fx = Fx { safe: false, writes: 0, nf: None, fuse_jnz: None, jnz: false };
}

/// Picks `f::<pre.., W, MEM, post..>` for a runtime width (1, 2, 4) and memory flag.
macro_rules! pick {
    ($f:ident [$($pre:tt)*] $w:expr, $mem:expr $(, $post:tt)*) => {
        match ($w, $mem) {
            (1, false) => $f::<$($pre)* 1, false $(, $post)*> as Handler,
            (1, true) => $f::<$($pre)* 1, true $(, $post)*> as Handler,
            (2, false) => $f::<$($pre)* 2, false $(, $post)*> as Handler,
            (2, true) => $f::<$($pre)* 2, true $(, $post)*> as Handler,
            (_, false) => $f::<$($pre)* 4, false $(, $post)*> as Handler,
            (_, true) => $f::<$($pre)* 4, true $(, $post)*> as Handler,
        }
    };
}

/// Picks `f::<K, W, MEM, post..>` for a runtime operation index `K` in 0..=8.
macro_rules! pick_k {
    ($f:ident $k:expr, $w:expr, $mem:expr $(, $post:tt)*) => {
        match $k {
            0 => pick!($f [0,] $w, $mem $(, $post)*),
            1 => pick!($f [1,] $w, $mem $(, $post)*),
            2 => pick!($f [2,] $w, $mem $(, $post)*),
            3 => pick!($f [3,] $w, $mem $(, $post)*),
            4 => pick!($f [4,] $w, $mem $(, $post)*),
            5 => pick!($f [5,] $w, $mem $(, $post)*),
            6 => pick!($f [6,] $w, $mem $(, $post)*),
            7 => pick!($f [7,] $w, $mem $(, $post)*),
            _ => pick!($f [8,] $w, $mem $(, $post)*),
        }
    };
}

/// Picks `f::<W>` for W in 2, 4.
macro_rules! pick_w {
    ($f:ident [$($pre:tt)*] $w:expr $(, $post:tt)*) => {
        if $w == 4 { $f::<$($pre)* 4 $(, $post)*> as Handler } else { $f::<$($pre)* 2 $(, $post)*> as Handler }
    };
}

/// Picks `f::<W>` for W in 1, 2, 4.
macro_rules! pick_w3 {
    ($f:ident [$($pre:tt)*] $w:expr $(, $post:tt)*) => {
        match $w {
            1 => $f::<$($pre)* 1 $(, $post)*> as Handler,
            2 => $f::<$($pre)* 2 $(, $post)*> as Handler,
            _ => $f::<$($pre)* 4 $(, $post)*> as Handler,
        }
    };
}

const PREFIXES: [u8; 11] = [0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3];

/// Operand-size, address-size and opcode-byte facts from the raw bytes.
struct Raw {
    o32: bool,
    a32: bool,
    opcode: u8,
    prefix_count: usize,
}

fn scan(bytes: &[u8]) -> Raw {
    let mut r = Raw { o32: false, a32: false, opcode: 0, prefix_count: 0 };
    for &b in bytes {
        if !PREFIXES.contains(&b) {
            r.opcode = b;
            return r;
        }
        r.prefix_count += 1;
        match b {
            0x66 => r.o32 = true,
            0x67 => r.a32 = true,
            _ => {}
        }
    }
    r
}

fn gpr(r: Register) -> u8 {
    let n = r as u32;
    let base = match r.size() {
        1 => Register::AL,
        2 => Register::AX,
        _ => Register::EAX,
    } as u32;
    (n.wrapping_sub(base) & 7) as u8
}

/// Segment register index (ES..GS = 0..5); anything else (never expected) maps to DS.
fn sreg(r: Register) -> u8 {
    let n = (r as u32).wrapping_sub(Register::ES as u32);
    if n < 6 {
        n as u8
    } else {
        DS
    }
}

fn cc(ins: &Instruction) -> u8 {
    match ins.condition_code() {
        ConditionCode::o => 0,
        ConditionCode::no => 1,
        ConditionCode::b => 2,
        ConditionCode::ae => 3,
        ConditionCode::e => 4,
        ConditionCode::ne => 5,
        ConditionCode::be => 6,
        ConditionCode::a => 7,
        ConditionCode::s => 8,
        ConditionCode::ns => 9,
        ConditionCode::p => 10,
        ConditionCode::np => 11,
        ConditionCode::l => 12,
        ConditionCode::ge => 13,
        ConditionCode::le => 14,
        _ => 15,
    }
}

fn is_imm(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8_2nd
    )
}

/// Builds the operand fields of an [`Op`].
struct B<'a> {
    ins: &'a Instruction,
    op: Op,
    raw: &'a Raw,
    fx: Fx,
}

impl B<'_> {
    fn kind(&self, n: u32) -> OpKind {
        self.ins.op_kind(n)
    }
    fn is_mem(&self, n: u32) -> bool {
        self.kind(n) == OpKind::Memory
    }
    /// Width in bytes of operand `n` (register or memory).
    fn width(&self, n: u32) -> u8 {
        match self.kind(n) {
            OpKind::Register => self.ins.op_register(n).size() as u8,
            OpKind::Memory => self.ins.memory_size().size() as u8,
            _ => 0,
        }
    }
    fn mem(&mut self) {
        let ins = self.ins;
        let op = &mut self.op;
        op.base = if ins.memory_base() == Register::None { NO_REG } else { gpr(ins.memory_base()) };
        op.index = if ins.memory_index() == Register::None { NO_REG } else { gpr(ins.memory_index()) };
        op.scale = ins.memory_index_scale().trailing_zeros() as u8;
        op.disp = ins.memory_displacement32();
        op.amask = if self.raw.a32 { u32::MAX } else { 0xFFFF };
        op.seg = sreg(ins.memory_segment());
    }
    /// Fills `m` (register) or the memory fields from operand `n`; true when memory.
    fn rm(&mut self, n: u32) -> bool {
        if self.is_mem(n) {
            self.mem();
            true
        } else {
            self.op.m = gpr(self.ins.op_register(n));
            false
        }
    }
    fn reg(&mut self, n: u32) {
        self.op.r = gpr(self.ins.op_register(n));
    }
    fn imm(&mut self, n: u32, w: u8) {
        self.op.imm = self.ins.immediate(n) as u32 & wmask(w);
    }
    fn rel(&mut self) {
        let next = self.ins.next_ip() as u32;
        let target = self.ins.near_branch_target() as u32;
        self.op.imm = target.wrapping_sub(next);
    }
}

/// Decodes the instruction at the start of `bytes` (at most 15 bytes, fewer when the CS
/// limit cuts the fetch short).
/// Bochs' magic breakpoint, `xchg bx, bx`.
pub const MAGIC_BREAK: [u8; 2] = [0x87, 0xDB];

/// `xchg bx, bx` while the magic breakpoint is on: a block-ending op that stops the run
/// after it (`system::magic_break`). Decoded, and so paid for, only when the option is on.
pub fn magic_break() -> Decoded {
    let op = Op::new(system::magic_break, MAGIC_BREAK.len() as u8);
    Decoded { op, ends_block: true, alone: false, fx: Fx::OPAQUE }
}

pub fn decode(bytes: &[u8], ins: &mut Instruction) -> Decoded {
    let mut d = Decoder::with_ip(16, bytes, 0, DecoderOptions::NONE);
    d.decode_out(ins);
    let raw = scan(bytes);
    let bad = |h: Handler| Decoded { op: Op::new(h, 1), ends_block: true, alone: false, fx: Fx::OPAQUE };
    if ins.is_invalid() {
        if d.last_error() == DecoderError::NoMoreBytes || raw.prefix_count >= 15 {
            return bad(system::too_long);
        }
        return bad(arith::ud);
    }
    if ins.encoding() != EncodingKind::Legacy {
        // VEX/EVEX/XOP encodings are #UD in real mode.
        return bad(arith::ud);
    }
    let mut b = B { ins, op: Op::new(system::unsupported, ins.len() as u8), raw: &raw, fx: Fx::OPAQUE };
    b.op.osz = if raw.o32 { 4 } else { 2 };
    b.op.amask = if raw.a32 { u32::MAX } else { 0xFFFF };
    let mut alone = false;
    let exec = if ins.has_lock_prefix() && !lockable(ins) {
        arith::ud as Handler
    } else if (0xD8..=0xDF).contains(&raw.opcode) {
        if ins.op_count() > 0 && (0..ins.op_count()).any(|n| ins.op_kind(n) == OpKind::Memory) {
            b.mem();
            b.op.aux = 1;
            b.op.imm = ins.memory_size().size() as u32;
        }
        system::esc
    } else {
        translate(&mut b, &mut alone)
    };
    b.op.exec = exec;
    let ends = ins.flow_control() != FlowControl::Next
        || matches!(
            ins.mnemonic(),
            Mnemonic::Hlt | Mnemonic::Popf | Mnemonic::Popfd | Mnemonic::Lss | Mnemonic::Sti | Mnemonic::Cli
        )
        || (ins.mnemonic() == Mnemonic::Mov
            && ins.op0_kind() == OpKind::Register
            && ins.op0_register() == Register::SS)
        || (ins.mnemonic() == Mnemonic::Pop
            && ins.op0_kind() == OpKind::Register
            && ins.op0_register() == Register::SS);
    Decoded { op: b.op, ends_block: ends || alone, alone, fx: b.fx }
}

/// LOCK is valid only on these read-modify-write instructions with a memory destination.
fn lockable(ins: &Instruction) -> bool {
    use Mnemonic::*;
    matches!(
        ins.mnemonic(),
        Add | Adc
            | And
            | Or
            | Sbb
            | Sub
            | Xor
            | Xchg
            | Inc
            | Dec
            | Not
            | Neg
            | Bts
            | Btr
            | Btc
            | Xadd
            | Cmpxchg
            | Cmpxchg8b
    ) && ins.op0_kind() == OpKind::Memory
}

fn alu_index(m: Mnemonic) -> u8 {
    match m {
        Mnemonic::Add => arith::ADD,
        Mnemonic::Or => arith::OR,
        Mnemonic::Adc => arith::ADC,
        Mnemonic::Sbb => arith::SBB,
        Mnemonic::And => arith::AND,
        Mnemonic::Sub => arith::SUB,
        Mnemonic::Xor => arith::XOR,
        Mnemonic::Cmp => arith::CMP,
        _ => arith::TEST,
    }
}

/// [`Fx`] of a register-form ALU operation `k` whose flag-free variant is `nf`: ADD, OR,
/// AND, SUB, XOR, CMP and TEST write every status flag and read none (ADC/SBB read CF).
fn alu_fx(k: u8, nf: Handler) -> Fx {
    if k == arith::ADC || k == arith::SBB {
        Fx::OPAQUE
    } else {
        Fx { safe: true, writes: STATUS, nf: Some(nf), fuse_jnz: None, jnz: false }
    }
}

fn shift_index(m: Mnemonic) -> u8 {
    match m {
        Mnemonic::Rol => crate::shift::ROL,
        Mnemonic::Ror => crate::shift::ROR,
        Mnemonic::Rcl => crate::shift::RCL,
        Mnemonic::Rcr => crate::shift::RCR,
        Mnemonic::Shl => crate::shift::SHL,
        Mnemonic::Shr => crate::shift::SHR,
        Mnemonic::Sal => crate::shift::SAL,
        _ => crate::shift::SAR,
    }
}

fn jcc_handler(c: u8) -> Handler {
    match c {
        0 => jcc::<0>,
        1 => jcc::<1>,
        2 => jcc::<2>,
        3 => jcc::<3>,
        4 => jcc::<4>,
        5 => jcc::<5>,
        6 => jcc::<6>,
        7 => jcc::<7>,
        8 => jcc::<8>,
        9 => jcc::<9>,
        10 => jcc::<10>,
        11 => jcc::<11>,
        12 => jcc::<12>,
        13 => jcc::<13>,
        14 => jcc::<14>,
        _ => jcc::<15>,
    }
}

fn string_handler(kind: u8, w: u8, a32: bool, rep: u8) -> Handler {
    macro_rules! s {
        ($k:tt) => {
            match (a32, rep) {
                (false, 0) => pick_w3!(string [$k,] w, false, 0),
                (false, 1) => pick_w3!(string [$k,] w, false, 1),
                (false, _) => pick_w3!(string [$k,] w, false, 2),
                (true, 0) => pick_w3!(string [$k,] w, true, 0),
                (true, 1) => pick_w3!(string [$k,] w, true, 1),
                (true, _) => pick_w3!(string [$k,] w, true, 2),
            }
        };
    }
    match kind {
        string::MOVS => s!(0),
        string::CMPS => s!(1),
        string::SCAS => s!(2),
        string::LODS => s!(3),
        string::STOS => s!(4),
        string::INS => s!(5),
        _ => s!(6),
    }
}

/// Chooses the handler and fills the operands for everything but x87 escapes.
fn translate(b: &mut B, alone: &mut bool) -> Handler {
    use Mnemonic as M;
    let ins = b.ins;
    let osz = b.op.osz;
    let m = ins.mnemonic();
    match m {
        M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test => {
            let k = alu_index(m);
            let w = b.width(0);
            if is_imm(b.kind(1)) {
                let mem = b.rm(0);
                b.imm(1, w);
                if !mem {
                    b.fx = alu_fx(k, pick_k!(alu_ei_nf k, w, false));
                }
                pick_k!(alu_ei k, w, mem)
            } else if b.is_mem(1) {
                b.reg(0);
                b.mem();
                pick_k!(alu_ge k, w, true)
            } else {
                let mem = b.rm(0);
                b.reg(1);
                if !mem {
                    b.fx = alu_fx(k, pick_k!(alu_eg_nf k, w, false));
                }
                pick_k!(alu_eg k, w, mem)
            }
        }
        M::Inc | M::Dec | M::Not | M::Neg => {
            let k = match m {
                M::Inc => arith::INC,
                M::Dec => arith::DEC,
                M::Not => arith::NOT,
                _ => arith::NEG,
            };
            let w = b.width(0);
            let mem = b.rm(0);
            if !mem && (k == arith::INC || k == arith::DEC) {
                b.fx = Fx {
                    safe: true,
                    writes: STATUS & !CF,
                    nf: Some(pick_k!(unary_nf k, w, false)),
                    fuse_jnz: match (k == arith::DEC, w) {
                        (true, 2) => Some(arith::dec_jnz::<2> as Handler),
                        (true, 4) => Some(arith::dec_jnz::<4> as Handler),
                        _ => None,
                    },
                    jnz: false,
                };
            } else if !mem && k == arith::NOT {
                b.fx = Fx { safe: true, ..Fx::OPAQUE };
            }
            pick_k!(unary k, w, mem)
        }
        M::Mul | M::Div | M::Idiv => {
            let k = match m {
                M::Mul => crate::muldiv::MUL,
                M::Div => crate::muldiv::DIV,
                _ => crate::muldiv::IDIV,
            };
            let w = b.width(0);
            let mem = b.rm(0);
            pick_k!(muldiv k, w, mem)
        }
        M::Imul => {
            if ins.op_count() == 1 {
                let w = b.width(0);
                let mem = b.rm(0);
                pick_k!(muldiv { crate::muldiv::IMUL }, w, mem)
            } else {
                let w = b.width(0);
                b.reg(0);
                let mem = b.rm(1);
                if ins.op_count() == 3 {
                    b.imm(2, w);
                    pick!(imul2 [] w, mem, true)
                } else {
                    pick!(imul2 [] w, mem, false)
                }
            }
        }
        M::Rol | M::Ror | M::Rcl | M::Rcr | M::Shl | M::Shr | M::Sal | M::Sar => {
            let k = shift_index(m);
            let w = b.width(0);
            let mem = b.rm(0);
            if b.kind(1) == OpKind::Register {
                pick_k!(shift k, w, mem, true)
            } else {
                b.imm(1, 1);
                pick_k!(shift k, w, mem, false)
            }
        }
        M::Shld | M::Shrd => {
            let w = b.width(0);
            let mem = b.rm(0);
            b.reg(1);
            let cl = b.kind(2) == OpKind::Register;
            if !cl {
                b.imm(2, 1);
            }
            match (m == M::Shld, cl) {
                (true, true) => pick!(shd [true,] w, mem, true),
                (true, false) => pick!(shd [true,] w, mem, false),
                (false, true) => pick!(shd [false,] w, mem, true),
                (false, false) => pick!(shd [false,] w, mem, false),
            }
        }
        M::Bt | M::Bts | M::Btr | M::Btc => {
            let k = match m {
                M::Bt => 0,
                M::Bts => 1,
                M::Btr => 2,
                _ => 3,
            };
            let w = b.width(0);
            let mem = b.rm(0);
            if is_imm(b.kind(1)) {
                b.imm(1, 1);
                pick_k!(bt k, w, mem, true)
            } else {
                b.reg(1);
                pick_k!(bt k, w, mem, false)
            }
        }
        M::Bsf | M::Bsr => {
            let w = b.width(0);
            b.reg(0);
            let mem = b.rm(1);
            if m == M::Bsr {
                pick!(bsf [true,] w, mem)
            } else {
                pick!(bsf [false,] w, mem)
            }
        }
        M::Xadd | M::Cmpxchg => {
            let w = b.width(0);
            let mem = b.rm(0);
            b.reg(1);
            if m == M::Xadd {
                pick!(xadd [] w, mem)
            } else {
                pick!(cmpxchg [] w, mem)
            }
        }
        M::Cmpxchg8b => {
            if !b.is_mem(0) {
                return arith::ud;
            }
            b.mem();
            cmpxchg8b
        }
        M::Bswap => {
            b.rm(0);
            b.op.osz = b.width(0);
            crate::logic::bswap as Handler
        }
        M::Mov => translate_mov(b),
        M::Movzx | M::Movsx => {
            let s = b.width(1);
            b.reg(0);
            b.op.osz = b.width(0);
            let mem = b.rm(1);
            match (s, m == M::Movsx, mem) {
                (1, false, false) => movx::<1, false, false>,
                (1, false, true) => movx::<1, false, true>,
                (1, true, false) => movx::<1, true, false>,
                (1, true, true) => movx::<1, true, true>,
                (_, false, false) => movx::<2, false, false>,
                (_, false, true) => movx::<2, false, true>,
                (_, true, false) => movx::<2, true, false>,
                (_, true, true) => movx::<2, true, true>,
            }
        }
        M::Xchg => {
            let w = b.width(0);
            if b.is_mem(0) {
                b.mem();
                b.reg(1);
                pick!(xchg [] w, true)
            } else if b.is_mem(1) {
                b.mem();
                b.reg(0);
                pick!(xchg [] w, true)
            } else {
                b.op.m = gpr(ins.op_register(0));
                b.reg(1);
                pick!(xchg [] w, false)
            }
        }
        M::Nop | M::Pause | M::Invlpg | M::Wbinvd | M::Invd => {
            if b.kind(0) == OpKind::Memory {
                b.mem();
            }
            system::nop
        }
        M::Prefetchnta | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchw | M::Reservednop => {
            system::nop
        }
        M::Lea => {
            if !b.is_mem(1) {
                return arith::ud;
            }
            b.reg(0);
            b.op.osz = b.width(0);
            b.mem();
            transfer::lea
        }
        M::Lds | M::Les | M::Lss | M::Lfs | M::Lgs => {
            if !b.is_mem(1) {
                return arith::ud;
            }
            b.op.aux = match m {
                M::Lds => DS,
                M::Les => ES,
                M::Lss => SS,
                M::Lfs => FS,
                _ => GS,
            };
            b.reg(0);
            let w = b.width(0);
            b.mem();
            pick_w!(lxs [] w)
        }
        M::Xlatb => {
            b.op.seg = sreg(ins.memory_segment());
            transfer::xlat
        }
        M::Cbw | M::Cwde => transfer::cbw,
        M::Cwd | M::Cdq => transfer::cwd,
        M::Lahf => transfer::lahf,
        M::Sahf => transfer::sahf,
        M::Push => {
            if b.kind(0) == OpKind::Register {
                let r = ins.op_register(0);
                if r.is_segment_register() {
                    b.op.m = sreg(r);
                    pick_w!(push_s [] osz)
                } else {
                    b.op.m = gpr(r);
                    pick_w!(push_r [] r.size() as u8)
                }
            } else if b.is_mem(0) {
                let w = b.width(0);
                b.mem();
                pick_w!(push_m [] w)
            } else {
                b.imm(0, osz);
                b.op.imm = (ins.immediate(0) as u32) & wmask(osz);
                pick_w!(push_i [] osz)
            }
        }
        M::Pop => {
            if b.kind(0) == OpKind::Register {
                let r = ins.op_register(0);
                if r.is_segment_register() {
                    if r == Register::CS {
                        return arith::ud;
                    }
                    b.op.m = sreg(r);
                    pick_w!(pop_s [] osz)
                } else {
                    b.op.m = gpr(r);
                    pick_w!(pop_r [] r.size() as u8)
                }
            } else {
                let w = b.width(0);
                b.mem();
                pick_w!(pop_m [] w)
            }
        }
        M::Pusha => push_pop_all::<true>(2),
        M::Pushad => push_pop_all::<true>(4),
        M::Popa => push_pop_all::<false>(2),
        M::Popad => push_pop_all::<false>(4),
        M::Pushf => pushf::<2>,
        M::Pushfd => pushf::<4>,
        M::Popf => popf::<2>,
        M::Popfd => popf::<4>,
        M::Enter => {
            b.op.imm = ins.immediate(0) as u32 & 0xFFFF;
            b.op.imm2 = ins.immediate(1) as u32 & 0xFF;
            pick_w!(enter [] osz)
        }
        M::Leave => pick_w!(leave [] osz),
        M::Jmp | M::Call => {
            let call = m == M::Call;
            match b.kind(0) {
                OpKind::NearBranch16 | OpKind::NearBranch32 => {
                    b.rel();
                    if call {
                        pick_w!(call_rel [] osz)
                    } else {
                        jmp_rel
                    }
                }
                OpKind::FarBranch16 | OpKind::FarBranch32 => {
                    b.op.imm = if b.kind(0) == OpKind::FarBranch16 {
                        ins.far_branch16() as u32
                    } else {
                        ins.far_branch32()
                    };
                    b.op.imm2 = ins.far_branch_selector() as u32;
                    match (osz, call) {
                        (4, true) => far_direct::<4, true>,
                        (4, false) => far_direct::<4, false>,
                        (_, true) => far_direct::<2, true>,
                        (_, false) => far_direct::<2, false>,
                    }
                }
                _ => {
                    let far = matches!(
                        ins.memory_size(),
                        iced_x86::MemorySize::SegPtr16 | iced_x86::MemorySize::SegPtr32
                    );
                    if far {
                        if !b.is_mem(0) {
                            return arith::ud;
                        }
                        b.mem();
                        match (osz, call) {
                            (4, true) => far_indirect::<4, true>,
                            (4, false) => far_indirect::<4, false>,
                            (_, true) => far_indirect::<2, true>,
                            (_, false) => far_indirect::<2, false>,
                        }
                    } else {
                        let w = b.width(0);
                        let mem = b.rm(0);
                        match (w, mem, call) {
                            (4, false, true) => call_rm::<4, false>,
                            (4, true, true) => call_rm::<4, true>,
                            (_, false, true) => call_rm::<2, false>,
                            (_, true, true) => call_rm::<2, true>,
                            (4, false, false) => jmp_rm::<4, false>,
                            (4, true, false) => jmp_rm::<4, true>,
                            (_, false, false) => jmp_rm::<2, false>,
                            (_, true, false) => jmp_rm::<2, true>,
                        }
                    }
                }
            }
        }
        M::Jo
        | M::Jno
        | M::Jb
        | M::Jae
        | M::Je
        | M::Jne
        | M::Jbe
        | M::Ja
        | M::Js
        | M::Jns
        | M::Jp
        | M::Jnp
        | M::Jl
        | M::Jge
        | M::Jle
        | M::Jg => {
            b.rel();
            b.fx.jnz = cc(ins) == 5;
            jcc_handler(cc(ins))
        }
        M::Loop | M::Loope | M::Loopne | M::Jcxz | M::Jecxz => {
            b.rel();
            let a32 = matches!(
                ins.code(),
                Code::Loop_rel8_16_ECX
                    | Code::Loop_rel8_32_ECX
                    | Code::Loope_rel8_16_ECX
                    | Code::Loope_rel8_32_ECX
                    | Code::Loopne_rel8_16_ECX
                    | Code::Loopne_rel8_32_ECX
                    | Code::Jecxz_rel8_16
                    | Code::Jecxz_rel8_32
            );
            match (m, a32) {
                (M::Loop, false) => loop_::<0, false>,
                (M::Loop, true) => loop_::<0, true>,
                (M::Loope, false) => loop_::<1, false>,
                (M::Loope, true) => loop_::<1, true>,
                (M::Loopne, false) => loop_::<2, false>,
                (M::Loopne, true) => loop_::<2, true>,
                (_, false) => loop_::<3, false>,
                (_, true) => loop_::<3, true>,
            }
        }
        M::Ret | M::Retf => {
            if ins.op_count() == 1 {
                b.op.imm = ins.immediate(0) as u32 & 0xFFFF;
            }
            if m == M::Ret {
                pick_w!(ret [] osz)
            } else {
                pick_w!(retf [] osz)
            }
        }
        M::Int => {
            b.op.imm = ins.immediate(0) as u32 & 0xFF;
            interrupt::int_n
        }
        M::Int3 => {
            b.op.imm = interrupt::BP as u32;
            interrupt::int_n
        }
        M::Int1 => {
            b.op.imm = 1;
            interrupt::int_n
        }
        M::Into => interrupt::into,
        M::Iret => {
            b.op.osz = 2;
            interrupt::iret
        }
        M::Iretd => {
            b.op.osz = 4;
            interrupt::iret
        }
        M::Bound => {
            if !b.is_mem(1) {
                return arith::ud;
            }
            b.reg(0);
            let w = b.width(0);
            b.mem();
            pick_w!(bound [] w)
        }
        M::Hlt => system::hlt,
        M::Cpuid => system::cpuid,
        M::Rdtsc => system::rdtsc,
        M::Clc => flag_op::<{ system::CLC }>,
        M::Stc => flag_op::<{ system::STC }>,
        M::Cmc => flag_op::<{ system::CMC }>,
        M::Cld => flag_op::<{ system::CLD }>,
        M::Std => flag_op::<{ system::STD }>,
        M::Cli => flag_op::<{ system::CLI }>,
        M::Sti => flag_op::<{ system::STI }>,
        M::In => {
            let w = b.width(0);
            if b.kind(1) == OpKind::Register {
                pick_w3!(in_ [] w, true)
            } else {
                b.imm(1, 1);
                pick_w3!(in_ [] w, false)
            }
        }
        M::Out => {
            let w = b.width(1);
            if b.kind(0) == OpKind::Register {
                pick_w3!(out [] w, true)
            } else {
                b.imm(0, 1);
                pick_w3!(out [] w, false)
            }
        }
        M::Movsb
        | M::Movsw
        | M::Movsd
        | M::Cmpsb
        | M::Cmpsw
        | M::Cmpsd
        | M::Scasb
        | M::Scasw
        | M::Scasd
        | M::Lodsb
        | M::Lodsw
        | M::Lodsd
        | M::Stosb
        | M::Stosw
        | M::Stosd
        | M::Insb
        | M::Insw
        | M::Insd
        | M::Outsb
        | M::Outsw
        | M::Outsd => {
            let (kind, w) = match m {
                M::Movsb => (string::MOVS, 1),
                M::Movsw => (string::MOVS, 2),
                M::Movsd => (string::MOVS, 4),
                M::Cmpsb => (string::CMPS, 1),
                M::Cmpsw => (string::CMPS, 2),
                M::Cmpsd => (string::CMPS, 4),
                M::Scasb => (string::SCAS, 1),
                M::Scasw => (string::SCAS, 2),
                M::Scasd => (string::SCAS, 4),
                M::Lodsb => (string::LODS, 1),
                M::Lodsw => (string::LODS, 2),
                M::Lodsd => (string::LODS, 4),
                M::Stosb => (string::STOS, 1),
                M::Stosw => (string::STOS, 2),
                M::Stosd => (string::STOS, 4),
                M::Insb => (string::INS, 1),
                M::Insw => (string::INS, 2),
                M::Insd => (string::INS, 4),
                M::Outsb => (string::OUTS, 1),
                M::Outsw => (string::OUTS, 2),
                _ => (string::OUTS, 4),
            };
            if !ins.op_kinds().any(|k| {
                matches!(
                    k,
                    OpKind::MemorySegSI
                        | OpKind::MemorySegESI
                        | OpKind::MemoryESDI
                        | OpKind::MemoryESEDI
                        | OpKind::MemorySegDI
                        | OpKind::MemorySegEDI
                )
            }) {
                // An SSE form sharing the mnemonic (MOVSD/CMPSD xmm).
                return system::unsupported;
            }
            b.op.seg = if matches!(kind, string::MOVS | string::CMPS | string::LODS | string::OUTS) {
                sreg(ins.memory_segment())
            } else {
                ES
            };
            let rep = if ins.has_repne_prefix() {
                string::REP_NE
            } else if ins.has_rep_prefix() {
                string::REP_E
            } else {
                string::REP_NONE
            };
            let rep = if matches!(kind, string::CMPS | string::SCAS) || rep == string::REP_NONE {
                rep
            } else {
                string::REP_E
            };
            *alone = rep != string::REP_NONE;
            string_handler(kind, w, b.raw.a32, rep)
        }
        M::Daa => bcd::daa::<false>,
        M::Das => bcd::daa::<true>,
        M::Aaa => bcd::aaa::<false>,
        M::Aas => bcd::aaa::<true>,
        M::Aam => {
            b.imm(0, 1);
            bcd::aam
        }
        M::Aad => {
            b.imm(0, 1);
            bcd::aad
        }
        M::Salc => bcd::salc,
        M::Seto
        | M::Setno
        | M::Setb
        | M::Setae
        | M::Sete
        | M::Setne
        | M::Setbe
        | M::Seta
        | M::Sets
        | M::Setns
        | M::Setp
        | M::Setnp
        | M::Setl
        | M::Setge
        | M::Setle
        | M::Setg => {
            b.op.aux = cc(ins);
            if b.rm(0) {
                setcc::<true>
            } else {
                setcc::<false>
            }
        }
        M::Cmovo
        | M::Cmovno
        | M::Cmovb
        | M::Cmovae
        | M::Cmove
        | M::Cmovne
        | M::Cmovbe
        | M::Cmova
        | M::Cmovs
        | M::Cmovns
        | M::Cmovp
        | M::Cmovnp
        | M::Cmovl
        | M::Cmovge
        | M::Cmovle
        | M::Cmovg => {
            b.op.aux = cc(ins);
            let w = b.width(0);
            b.reg(0);
            let mem = b.rm(1);
            pick!(cmov [] w, mem)
        }
        M::Lgdt | M::Lidt | M::Sgdt | M::Sidt => {
            if !b.is_mem(0) {
                return arith::ud;
            }
            b.mem();
            match m {
                M::Lgdt => lxdt::<{ system::GDTR }>,
                M::Lidt => lxdt::<{ system::IDTR }>,
                M::Sgdt => sxdt::<{ system::GDTR }>,
                _ => sxdt::<{ system::IDTR }>,
            }
        }
        M::Smsw | M::Lmsw => {
            let mem = b.rm(0);
            if !mem {
                b.op.osz = b.width(0);
            }
            match (m == M::Smsw, mem) {
                (true, true) => system::smsw::<true>,
                (true, false) => system::smsw::<false>,
                (false, true) => system::lmsw::<true>,
                (false, false) => system::lmsw::<false>,
            }
        }
        M::Clts => system::clts,
        M::Wait => system::wait,
        M::Ud0 | M::Ud1 | M::Ud2 => arith::ud,
        M::Arpl
        | M::Lar
        | M::Lsl
        | M::Sldt
        | M::Str
        | M::Lldt
        | M::Ltr
        | M::Verr
        | M::Verw
        | M::Syscall
        | M::Sysret
        | M::Sysenter
        | M::Sysexit
        | M::Rsm
        | M::Vmcall
        | M::Vmlaunch
        | M::Vmresume
        | M::Vmxoff
        | M::Vmmcall
        | M::Vmrun
        | M::Vmload
        | M::Vmsave
        | M::Swapgs
        | M::Rdtscp
        | M::Loadall => arith::ud,
        _ => system::unsupported,
    }
}

fn push_pop_all<const PUSH: bool>(w: u8) -> Handler {
    match (PUSH, w) {
        (true, 4) => pusha::<4>,
        (true, _) => pusha::<2>,
        (false, 4) => popa::<4>,
        (false, _) => popa::<2>,
    }
}

fn translate_mov(b: &mut B) -> Handler {
    let ins = b.ins;
    let (k0, k1) = (b.kind(0), b.kind(1));
    let reg0 = if k0 == OpKind::Register { ins.op_register(0) } else { Register::None };
    let reg1 = if k1 == OpKind::Register { ins.op_register(1) } else { Register::None };
    if reg0.is_cr() || reg1.is_cr() {
        let (cr, g) = if reg0.is_cr() { (reg0, reg1) } else { (reg1, reg0) };
        b.op.r = (cr as u32 - Register::CR0 as u32) as u8;
        b.op.m = gpr(g);
        return if reg0.is_cr() { system::mov_to_cr } else { system::mov_from_cr };
    }
    if reg0.is_tr() || reg1.is_tr() {
        return arith::ud;
    }
    if reg0.is_dr() || reg1.is_dr() {
        return system::unsupported;
    }
    if reg0.is_segment_register() {
        b.op.r = sreg(reg0);
        let mem = b.rm(1);
        return if mem { mov_sreg::<true> } else { mov_sreg::<false> };
    }
    if reg1.is_segment_register() {
        b.op.r = sreg(reg1);
        let mem = b.rm(0);
        if !mem {
            b.op.osz = reg0.size() as u8;
        }
        return if mem { mov_from_sreg::<true> } else { mov_from_sreg::<false> };
    }
    let w = b.width(0).max(b.width(1));
    if is_imm(k1) {
        let mem = b.rm(0);
        b.imm(1, w);
        if !mem {
            b.fx = Fx { safe: true, ..Fx::OPAQUE };
        }
        return pick!(mov_ei [] w, mem);
    }
    if k1 == OpKind::Memory {
        b.reg(0);
        b.mem();
        return pick_w3!(mov_gm [] w);
    }
    let mem = b.rm(0);
    b.reg(1);
    if !mem {
        b.fx = Fx { safe: true, ..Fx::OPAQUE };
    }
    pick!(mov_eg [] w, mem)
}

#[cfg(test)]
#[allow(unpredictable_function_pointer_comparisons)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Decoded {
        let mut ins = Instruction::default();
        let mut buf = bytes.to_vec();
        buf.resize(15, 0x90);
        decode(&buf, &mut ins)
    }

    #[test]
    fn picks_handlers_and_operands() {
        let d = dec(&[0x01, 0x47, 0x02]); // add [bx+2], ax
                                          // Handler identity is checked by behaviour (see `invalid_forms`): function pointer
                                          // equality is not reliable across codegen units in optimised builds.
        assert_eq!((d.op.base, d.op.index, d.op.disp & 0xFFFF, d.op.r, d.op.seg), (3, NO_REG, 2, 0, DS));
        let d = dec(&[0x8B, 0x46, 0xFE]); // mov ax, [bp-2]
        assert_eq!((d.op.base, d.op.seg, d.op.disp & 0xFFFF), (5, SS, 0xFFFE));
        let d = dec(&[0x67, 0x8B, 0x04, 0x8B]); // mov ax, [ebx+ecx*4]
        assert_eq!((d.op.base, d.op.index, d.op.scale, d.op.amask), (3, 1, 2, u32::MAX));
        let d = dec(&[0x75, 0xFE]); // jne $
        assert_eq!(d.op.imm, (-2i32) as u32);
        assert!(d.ends_block);
    }

    /// Runs `bytes` at 0000:0100 (followed by HLT) with #UD -> 0000:0200 and #GP -> 0000:0300,
    /// each a HLT, and returns the final IP: 0x201 for #UD, 0x301 for #GP, else past the HLT.
    fn fault_taken(bytes: &[u8]) -> u32 {
        let mut code = bytes.to_vec();
        code.push(0xF4);
        let mut t = crate::testutil::T::new(&code);
        t.poke(6 * 4, &[0x00, 0x02, 0x00, 0x00]);
        t.poke(13 * 4, &[0x00, 0x03, 0x00, 0x00]);
        t.poke(0x200, &[0xF4]);
        t.poke(0x300, &[0xF4]);
        t.cpu.set_reg(picoqemu_core::Gpr::Esp, 0x8000);
        t.cpu.set_reg(picoqemu_core::Gpr::Ebx, 0x4000);
        let r = t.run();
        assert_eq!(r.stop, picoqemu_core::StopReason::Halted);
        r.st.eip
    }

    #[test]
    fn invalid_forms() {
        const UD_TAKEN: u32 = 0x201;
        const GP_TAKEN: u32 = 0x301;
        assert_eq!(fault_taken(&[0x0F, 0x0B]), UD_TAKEN); // ud2
        assert_eq!(fault_taken(&[0xF0, 0x01, 0xC0]), UD_TAKEN); // lock add ax, ax
        assert_eq!(fault_taken(&[0xF0, 0x90]), UD_TAKEN); // lock nop
        assert_eq!(fault_taken(&[0xF0, 0x01, 0x07]), 0x104); // lock add [bx], ax: allowed
        assert_eq!(fault_taken(&[0xC5, 0xC0, 0x00]), UD_TAKEN); // VEX in real mode
        let mut long = vec![0x26; 15];
        long.push(0x90);
        assert_eq!(fault_taken(&long), GP_TAKEN); // more than 15 bytes
        let d = dec(&[0xF3, 0xA4]);
        assert!(d.alone && d.ends_block);
    }
}
