//! Guest loop region → host x86-64 code: the translator of the compiled tier (safe Rust; the
//! bytes it returns run through `exec.rs`).
//!
//! Scope: a loop region (`region.rs`: from a hot block through the last branch back into it
//! in the same page, with inner forward and backward branches, branches out, the functions it
//! calls in the page, and instructions that leave for the interpreter). Translated are the
//! instructions whose host encoding has exactly the guest's semantics — MOV, the ALU group,
//! TEST, INC/DEC, NEG/NOT, shifts and rotates, LEA, MOVZX/MOVSX, XCHG, CBW/CWD/CWDE/CDQ,
//! MUL/IMUL, SETcc, BT* with an immediate bit, CLC/STC/CMC, NOP — with 16-bit addressing or
//! 32-bit addressing (67h: any base, scaled index and 32-bit displacement; an offset past
//! FFFFh leaves for the interpreter, which raises the fault); PUSH/POP of a register or an
//! immediate and the stack side of near CALL/RET (a store or load at SS:SP, SP moved
//! modulo 64 KiB, checked like any access); near `jmp`/`jcc`/`loop*`; `jmp r/m16` and RET
//! through the region's dispatch table. Any other instruction leaves compiled code
//! with EIP on it. Each guest instruction is re-encoded for the host with its registers
//! renamed, so flags come from the host CPU exactly as KVM's emulator computes them.
//! Instructions are charged against the budget once per run of straight-line code (a budget
//! stop leaves at the run's start), so budgets and instruction counts stay exact.
//!
//! Host register use while a block runs:
//!
//! | guest | EAX | ECX | EDX | EBX | ESP  | EBP  | ESI  | EDI  |
//! |-------|-----|-----|-----|-----|------|------|------|------|
//! | host  | rax | rbp | rdx | rbx | r12  | r13  | r14  | r15  |
//!
//! `rcx`, `rdi` are scratch for address checks (`rcx` so that `jrcxz` can branch without
//! touching flags), `rsi` holds the host address of the current memory operand, `r8` the RAM
//! base, `r9` the page-flag table, `r10` the instruction budget and `r11` the constant 44
//! (a BMI2 `shrx` count: 12 as a 32-bit count, 44 as a 64-bit one). Guest CH has no host
//! encoding (rbp has no high byte), so an instruction using CH is ineligible, as is one mixing
//! AH/BH/DH with a register that needs a REX prefix.
//!
//! Guest EFLAGS status bits live in the host RFLAGS for the whole region: every check is done
//! with flag-neutral instructions (`lea`, `mov`, `movzx`, `shrx`, `jrcxz`), so the native ALU
//! instructions read and write the real guest flags. A memory access first checks that its
//! 16-bit offset does not run past 0xFFFF and that every page it touches is plain RAM (and, for
//! writes, holds no decoded code), using the frame's tables; otherwise the code exits *before*
//! the instruction and the interpreter runs it (MMIO, self-modifying code, segment faults,
//! A20 wrap all stay the interpreter's business). Consecutive accesses to the same operand
//! with unchanged address registers share one check (done for writing if any of them writes).
use std::mem::offset_of;

use iced_x86::code_asm::*;
use iced_x86::{
    BlockEncoderOptions, Code, ConditionCode, Instruction, MemoryOperand, Mnemonic, OpKind, Register,
};

use super::exec::JitCtx;
use super::region::{self, BranchKind, Region, Slot};

/// Stack frame of a running block: segment bases, the three lookup tables, the ctx pointer.
/// The prologue fills `[F_SEG, F_CTX)` with one copy of the `JitCtx` bytes from `seg_base` up
/// to `flags`, so the frame mirrors that part of the struct (asserted below).
const FRAME: i32 = 88;
const F_SEG: i32 = 0;
const F_WRAP: i32 = 24;
const F_RD: i32 = 48;
const F_WR: i32 = 64;
const F_CTX: i32 = 80;

// Layout assumptions of the emitted code, checked at compile time.
const _: () = {
    let seg = offset_of!(JitCtx, seg_base);
    // The frame copy: seg_base, then the tables, then flags right after them, in 8-byte moves.
    assert!(offset_of!(JitCtx, tables) - seg == (F_WRAP - F_SEG) as usize);
    assert!(offset_of!(JitCtx, flags) - seg == (F_CTX - F_SEG) as usize);
    assert!(seg % 8 == 0 && (F_CTX - F_SEG) % 8 == 0);
    assert!(std::mem::size_of::<[u32; 6]>() == (F_WRAP - F_SEG) as usize);
    // The three tables where `JitTier::new` puts them.
    assert!(F_WRAP as usize == F_SEG as usize + 24 + super::exec::T_WRAP);
    assert!(F_RD as usize == F_WRAP as usize + super::exec::T_READ);
    assert!(F_WR as usize == F_WRAP as usize + super::exec::T_WRITE);
    assert!(F_CTX as usize == F_WRAP as usize + super::exec::TABLES);
    assert!(FRAME == F_CTX + 8);
    // Fields the code loads as qwords and dwords.
    assert!(std::mem::size_of::<[u32; 8]>() == 32 && offset_of!(JitCtx, regs) % 4 == 0);
    assert!(offset_of!(JitCtx, ram) % 8 == 0 && offset_of!(JitCtx, pages) % 8 == 0);
    assert!(offset_of!(JitCtx, budget) % 8 == 0 && offset_of!(JitCtx, exit) % 8 == 0);
    assert!(offset_of!(JitCtx, flags) % 8 == 0);
    // Every offset fits the i32 displacements the assembler takes.
    assert!(std::mem::size_of::<JitCtx>() < i32::MAX as usize);
};

/// A translated region.
#[derive(Debug)]
pub struct Compiled {
    pub code: Vec<u8>,
    /// Guest instructions of the region the compiled code can run.
    pub insns: u32,
    /// Bytes of guest code the loop covers from its start.
    pub bytes: u32,
    /// The guest code translated, (EIP, bytes) per piece (the loop and its callees).
    pub ranges: Vec<(u32, u32)>,
}

/// Host register of guest GPR `g` (0 = EAX .. 7 = EDI), 64-bit name.
fn host64(g: usize) -> AsmRegister64 {
    [rax, rbp, rdx, rbx, r12, r13, r14, r15][g & 7]
}

/// Host register of guest GPR `g`, 32-bit name.
fn host32(g: usize) -> AsmRegister32 {
    [eax, ebp, edx, ebx, r12d, r13d, r14d, r15d][g & 7]
}

/// Host register of guest GPR `g`, 16-bit name.
fn host16(g: usize) -> AsmRegister16 {
    [ax, bp, dx, bx, r12w, r13w, r14w, r15w][g & 7]
}

/// Renames a guest operand register to its host register (`None`: not representable).
fn map_reg(r: Register) -> Option<Register> {
    use Register::*;
    Some(match r {
        AL | AH | AX | EAX | DL | DH | DX | EDX | BL | BH | BX | EBX => r,
        CL => BPL,
        CX => BP,
        ECX => EBP,
        SP => R12W,
        ESP => R12D,
        BP => R13W,
        EBP => R13D,
        SI => R14W,
        ESI => R14D,
        DI => R15W,
        EDI => R15D,
        _ => return Option::None,
    })
}

/// Guest GPR index of a 16-bit addressing register.
fn addr_reg(r: Register) -> Option<Option<usize>> {
    Some(match r {
        Register::None => None,
        Register::BX => Some(3),
        Register::BP => Some(5),
        Register::SI => Some(6),
        Register::DI => Some(7),
        _ => return None,
    })
}

/// Guest GPR index (0..7) of any general register.
fn gpr_index(r: Register) -> Option<usize> {
    let f = r.full_register32();
    if (Register::EAX..=Register::EDI).contains(&f) {
        Some(f as usize - Register::EAX as usize)
    } else {
        None
    }
}

/// Segment index (ES, CS, SS, DS, FS, GS order) of a segment register.
fn seg_index(r: Register) -> Option<usize> {
    Some(match r {
        Register::ES => 0,
        Register::CS => 1,
        Register::SS => 2,
        Register::DS => 3,
        Register::FS => 4,
        Register::GS => 5,
        _ => return None,
    })
}

/// An effective-address recipe: 16-bit (`base + index + disp` modulo 64 KiB) or, with the
/// address-size prefix (`wide`), 32-bit (`base + (index << scale) + disp` modulo 2^32, which
/// must then not pass the 64 KiB segment limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Addr {
    base: Option<usize>,
    index: Option<usize>,
    /// Index shift (0..=3); always 0 for 16-bit addressing.
    scale: u8,
    disp: u32,
    wide: bool,
}

impl Addr {
    /// The recipe of `ins`'s memory operand (`None`: not expressible).
    fn of(ins: &Instruction) -> Option<Addr> {
        let (b, x) = (ins.memory_base(), ins.memory_index());
        if b.size() == 4 || x.size() == 4 || ins.memory_displ_size() == 4 {
            let reg32 = |r: Register| match r {
                Register::None => Some(None),
                r if r.size() == 4 => gpr_index(r).map(Some),
                _ => Option::None,
            };
            let scale = match ins.memory_index_scale() {
                1 => 0,
                2 => 1,
                4 => 2,
                8 => 3,
                _ => return None,
            };
            let disp = ins.memory_displacement32();
            return Some(Addr { base: reg32(b)?, index: reg32(x)?, scale, disp, wide: true });
        }
        let disp = ins.memory_displacement32() & 0xFFFF;
        Some(Addr { base: addr_reg(b)?, index: addr_reg(x)?, scale: 0, disp, wide: false })
    }

    /// Guest GPRs (bit per index) the address is computed from.
    fn regs(&self) -> u8 {
        self.base.map_or(0, |b| 1u8 << b) | self.index.map_or(0, |x| 1u8 << x)
    }
}

/// A memory operand as the checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemRef {
    seg: usize,
    addr: Addr,
    size: u32,
}

/// How one guest instruction is emitted.
#[derive(Debug, Clone, Copy)]
enum Emit {
    /// Re-encode the (renamed) instruction.
    Native(Instruction),
    /// Same, after copying guest CL into host CL (shift/rotate by CL).
    NativeCl(Instruction),
    /// LEA: the effective address into a register of `width` bytes.
    Lea { dst: usize, width: u32, addr: Addr },
    /// NOP (emitted as a host NOP).
    Nothing,
    /// PUSH (or the return address of a CALL): the store to SS:SP-size, then SP -= size.
    Push(Src),
    /// POP into guest GPR `dst`: the load from SS:SP, then SP += size.
    Pop(usize),
    /// RET: the return address (loaded from SS:SP) into `ecx`, then SP += size + `imm`.
    Ret { imm: u16 },
}

/// What a push stores.
#[derive(Debug, Clone, Copy)]
enum Src {
    Reg(usize),
    Imm(u32),
}

/// Guest GPR index of SP/ESP.
const SP: usize = 4;

/// One guest instruction, planned.
#[derive(Debug, Clone, Copy)]
struct Planned {
    emit: Emit,
    mem: Option<MemRef>,
    write: bool,
    /// Guest GPRs the instruction writes explicitly (bit per register).
    writes: u8,
    /// Byte offset from the block start.
    off: u32,
}

fn is_high8(r: Register) -> bool {
    matches!(r, Register::AH | Register::BH | Register::DH)
}

fn needs_rex(r: Register) -> bool {
    matches!(r, Register::BPL | Register::SPL | Register::SIL | Register::DIL)
        || (Register::R8L..=Register::R15L).contains(&r)
        || (Register::R8W..=Register::R15W).contains(&r)
        || (Register::R8D..=Register::R15D).contains(&r)
        || (Register::R8..=Register::R15).contains(&r)
}

/// Mnemonics whose memory operand `op0` is only read.
fn op0_read_only(m: Mnemonic) -> bool {
    matches!(m, Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Bt | Mnemonic::Mul | Mnemonic::Imul)
}

fn is_shift(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Shl
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Rol
            | Mnemonic::Ror
            | Mnemonic::Rcl
            | Mnemonic::Rcr
    )
}

fn allowed(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Mov | Add
            | Or
            | Adc
            | Sbb
            | And
            | Sub
            | Xor
            | Cmp
            | Test
            | Inc
            | Dec
            | Neg
            | Not
            | Shl
            | Shr
            | Sar
            | Rol
            | Ror
            | Rcl
            | Rcr
            | Lea
            | Movzx
            | Movsx
            | Xchg
            | Cbw
            | Cwde
            | Cwd
            | Cdq
            | Mul
            | Imul
            | Nop
            | Clc
            | Stc
            | Cmc
            | Bt
            | Bts
            | Btr
            | Btc
            | Seto
            | Setno
            | Setb
            | Setae
            | Sete
            | Setne
            | Setbe
            | Seta
            | Sets
            | Setns
            | Setp
            | Setnp
            | Setl
            | Setge
            | Setle
            | Setg
    )
}

/// Plans one straight-line guest instruction (`None`: not translatable).
fn plan(ins: &Instruction, off: u32) -> Option<Planned> {
    if ins.code() == Code::Jmp_rm16 {
        return plan_indirect(ins, off);
    }
    if let Some(p) = plan_stack(ins, off) {
        return p;
    }
    let m = ins.mnemonic();
    if !allowed(m) || ins.has_lock_prefix() || ins.has_rep_prefix() || ins.has_repne_prefix() {
        return None;
    }
    if ins.code() == Code::Xchg_rm16_r16
        && ins.op0_register() == Register::BX
        && ins.op1_register() == Register::BX
    {
        // 87 DB is Bochs' magic breakpoint when that is on: the interpreter's business.
        return None;
    }
    if m == Mnemonic::Nop {
        return Some(Planned { emit: Emit::Nothing, mem: None, write: false, writes: 0, off });
    }
    // Memory operand (16- or 32-bit addressing).
    let mut mem = None;
    let mut mem_op = None;
    for i in 0..ins.op_count() {
        if ins.op_kind(i) == OpKind::Memory {
            let addr = Addr::of(ins)?;
            let size = ins.memory_size().size() as u32;
            if !matches!(size, 1 | 2 | 4) && m != Mnemonic::Lea {
                return None;
            }
            let seg = seg_index(ins.memory_segment())?;
            mem = Some(MemRef { seg, addr, size });
            mem_op = Some(i);
        }
    }
    let mut writes = 0u8;
    let mut note_write = |r: Register| {
        if let Some(g) = gpr_index(r) {
            writes |= 1 << g;
        }
    };
    if m == Mnemonic::Lea {
        let mr = mem?;
        let dst = ins.op0_register();
        let width = dst.size() as u32;
        let g = gpr_index(dst)?;
        if !matches!(width, 2 | 4) {
            return None;
        }
        note_write(dst);
        let emit = Emit::Lea { dst: g, width, addr: mr.addr };
        return Some(Planned { emit, mem: None, write: false, writes, off });
    }
    if matches!(m, Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc)
        && mem.is_some()
        && ins.op1_kind() == OpKind::Register
    {
        // A register bit offset can reach outside the operand.
        return None;
    }
    // Rebuild the instruction for the host.
    let cl_shift = is_shift(m) && ins.op_count() == 2 && ins.op1_kind() == OpKind::Register;
    if cl_shift && ins.op1_register() != Register::CL {
        return None;
    }
    let host_mem = MemoryOperand::with_base(Register::RSI);
    let mut h = match ins.code() {
        Code::Inc_r16 => Instruction::with1(Code::Inc_rm16, ins.op0_register()).ok()?,
        Code::Inc_r32 => Instruction::with1(Code::Inc_rm32, ins.op0_register()).ok()?,
        Code::Dec_r16 => Instruction::with1(Code::Dec_rm16, ins.op0_register()).ok()?,
        Code::Dec_r32 => Instruction::with1(Code::Dec_rm32, ins.op0_register()).ok()?,
        Code::Mov_AL_moffs8 => Instruction::with2(Code::Mov_r8_rm8, Register::AL, host_mem).ok()?,
        Code::Mov_AX_moffs16 => Instruction::with2(Code::Mov_r16_rm16, Register::AX, host_mem).ok()?,
        Code::Mov_EAX_moffs32 => Instruction::with2(Code::Mov_r32_rm32, Register::EAX, host_mem).ok()?,
        Code::Mov_moffs8_AL => Instruction::with2(Code::Mov_rm8_r8, host_mem, Register::AL).ok()?,
        Code::Mov_moffs16_AX => Instruction::with2(Code::Mov_rm16_r16, host_mem, Register::AX).ok()?,
        Code::Mov_moffs32_EAX => Instruction::with2(Code::Mov_rm32_r32, host_mem, Register::EAX).ok()?,
        _ => *ins,
    };
    // The assembler identifies labels by instruction IP: a copied guest IP could collide.
    h.set_ip(0);
    // Opcode 82h (an alias of 80h) does not exist in 64-bit mode.
    let alias = match h.code() {
        Code::Add_rm8_imm8_82 => Some(Code::Add_rm8_imm8),
        Code::Or_rm8_imm8_82 => Some(Code::Or_rm8_imm8),
        Code::Adc_rm8_imm8_82 => Some(Code::Adc_rm8_imm8),
        Code::Sbb_rm8_imm8_82 => Some(Code::Sbb_rm8_imm8),
        Code::And_rm8_imm8_82 => Some(Code::And_rm8_imm8),
        Code::Sub_rm8_imm8_82 => Some(Code::Sub_rm8_imm8),
        Code::Xor_rm8_imm8_82 => Some(Code::Xor_rm8_imm8),
        Code::Cmp_rm8_imm8_82 => Some(Code::Cmp_rm8_imm8),
        _ => None,
    };
    if let Some(c) = alias {
        h.set_code(c);
    }
    let (mut high, mut rex) = (false, false);
    for i in 0..h.op_count() {
        match h.op_kind(i) {
            OpKind::Register => {
                let r = h.op_register(i);
                if cl_shift && i == 1 {
                    continue;
                }
                let is_write = i == 0 && !matches!(m, Mnemonic::Cmp | Mnemonic::Test | Mnemonic::Bt)
                    || (i == 1 && m == Mnemonic::Xchg);
                if is_write {
                    note_write(r);
                }
                let hr = map_reg(r)?;
                high |= is_high8(hr);
                rex |= needs_rex(hr);
                h.set_op_register(i, hr);
            }
            OpKind::Memory => {
                h.set_memory_base(Register::RSI);
                h.set_memory_index(Register::None);
                h.set_memory_index_scale(1);
                h.set_memory_displacement64(0);
                h.set_memory_displ_size(0);
                h.set_segment_prefix(Register::None);
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8_2nd => {}
            _ => return None,
        }
    }
    if high && rex {
        return None;
    }
    let write = match mem_op {
        Some(0) => !op0_read_only(m),
        Some(_) => false,
        None => false,
    };
    let emit = if cl_shift { Emit::NativeCl(h) } else { Emit::Native(h) };
    Some(Planned { emit, mem, write, writes, off })
}

/// Exit-code bit of a leave or a failed memory check (not a budget stop or a branch out): the
/// tier counts such early exits (see `JitTier::run`).
pub const EXIT_EARLY: u32 = 0x1_0000;

/// Plans `jmp r/m16` as `movzx ecx, r/m16` (the target into `ecx`; see [`Emitter::indirect`]).
fn plan_indirect(ins: &Instruction, off: u32) -> Option<Planned> {
    let (h, mem) = match ins.op0_kind() {
        OpKind::Register => {
            let r = map_reg(ins.op0_register())?;
            (Instruction::with2(Code::Movzx_r32_rm16, Register::ECX, r).ok()?, None)
        }
        OpKind::Memory => {
            let mr = MemRef { seg: seg_index(ins.memory_segment())?, addr: Addr::of(ins)?, size: 2 };
            let src = MemoryOperand::with_base(Register::RSI);
            (Instruction::with2(Code::Movzx_r32_rm16, Register::ECX, src).ok()?, Some(mr))
        }
        _ => return None,
    };
    Some(Planned { emit: Emit::Native(h), mem, write: false, writes: 0, off })
}

/// The stack slot a push writes (`disp` = -size) or a pop reads (`disp` = 0): SS:(SP + disp)
/// modulo 64 KiB (the stack is 16-bit in real mode).
fn stack_ref(disp: i32, size: u32) -> MemRef {
    let addr = Addr { base: Some(SP), index: None, scale: 0, disp: disp as u32 & 0xFFFF, wide: false };
    MemRef { seg: 2, addr, size }
}

/// Plans PUSH/POP of a register or an immediate, and the stack side of near CALL and RET
/// (`None`: not one of those; `Some(None)`: one of those the tier does not translate).
fn plan_stack(ins: &Instruction, off: u32) -> Option<Option<Planned>> {
    let push = |src, w: u32| Planned {
        emit: Emit::Push(src),
        mem: Some(stack_ref(-(w as i32), w)),
        write: true,
        writes: 1 << SP,
        off,
    };
    let reg = || (ins.op0_kind() == OpKind::Register).then(|| ins.op0_register());
    Some(match ins.code() {
        Code::Push_r16 | Code::Push_rm16 | Code::Push_r32 | Code::Push_rm32 => {
            reg().and_then(|r| Some(push(Src::Reg(gpr_index(r)?), r.size() as u32)))
        }
        Code::Push_imm16 | Code::Pushw_imm8 => Some(push(Src::Imm(ins.immediate(0) as u32 & 0xFFFF), 2)),
        Code::Pushd_imm32 | Code::Pushd_imm8 => Some(push(Src::Imm(ins.immediate(0) as u32), 4)),
        Code::Pop_r16 | Code::Pop_rm16 | Code::Pop_r32 | Code::Pop_rm32 => reg().and_then(|r| {
            // POP SP loads SP itself: left to the interpreter.
            let g = gpr_index(r).filter(|&g| g != SP)?;
            let mem = Some(stack_ref(0, r.size() as u32));
            Some(Planned { emit: Emit::Pop(g), mem, write: false, writes: 1 << SP | 1 << g, off })
        }),
        Code::Call_rel16 => Some(push(Src::Imm(ins.next_ip32() & 0xFFFF), 2)),
        Code::Call_rel32_32 => Some(push(Src::Imm(ins.next_ip32()), 4)),
        Code::Retnw | Code::Retnw_imm16 | Code::Retnd | Code::Retnd_imm16 => {
            let w = if matches!(ins.code(), Code::Retnd | Code::Retnd_imm16) { 4 } else { 2 };
            let imm = if ins.op_count() == 1 { ins.immediate16() } else { 0 };
            let mem = Some(stack_ref(0, w));
            Some(Planned { emit: Emit::Ret { imm }, mem, write: false, writes: 1 << SP, off })
        }
        _ => return None,
    })
}

/// Translates the loop region at EIP `start_eip` (`code` starts at EIP `code_eip` and ends at
/// the end of its page, see `region.rs`). `None` when there is no branch back to the start or
/// the first instruction needs the interpreter. `addr` is where the code will live.
pub fn translate(code: &[u8], code_eip: u32, start_eip: u32, addr: u64) -> Option<Compiled> {
    let r = region::discover(code, code_eip, start_eip, plan)?;
    if matches!(r.slots[0], Slot::Leave) {
        return None;
    }
    let insns = r.slots.iter().filter(|s| !matches!(s, Slot::Leave)).count() as u32;
    let code = emit(&r, addr).ok()?;
    Some(Compiled { code, insns, bytes: r.bytes, ranges: r.ranges() })
}

/// For each planned access: whether its check must allow writing (some later access to the
/// same operand in the same run, before its address registers change, writes) and whether it
/// can reuse the previous access's check. Checks are never shared across a run start (a
/// branch may enter there).
fn check_groups(r: &Region<Planned>) -> Vec<(bool, bool)> {
    let mut out = vec![(false, false); r.slots.len()];
    let mut cur: Option<(MemRef, usize)> = None;
    for (i, s) in r.slots.iter().enumerate() {
        let Slot::Plain(p) = s else {
            cur = None;
            continue;
        };
        if r.run_start[i] {
            cur = None;
        }
        if let Some(mr) = p.mem {
            match cur {
                Some((c, leader)) if c == mr => {
                    out[i].1 = true;
                    if p.write {
                        out[leader].0 = true;
                    }
                }
                _ => {
                    out[i].0 = p.write;
                    cur = Some((mr, i));
                }
            }
        }
        if let Some((c, _)) = cur {
            if p.writes & c.addr.regs() != 0 {
                cur = None;
            }
        }
    }
    out
}

/// `esi`/`edi` ← the effective address of `ad` (zero-extended to 64 bits).
fn emit_ea(a: &mut CodeAssembler, dst: AsmRegister32, ad: &Addr) -> Result<(), IcedError> {
    // A 16-bit displacement is positive here: the 16-bit result is taken modulo 64 KiB below.
    let d = ad.disp as i32;
    let scale = 1u32 << ad.scale;
    match (ad.base, ad.index) {
        (None, None) => return a.mov(dst, ad.disp),
        (Some(b), None) => a.lea(dst, ptr(host64(b) + d))?,
        (None, Some(x)) => a.lea(dst, ptr(host64(x) * scale + d))?,
        (Some(b), Some(x)) => a.lea(dst, ptr(host64(b) + host64(x) * scale + d))?,
    }
    if ad.wide {
        return Ok(());
    }
    let dst16 = if dst == esi { si } else { di };
    a.movzx(dst, dst16)
}

/// A way out of compiled code: EIP offset, instructions to refund, and [`EXIT_EARLY`] or 0.
struct Stub {
    label: CodeLabel,
    off: u32,
    refund: u32,
    early: u32,
}

/// A store's look at the code lines of the page(s) it touches (out of line): back to `ok`
/// when it touches none, else to `exit`.
struct LineCheck {
    label: CodeLabel,
    ok: CodeLabel,
    exit: CodeLabel,
    size: i32,
}

/// The assembler of one region and its pending out-of-line code.
struct Emitter {
    a: CodeAssembler,
    stubs: Vec<Stub>,
    line_checks: Vec<LineCheck>,
    common: CodeLabel,
    /// The function's first instruction and the dispatch table (after the code).
    entry: CodeLabel,
    table: CodeLabel,
}

// `mem_check` divides the summed "write must exit" values by 8 with a rotate.
const _: () = assert!(super::exec::W_CODE == 8);

/// Emits the whole function for region `r`. A region with indirect jumps or returns is
/// assembled twice: its dispatch table (offset from the region's lowest instruction → host
/// offset of the run starting there) holds label addresses known after the first pass;
/// nothing else moves.
fn emit(r: &Region<Planned>, addr: u64) -> Result<Vec<u8>, IcedError> {
    if !r.slots.iter().any(|s| matches!(s, Slot::Indirect(_) | Slot::Ret(_))) {
        return Ok(emit_pass(r, addr, None)?.0);
    }
    let mut table = vec![0u32; r.span.next_power_of_two() as usize];
    let (_, starts) = emit_pass(r, addr, Some(&table))?;
    for (i, ip) in starts {
        table[(r.offs[i].wrapping_sub(r.lo) & 0xFFFF) as usize] = (ip - addr) as u32;
    }
    Ok(emit_pass(r, addr, Some(&table))?.0)
}

/// Machine code and the host address of every run start (slot index, address).
type Assembled = (Vec<u8>, Vec<(usize, u64)>);

/// One assembly of region `r` with dispatch table `table` (when it has indirect jumps or
/// returns): the code and the host address of every run start (slot index, address).
fn emit_pass(r: &Region<Planned>, addr: u64, table: Option<&[u32]>) -> Result<Assembled, IcedError> {
    let mut e = Emitter::new()?;
    e.a.set_label(&mut e.entry)?;
    e.prologue()?;
    let n = r.slots.len();
    // A label per slot, before its run's budget charge where a run starts there (branches
    // enter there only; a switch may also enter mid-run, see below).
    let mut labels: Vec<CodeLabel> = r.slots.iter().map(|_| e.a.create_label()).collect();
    let groups = check_groups(r);
    let dispatch = Dispatch { start: r.start, lo: r.lo, size: r.span.next_power_of_two() };
    for (k, &(first, end_off)) in r.pieces.iter().enumerate() {
        let last = r.pieces.get(k + 1).map_or(n, |p| p.0);
        // The fall-through exit at the piece end.
        let mut end = e.a.create_label();
        for i in first..last {
            let slot = &r.slots[i];
            e.a.set_label(&mut labels[i])?;
            let off = r.offs[i];
            let charge = (r.run_end[i] - i) as u32;
            if r.run_start[i] && charge > 0 {
                e.charge(charge, off)?;
            }
            let fall = if i + 1 < last { labels[i + 1] } else { end };
            match slot {
                Slot::Plain(p) => e.plain(p, groups[i], charge)?,
                Slot::Leave => e.leave(off)?,
                Slot::Indirect(p) => e.indirect(p, charge, dispatch)?,
                Slot::Ret(p) => {
                    e.plain(p, (false, false), charge)?;
                    e.dispatch(dispatch)?;
                }
                Slot::Call(p, target) => {
                    let to = r.inner[i].map_or_else(|| e.stub(*target, 0, 0), |t| labels[t]);
                    e.plain(p, (true, false), charge)?;
                    e.a.jmp(to)?;
                }
                // The slot after a branch starts a run, so its label is set.
                Slot::Branch(b) => {
                    let to = r.inner[i].map_or_else(|| e.stub(b.target, 0, 0), |t| labels[t]);
                    e.branch(b.kind, to, fall)?;
                }
            }
        }
        if !r.slots[last - 1].transfers() {
            // Into the piece that starts there (a function's entry code running into the
            // loop), else out.
            e.a.set_label(&mut end)?;
            let to = match r.offs.binary_search(&end_off) {
                Ok(t) if r.run_start[t] => labels[t],
                _ => e.stub(end_off, 0, 0),
            };
            e.a.jmp(to)?;
        }
    }
    let mut starts: Vec<(usize, CodeLabel)> =
        (0..n).filter(|&i| r.run_start[i]).map(|i| (i, labels[i])).collect();
    if r.slots.iter().any(|s| matches!(s, Slot::Indirect(_))) {
        starts.extend(e.mid_run_entries(r, &groups, &labels)?);
    }
    e.finish(addr, table, &starts)
}

/// Where the dispatch table of a region maps guest EIPs: `start` (the region start EIP), `lo`
/// (offset of its lowest instruction from the start) and `size` (entries, a power of two).
#[derive(Debug, Clone, Copy)]
struct Dispatch {
    start: u32,
    lo: u32,
    size: u32,
}

impl Emitter {
    /// Out-of-line entries into the middle of runs, for a switch whose case is entered both
    /// by falling into it and through the jump table (compilers share such code): each
    /// charges the rest of its run and jumps to its slot. Not for a slot that reuses the
    /// previous instruction's memory check. Returns (slot index, entry label).
    fn mid_run_entries(
        &mut self,
        r: &Region<Planned>,
        groups: &[(bool, bool)],
        labels: &[CodeLabel],
    ) -> Result<Vec<(usize, CodeLabel)>, IcedError> {
        let mut out = Vec::new();
        for i in 0..r.slots.len() {
            if r.run_start[i] || groups[i].1 {
                continue;
            }
            let mut entry = self.a.create_label();
            self.a.set_label(&mut entry)?;
            let charge = (r.run_end[i] - i) as u32;
            if charge > 0 {
                self.charge(charge, r.offs[i])?;
            }
            self.a.jmp(labels[i])?;
            out.push((i, entry));
        }
        Ok(out)
    }

    fn new() -> Result<Emitter, IcedError> {
        let mut a = CodeAssembler::new(64)?;
        let (common, entry, table) = (a.create_label(), a.create_label(), a.create_label());
        Ok(Emitter { a, stubs: Vec::new(), line_checks: Vec::new(), common, entry, table })
    }

    /// A new exit stub (emitted by [`Emitter::finish`]).
    fn stub(&mut self, off: u32, refund: u32, early: u32) -> CodeLabel {
        let label = self.a.create_label();
        self.stubs.push(Stub { label, off, refund, early });
        label
    }

    /// Saves callee-saved registers, builds the frame, loads the guest state.
    fn prologue(&mut self) -> Result<(), IcedError> {
        let a = &mut self.a;
        let o_seg = offset_of!(JitCtx, seg_base) as i32;
        let o_regs = offset_of!(JitCtx, regs) as i32;
        for r in [rbx, rbp, r12, r13, r14, r15] {
            a.push(r)?;
        }
        a.sub(rsp, FRAME)?;
        a.mov(qword_ptr(rsp + F_CTX), rdi)?;
        for q in 0..(F_CTX / 8) {
            a.mov(rax, qword_ptr(rdi + (o_seg + 8 * q)))?;
            a.mov(qword_ptr(rsp + 8 * q), rax)?;
        }
        a.mov(r8, qword_ptr(rdi + offset_of!(JitCtx, ram) as i32))?;
        a.mov(r9, qword_ptr(rdi + offset_of!(JitCtx, pages) as i32))?;
        a.mov(r10, qword_ptr(rdi + offset_of!(JitCtx, budget) as i32))?;
        a.mov(r11d, 44u32)?;
        a.push(qword_ptr(rdi + offset_of!(JitCtx, flags) as i32))?;
        a.popfq()?;
        for g in 0..8 {
            a.mov(host32(g), dword_ptr(rdi + (o_regs + 4 * g as i32)))?;
        }
        Ok(())
    }

    /// Charges a run of `k` instructions against the budget, flag-neutrally (a budget exit
    /// shows the guest flags). Budgets are below 2^44, so "went negative" is "bits 44.. set".
    fn charge(&mut self, k: u32, off: u32) -> Result<(), IcedError> {
        let stop = self.stub(off, k, 0);
        let a = &mut self.a;
        a.lea(r10, ptr(r10 - k as i32))?;
        a.mov(rcx, r10)?;
        a.shrx(rcx, rcx, r11)?;
        let mut ok = a.create_label();
        a.jrcxz(ok)?;
        a.jmp(stop)?;
        a.set_label(&mut ok)
    }

    /// A translatable instruction: its memory check (unless shared), then the instruction.
    /// `left`: instructions of its run from it on (refunded when the check fails).
    fn plain(&mut self, p: &Planned, (for_write, reuse): (bool, bool), left: u32) -> Result<(), IcedError> {
        let mut exit = None;
        if let (Some(mr), false) = (p.mem, reuse) {
            let stub = self.stub(p.off, left, EXIT_EARLY);
            self.mem_check(&mr, for_write, stub)?;
            exit = Some(stub);
        }
        let size = p.mem.map_or(0, |m| m.size);
        let a = &mut self.a;
        match p.emit {
            Emit::Native(h) => a.add_instruction(h),
            Emit::NativeCl(h) => {
                a.mov(ecx, ebp)?;
                a.add_instruction(h)
            }
            Emit::Lea { dst, width, addr } => {
                emit_ea(a, edi, &addr)?;
                if width == 4 {
                    a.mov(host32(dst), edi)
                } else {
                    a.mov(host16(dst), di)
                }
            }
            // A host NOP still: a label may sit here, and the next instruction may carry its own.
            Emit::Nothing => a.nop(),
            Emit::Push(src) => {
                match (src, size) {
                    (Src::Reg(g), 4) => a.mov(dword_ptr(rsi), host32(g))?,
                    (Src::Reg(g), _) => a.mov(word_ptr(rsi), host16(g))?,
                    (Src::Imm(v), 4) => a.mov(dword_ptr(rsi), v)?,
                    (Src::Imm(v), _) => a.mov(word_ptr(rsi), v)?,
                }
                sp_add(a, ecx, -(size as i32))
            }
            Emit::Pop(g) => {
                if size == 4 {
                    a.mov(host32(g), dword_ptr(rsi))?;
                } else {
                    a.mov(host16(g), word_ptr(rsi))?;
                }
                sp_add(a, ecx, size as i32)
            }
            Emit::Ret { imm } => {
                if let (4, Some(exit)) = (size, exit) {
                    // EIP past FFFFh: the interpreter raises #GP.
                    let mut ok = a.create_label();
                    a.movzx(ecx, word_ptr(rsi + 2))?;
                    a.jrcxz(ok)?;
                    a.jmp(exit)?;
                    a.set_label(&mut ok)?;
                }
                a.movzx(ecx, word_ptr(rsi))?;
                sp_add(a, edi, size as i32 + i32::from(imm))
            }
        }
    }

    /// `rsi` ← the host address of `mr`, or a jump to `exit` when the access needs the
    /// interpreter (offset past FFFFh, a page that is not plain RAM or, for a write, a line of
    /// decoded code).
    fn mem_check(&mut self, mr: &MemRef, for_write: bool, exit: CodeLabel) -> Result<(), IcedError> {
        let mut ok = self.a.create_label();
        let lines = self.a.create_label();
        let a = &mut self.a;
        emit_ea(a, esi, &mr.addr)?;
        let tab = if for_write { F_WR } else { F_RD };
        let s = mr.size as i32;
        if mr.addr.wide {
            // A 32-bit offset must end by 0xFFFF (the limit the tier runs with); past it the
            // interpreter raises #GP/#SS.
            a.lea(rcx, ptr(rsi + (s - 1)))?;
            a.mov(edi, 16u32)?;
            a.shrx(rcx, rcx, rdi)?;
            let mut ok = a.create_label();
            a.jrcxz(ok)?;
            a.jmp(exit)?;
            a.set_label(&mut ok)?;
        }
        if s > 1 {
            a.lea(edi, ptr(rsi + (s - 1)))?;
            a.shrx(edi, edi, r11d)?;
            a.movzx(edi, byte_ptr(rsp + rdi + F_WRAP))?;
        }
        a.mov(ecx, dword_ptr(rsp + (F_SEG + 4 * mr.seg as i32)))?;
        a.lea(esi, ptr(rsi + rcx))?;
        a.mov(ecx, esi)?;
        a.shrx(ecx, ecx, r11d)?;
        a.movzx(ecx, byte_ptr(r9 + rcx))?;
        a.movzx(ecx, byte_ptr(rsp + rcx + tab))?;
        if s > 1 {
            a.lea(edi, ptr(rdi + rcx))?;
            a.lea(ecx, ptr(rsi + (s - 1)))?;
            a.shrx(ecx, ecx, r11d)?;
            a.movzx(ecx, byte_ptr(r9 + rcx))?;
            a.movzx(ecx, byte_ptr(rsp + rcx + tab))?;
            a.lea(ecx, ptr(rcx + rdi))?;
        }
        a.jrcxz(ok)?;
        if for_write {
            // Only pages whose sole flag is PG_CODE (each adding W_CODE) and no other reason to
            // exit (1 each, no carry into W_CODE): the sum is 8 or 16, and ecx/8 - 1 is 0 or 1
            // — the rotate moves any low bit to the top. Then look at the code lines.
            a.rorx(ecx, ecx, 3)?;
            a.lea(ecx, ptr(rcx - 1))?;
            a.shrx(ecx, ecx, r11d)?;
            a.jrcxz(lines)?;
            self.line_checks.push(LineCheck { label: lines, ok, exit, size: s });
        }
        let a = &mut self.a;
        a.jmp(exit)?;
        a.set_label(&mut ok)?;
        a.lea(rsi, ptr(rsi + r8))
    }

    /// Out of line: the code lines of the first and last byte a store touches (`rsi`: its
    /// linear address).
    fn line_check(&mut self, mut lc: LineCheck) -> Result<(), IcedError> {
        self.a.set_label(&mut lc.label)?;
        if lc.size > 1 {
            let mut last = self.a.create_label();
            self.line_test(0, lc.exit, last)?;
            self.a.set_label(&mut last)?;
            self.line_test(lc.size - 1, lc.exit, lc.ok)
        } else {
            self.line_test(0, lc.exit, lc.ok)
        }
    }

    /// Jumps to `clear` when the byte at `rsi + disp` is on no code line of its page, else to
    /// `exit` (flag-neutral: the line mask is shifted and tested with `jrcxz`).
    fn line_test(&mut self, disp: i32, exit: CodeLabel, clear: CodeLabel) -> Result<(), IcedError> {
        let a = &mut self.a;
        a.mov(rcx, qword_ptr(rsp + F_CTX))?;
        a.mov(rcx, qword_ptr(rcx + offset_of!(JitCtx, lines) as i32))?;
        a.lea(edi, ptr(rsi + disp))?;
        a.shrx(edi, edi, r11d)?;
        a.mov(rcx, qword_ptr(rcx + rdi * 8))?;
        // Line index = bits 6..11 of the address: rotated into the low bits, which are all
        // a 64-bit shift count uses.
        a.lea(edi, ptr(rsi + disp))?;
        a.rorx(edi, edi, 6)?;
        a.shrx(rcx, rcx, rdi)?;
        a.mov(edi, 63u32)?;
        a.shlx(rcx, rcx, rdi)?;
        a.jrcxz(clear)?;
        a.jmp(exit)
    }

    /// A branch to `to`; not taken, it goes on at `fall`.
    fn branch(&mut self, kind: BranchKind, to: CodeLabel, fall: CodeLabel) -> Result<(), IcedError> {
        let a = &mut self.a;
        match kind {
            BranchKind::Jmp => a.jmp(to),
            BranchKind::Jcc(cc) => jcc(a, cc, to),
            BranchKind::Loop { wide, cond } => {
                // CX (ECX) -= 1 without touching flags; not taken when it reaches 0.
                a.lea(ecx, ptr(rbp - 1))?;
                if wide {
                    a.mov(ebp, ecx)?;
                } else {
                    a.mov(bp, cx)?;
                    a.movzx(ecx, cx)?;
                }
                a.jrcxz(fall)?;
                match cond {
                    Some(true) => a.je(to),
                    Some(false) => a.jne(to),
                    None => a.jmp(to),
                }
            }
        }
    }

    /// `jmp r/m16`: the target (its memory operand checked like a read; the check failing
    /// refunds `left`) into `ecx`, then [`Emitter::dispatch`].
    fn indirect(&mut self, p: &Planned, left: u32, d: Dispatch) -> Result<(), IcedError> {
        if let Some(mr) = p.mem {
            let exit = self.stub(p.off, left, EXIT_EARLY);
            self.mem_check(&mr, false, exit)?;
        }
        if let Emit::Native(h) = p.emit {
            self.a.add_instruction(h)?;
        }
        self.dispatch(d)
    }

    /// Goes on at the guest EIP in `ecx`: its offset from the region's lowest instruction
    /// indexes the dispatch table; a run start there is jumped to, flag-neutrally; anything
    /// else leaves with EIP at the target.
    fn dispatch(&mut self, d: Dispatch) -> Result<(), IcedError> {
        let (common, entry, table) = (self.common, self.entry, self.table);
        let a = &mut self.a;
        let (mut in_range, mut miss) = (a.create_label(), a.create_label());
        a.lea(edi, ptr(rcx - d.start as i32))?;
        a.movzx(edi, di)?;
        a.lea(esi, ptr(rdi - d.lo as i32))?;
        a.movzx(esi, si)?;
        a.mov(ecx, d.size.trailing_zeros())?;
        a.shrx(ecx, esi, ecx)?;
        a.jrcxz(in_range)?;
        a.jmp(miss)?;
        a.set_label(&mut in_range)?;
        a.lea(rcx, ptr(table))?;
        a.mov(ecx, dword_ptr(rcx + rsi * 4))?;
        a.jrcxz(miss)?;
        a.lea(rsi, ptr(entry))?;
        a.lea(rcx, ptr(rsi + rcx))?;
        a.jmp(rcx)?;
        a.set_label(&mut miss)?;
        a.mov(ecx, edi)?;
        a.mov(edi, 0u32)?;
        a.jmp(common)
    }

    /// Leaves with EIP on an instruction only the interpreter runs.
    fn leave(&mut self, off: u32) -> Result<(), IcedError> {
        let common = self.common;
        self.a.mov(ecx, off | EXIT_EARLY)?;
        self.a.mov(edi, 0u32)?;
        self.a.jmp(common)
    }

    /// The exit stubs and the common exit (refund, store the guest state, restore the host
    /// registers), then the machine code for `addr`.
    fn finish(
        mut self,
        addr: u64,
        table: Option<&[u32]>,
        starts: &[(usize, CodeLabel)],
    ) -> Result<Assembled, IcedError> {
        for lc in std::mem::take(&mut self.line_checks) {
            self.line_check(lc)?;
        }
        let a = &mut self.a;
        for mut s in std::mem::take(&mut self.stubs) {
            a.set_label(&mut s.label)?;
            a.mov(ecx, s.off | s.early)?;
            a.mov(edi, s.refund)?;
            a.jmp(self.common)?;
        }
        let o_regs = offset_of!(JitCtx, regs) as i32;
        a.set_label(&mut self.common)?;
        a.lea(r10, ptr(r10 + rdi))?;
        a.mov(rsi, qword_ptr(rsp + F_CTX))?;
        for g in 0..8 {
            a.mov(dword_ptr(rsi + (o_regs + 4 * g as i32)), host32(g))?;
        }
        a.pushfq()?;
        a.pop(qword_ptr(rsi + offset_of!(JitCtx, flags) as i32))?;
        a.mov(qword_ptr(rsi + offset_of!(JitCtx, exit) as i32), rcx)?;
        a.mov(qword_ptr(rsi + offset_of!(JitCtx, budget) as i32), r10)?;
        a.add(rsp, FRAME)?;
        for r in [r15, r14, r13, r12, rbp, rbx] {
            a.pop(r)?;
        }
        a.ret()?;
        if let Some(t) = table {
            a.set_label(&mut self.table)?;
            a.dd(t)?;
        }
        let r = a.assemble_options(addr, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let ips = starts.iter().map(|(i, l)| r.label_ip(l).map(|ip| (*i, ip))).collect::<Result<_, _>>()?;
        Ok((r.inner.code_buffer, ips))
    }
}

/// SP += `delta` (modulo 64 KiB; the upper half of ESP kept), flag-neutrally, through `tmp`.
fn sp_add(a: &mut CodeAssembler, tmp: AsmRegister32, delta: i32) -> Result<(), IcedError> {
    a.lea(tmp, ptr(host64(SP) + delta))?;
    let t16 = if tmp == ecx { cx } else { di };
    a.mov(host16(SP), t16)
}

/// `jcc head` for a guest condition.
fn jcc(a: &mut CodeAssembler, cc: ConditionCode, head: CodeLabel) -> Result<(), IcedError> {
    match cc {
        ConditionCode::o => a.jo(head),
        ConditionCode::no => a.jno(head),
        ConditionCode::b => a.jb(head),
        ConditionCode::ae => a.jae(head),
        ConditionCode::e => a.je(head),
        ConditionCode::ne => a.jne(head),
        ConditionCode::be => a.jbe(head),
        ConditionCode::a => a.ja(head),
        ConditionCode::s => a.js(head),
        ConditionCode::ns => a.jns(head),
        ConditionCode::p => a.jp(head),
        ConditionCode::np => a.jnp(head),
        ConditionCode::l => a.jl(head),
        ConditionCode::ge => a.jge(head),
        ConditionCode::le => a.jle(head),
        ConditionCode::g => a.jg(head),
        ConditionCode::None => a.jmp(head),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Emits a back-branch to a label.
    type Back16 = fn(&mut CodeAssembler, CodeLabel) -> Result<(), IcedError>;

    /// Assembles a 16-bit self-loop at 0x100 from `body` + `back`.
    fn block(body: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>, back: Back16) -> Vec<u8> {
        let mut a = CodeAssembler::new(16).expect("asm");
        let mut top = a.create_label();
        a.set_label(&mut top).expect("label");
        body(&mut a).expect("body");
        back(&mut a, top).expect("back");
        a.assemble(0x100).expect("assemble")
    }

    #[test]
    fn translates_each_back_branch_kind() {
        let backs: [Back16; 6] = [
            |a, l| a.loop_(l),
            |a, l| a.loope(l),
            |a, l| a.loopne(l),
            |a, l| a.jmp(l),
            |a, l| a.jnz(l),
            // LOOP with an address-size prefix counts with ECX.
            |a, l| {
                a.db(&[0x67])?;
                a.loop_(l)
            },
        ];
        for back in backs {
            let b = block(
                |a| {
                    a.add(ax, 3u32)?;
                    a.cmp(ax, 0x30u32)?;
                    a.lea(bx, word_ptr(bx + si + 5))?;
                    a.imul_3(dx, bx, 7)
                },
                back,
            );
            assert!(translate(&b, 0x100, 0x100, 0x1000).is_some(), "{b:02x?}");
            // Guest IPs must not matter (the assembler keys labels by IP).
            for eip in [0u32, 1, 2, 3, 7, 0xFFF0] {
                assert!(translate(&b, eip, eip, 0x1000).is_some(), "eip {eip:#x}");
            }
        }
    }

    #[test]
    fn translates_32bit_addressing() {
        // The inner loop of a gcc -m16 matrix product: scaled index, 32-bit displacement.
        let a32 = block(
            |a| {
                a.mov(edx, dword_ptr(edi + eax * 4 + 0x3540))?;
                a.imul_2(edx, dword_ptr(ebx + eax * 4 + 0x1CC0))?;
                a.add(eax, 1)?;
                a.lea(esi, ptr(esp + ecx * 8 - 4))?;
                a.mov(byte_ptr(0x1234u32), al)?;
                a.add(ecx, edx)?;
                a.cmp(eax, 0x1C)
            },
            |a, l| a.jne(l),
        );
        assert!(translate(&a32, 0x100, 0x100, 0x1000).is_some());
    }

    #[test]
    fn declines_what_it_cannot_express() {
        let uses_ch = block(|a| a.add(ch, al), |a, l| a.jnz(l));
        assert!(translate(&uses_ch, 0x100, 0x100, 0).is_none());
        let high_rex = block(|a| a.mov(ah, cl), |a, l| a.jnz(l));
        assert!(translate(&high_rex, 0x100, 0x100, 0).is_none());
        let div = block(|a| a.div(bx), |a, l| a.jnz(l));
        assert!(translate(&div, 0x100, 0x100, 0).is_none());
        let not_a_loop = block(|a| a.add(ax, bx), |a, _| a.jnz(0x200u64));
        assert!(translate(&not_a_loop, 0x100, 0x100, 0).is_none());
        // 82 /0 (add al, 5 through the 80h alias) is re-encoded as 80 /0.
        let alias = block(|a| a.db(&[0x82, 0xC0, 0x05]), |a, l| a.jnz(l));
        assert!(translate(&alias, 0x100, 0x100, 0).is_some());
        let ok = block(|a| a.add(ax, bx), |a, l| a.jnz(l));
        assert!(translate(&ok, 0x100, 0x100, 0).is_some());
        // Bochs' magic breakpoint (xchg bx, bx) is left to the interpreter.
        let magic = block(|a| a.db(&[0x87, 0xDB]), |a, l| a.jnz(l));
        assert!(translate(&magic, 0x100, 0x100, 0).is_none());
    }

    #[test]
    fn translates_a_region_with_inner_branches_and_leaves() {
        let mut a = CodeAssembler::new(16).expect("asm");
        let mut head = a.create_label();
        let mut skip = a.create_label();
        a.set_label(&mut head).expect("label");
        a.add(ax, word_ptr(bx + 2)).expect("add");
        a.jz(skip).expect("jz");
        a.call(0x800u64).expect("call out of the page: pushes, then leaves at 0x800");
        a.movsb().expect("a string instruction: a leave");
        a.set_label(&mut skip).expect("label");
        a.mov(word_ptr(bx + si), dx).expect("mov");
        a.js(0x900u64).expect("js out");
        a.loop_(head).expect("loop");
        let code = a.assemble(0x100).expect("assemble");
        let c = translate(&code, 0x100, 0x100, 0x1000).expect("a region");
        assert_eq!((c.insns, c.bytes), (6, code.len() as u32));
        assert_eq!(c.ranges, vec![(0x100, code.len() as u32)]);
    }

    #[test]
    fn translates_a_loop_with_its_callee_and_stack_instructions() {
        // A helper before the loop (as gcc lays out static functions), called with a pushed
        // argument: push/pop, call, ret with an immediate.
        let mut a = CodeAssembler::new(16).expect("asm");
        let (mut helper, mut head) = (a.create_label(), a.create_label());
        a.set_label(&mut helper).expect("label");
        a.push(ebx).expect("push");
        a.mov(ebx, dword_ptr(esp + 8)).expect("arg");
        a.add(eax, ebx).expect("add");
        a.pop(ebx).expect("pop");
        a.ret_1(2).expect("ret 2");
        a.set_label(&mut head).expect("label");
        a.push(0x1234).expect("push imm");
        a.call(helper).expect("call");
        a.dec(cx).expect("dec");
        a.jnz(head).expect("back edge");
        let r = a.assemble_options(0x100, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).expect("asm");
        let start = r.label_ip(&head).expect("head") as u32;
        let code = r.inner.code_buffer;
        let c = translate(&code, 0x100, start, 0x1000).expect("a region");
        assert_eq!(c.insns, 4 + 5);
        let end = 0x100 + code.len() as u32;
        assert_eq!(c.ranges, vec![(start, end - start), (0x100, start - 0x100)]);
    }
}
