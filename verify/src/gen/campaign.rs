//! The random program generator.
//!
//! Plain units draw one instruction from a pool of every legacy-encoded integer instruction
//! form that exists in 16-bit mode on an 8086–486 (iced-x86's code table filtered by CPUID
//! feature, flow control and operand kinds), with random registers, memory operands (16-bit
//! addressing mostly, 32-bit sometimes), segment overrides, immediates and LOCK. Structured
//! units add what needs set-up: bounded loops, forward branches, calls/returns, software
//! interrupts, string instructions with REP, port I/O, segment loads, ENTER/LEAVE, deliberate
//! faults, and (rarely) instructions KVM's emulator on our hosts cannot run.
//!
//! Constraints keep programs terminating and comparable: SP and segment registers are only
//! changed by set-up units, nothing writes through CS, loop counters are protected in loop
//! bodies, and a static analysis of *possibly undefined* flags (the same
//! [`flag_effect`] rules the comparison uses, conservative for unknown shift counts) inserts a
//! `cmp r8, imm8` (which defines all six status flags) before any instruction that would read
//! an undefined flag — including instructions that may fault, since an exception pushes FLAGS.
use std::sync::OnceLock;

use super::{ADDR16_FORMS, R16, R32, R8, SEGS};
use iced_x86::{
    Code, CodeSize, CpuidFeature, Decoder, DecoderOptions, Encoder, EncodingKind, FlowControl, Instruction,
    InstructionInfoFactory, Mnemonic, OpAccess, OpCodeOperandKind as K, OpKind, Register, RepPrefixKind,
};
use picoqemu_core::flags;

use crate::flagmask::{flag_effect, pushes_flags, STATUS};
use crate::program::{InitState, Insn, Program, Unit};
use crate::rng::SplitMix64;

/// Mnemonics never drawn for a plain unit (handled by structured units, or not comparable).
const EXCLUDED: &[Mnemonic] = &[
    Mnemonic::Hlt,
    Mnemonic::In,
    Mnemonic::Out,
    Mnemonic::Insb,
    Mnemonic::Insw,
    Mnemonic::Insd,
    Mnemonic::Outsb,
    Mnemonic::Outsw,
    Mnemonic::Outsd,
    Mnemonic::Movsb,
    Mnemonic::Movsw,
    Mnemonic::Movsd,
    Mnemonic::Cmpsb,
    Mnemonic::Cmpsw,
    Mnemonic::Cmpsd,
    Mnemonic::Stosb,
    Mnemonic::Stosw,
    Mnemonic::Stosd,
    Mnemonic::Lodsb,
    Mnemonic::Lodsw,
    Mnemonic::Lodsd,
    Mnemonic::Scasb,
    Mnemonic::Scasw,
    Mnemonic::Scasd,
    Mnemonic::Popf,
    Mnemonic::Popfd,
    Mnemonic::Enter,
    Mnemonic::Leave,
    Mnemonic::Cpuid,
    Mnemonic::Rdtsc,
    Mnemonic::Rdmsr,
    Mnemonic::Wrmsr,
    Mnemonic::Lgdt,
    Mnemonic::Lidt,
    Mnemonic::Sgdt,
    Mnemonic::Sidt,
    Mnemonic::Lldt,
    Mnemonic::Sldt,
    Mnemonic::Ltr,
    Mnemonic::Str,
    Mnemonic::Lmsw,
    Mnemonic::Smsw,
    Mnemonic::Clts,
    Mnemonic::Invd,
    Mnemonic::Wbinvd,
    Mnemonic::Invlpg,
    Mnemonic::Lar,
    Mnemonic::Lsl,
    Mnemonic::Verr,
    Mnemonic::Verw,
    Mnemonic::Arpl,
    Mnemonic::Wait,
    Mnemonic::Bound,
    Mnemonic::Daa,
    Mnemonic::Das,
    Mnemonic::Aaa,
    Mnemonic::Aas,
    Mnemonic::Lds,
    Mnemonic::Les,
    Mnemonic::Lfs,
    Mnemonic::Lgs,
    Mnemonic::Lss,
    Mnemonic::Ud0,
    Mnemonic::Ud1,
    Mnemonic::Ud2,
    Mnemonic::Cmpxchg8b,
];

/// Mnemonics drawn more often (the everyday integer core).
const COMMON: &[Mnemonic] = &[
    Mnemonic::Add,
    Mnemonic::Adc,
    Mnemonic::Sub,
    Mnemonic::Sbb,
    Mnemonic::And,
    Mnemonic::Or,
    Mnemonic::Xor,
    Mnemonic::Cmp,
    Mnemonic::Test,
    Mnemonic::Mov,
    Mnemonic::Inc,
    Mnemonic::Dec,
    Mnemonic::Neg,
    Mnemonic::Not,
    Mnemonic::Shl,
    Mnemonic::Shr,
    Mnemonic::Sar,
    Mnemonic::Rol,
    Mnemonic::Ror,
    Mnemonic::Rcl,
    Mnemonic::Rcr,
    Mnemonic::Mul,
    Mnemonic::Imul,
    Mnemonic::Div,
    Mnemonic::Idiv,
    Mnemonic::Push,
    Mnemonic::Pop,
    Mnemonic::Xchg,
    Mnemonic::Lea,
    Mnemonic::Movzx,
    Mnemonic::Movsx,
];

const ALLOWED_FEATURES: &[CpuidFeature] = &[
    CpuidFeature::INTEL8086,
    CpuidFeature::INTEL186,
    CpuidFeature::INTEL286,
    CpuidFeature::INTEL386,
    CpuidFeature::INTEL486,
];

fn supported_kind(k: K) -> bool {
    matches!(
        k,
        K::r8_or_mem
            | K::r16_or_mem
            | K::r32_or_mem
            | K::r8_reg
            | K::r8_opcode
            | K::r16_reg
            | K::r16_reg_mem
            | K::r16_rm
            | K::r16_opcode
            | K::r32_reg
            | K::r32_reg_mem
            | K::r32_rm
            | K::r32_opcode
            | K::mem
            | K::mem_offs
            | K::seg_reg
            | K::es
            | K::cs
            | K::ss
            | K::ds
            | K::fs
            | K::gs
            | K::al
            | K::cl
            | K::ax
            | K::dx
            | K::eax
            | K::imm8
            | K::imm8_const_1
            | K::imm8sex16
            | K::imm8sex32
            | K::imm16
            | K::imm32
            | K::seg_rBX_al
    )
}

/// The pool of codes for plain units, with weights.
pub struct Pool {
    pub codes: Vec<Code>,
    pub weights: Vec<u32>,
}

/// The pool (built once).
pub fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut codes = Vec::new();
        let mut weights = Vec::new();
        for code in Code::values() {
            let oc = code.op_code();
            if !oc.is_instruction() || !oc.mode16() || oc.encoding() != EncodingKind::Legacy {
                continue;
            }
            if !code.cpuid_features().iter().all(|f| ALLOWED_FEATURES.contains(f)) {
                continue;
            }
            if code.flow_control() != FlowControl::Next || EXCLUDED.contains(&code.mnemonic()) {
                continue;
            }
            if !oc.op_kinds().iter().all(|&k| supported_kind(k)) {
                continue;
            }
            codes.push(code);
            weights.push(if COMMON.contains(&code.mnemonic()) { 6 } else { 2 });
        }
        Pool { codes, weights }
    })
}

/// I/O ports the programs use (0xF4, the debug-exit port, is deliberately absent).
const PORTS: [u16; 12] = [0xE9, 0x80, 0x3F8, 0x3F9, 0x3FB, 0x3FC, 0x3FD, 0x3FF, 0x3D4, 0x3D5, 0x61, 0x1234];

/// Registers a unit must not write.
#[derive(Debug, Clone, Copy, Default)]
struct Protect {
    cx: bool,
    bp: bool,
    /// No implicit stack changes (PUSH/POP) — inside a called subroutine.
    stack: bool,
}

fn is_write(a: OpAccess) -> bool {
    matches!(a, OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite)
}

/// True when `instr` may raise an exception (which pushes FLAGS): divides, AAM, UD, LOCK on a
/// non-lockable form, BT with a register bit offset into memory, memory accesses wider than a
/// byte (a word at offset FFFF faults) and any 32-bit address.
pub fn may_fault(instr: &Instruction) -> bool {
    let m = instr.mnemonic();
    if matches!(
        m,
        Mnemonic::Div
            | Mnemonic::Idiv
            | Mnemonic::Aam
            | Mnemonic::Bound
            | Mnemonic::Ud0
            | Mnemonic::Ud1
            | Mnemonic::Ud2
    ) {
        return true;
    }
    if instr.has_lock_prefix()
        && !(instr.op_code().can_use_lock_prefix() && instr.op0_kind() == OpKind::Memory)
    {
        return true;
    }
    for i in 0..instr.op_count() {
        match instr.op_kind(i) {
            OpKind::Memory => {
                let wide = instr.memory_size().size() >= 2;
                let addr32 = instr.memory_base().size() == 4
                    || instr.memory_index().size() == 4
                    || instr.memory_displ_size() == 4;
                let bt_reg = matches!(m, Mnemonic::Bt | Mnemonic::Bts | Mnemonic::Btr | Mnemonic::Btc)
                    && instr.op1_kind() == OpKind::Register;
                if wide || addr32 || bt_reg {
                    return true;
                }
            }
            OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI
                if instr.memory_size().size() >= 2 =>
            {
                return true;
            }
            OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => return true,
            _ => {}
        }
    }
    false
}

fn bare(code: Code) -> Instruction {
    let mut i = Instruction::default();
    i.set_code(code);
    i.set_code_size(CodeSize::Code16);
    i
}

fn ok(r: Result<Instruction, iced_x86::IcedError>) -> Instruction {
    // Only used with operand combinations iced accepts by construction.
    r.unwrap_or_else(|_| bare(Code::Nopw))
}

/// Builds the body, tracking possibly-undefined flags.
struct Builder<'r> {
    rng: &'r mut SplitMix64,
    undef: u32,
    factory: InstructionInfoFactory,
}

impl<'r> Builder<'r> {
    fn r8(&mut self, p: Protect) -> Register {
        loop {
            let r = *self.rng.pick(&R8);
            if !(p.cx && (r == Register::CL || r == Register::CH)) {
                return r;
            }
        }
    }

    fn r16_writable(&mut self, p: Protect) -> Register {
        loop {
            let r = *self.rng.pick(&R16);
            if r != Register::SP && !(p.cx && r == Register::CX) && !(p.bp && r == Register::BP) {
                return r;
            }
        }
    }

    fn safe_segment(&mut self) -> u16 {
        match self.rng.below(8) {
            0 => 0xB800,
            1 => 0xFFFF,
            2 => 0x1000,
            _ => self.rng.range(0x1000, 0xF000) as u16,
        }
    }

    /// `cmp r8, imm8`: defines all six status flags, changes nothing else.
    fn definer(&mut self) -> Insn {
        let r = *self.rng.pick(&R8);
        let imm = self.rng.next_u8() as u32;
        Insn::plain(ok(Instruction::with2(Code::Cmp_rm8_imm8, r, imm)))
    }

    /// Appends `insn` to `out`, first inserting a definer if it would read an undefined flag.
    fn emit(&mut self, out: &mut Vec<Insn>, insn: Insn) {
        let i = &insn.instr;
        let e = flag_effect(i, None);
        let mut reads = e.read;
        if may_fault(i) || pushes_flags(i.mnemonic()) {
            reads |= STATUS;
        }
        if reads & self.undef != 0 {
            out.push(self.definer());
            self.undef = 0;
        }
        self.undef = (self.undef & !e.defined) | e.undefined;
        out.push(insn);
    }

    fn memory(&mut self, instr: &mut Instruction, op: u32, writes_possible: bool) {
        instr.set_op_kind(op, OpKind::Memory);
        if self.rng.chance(1, 12) {
            // 32-bit addressing.
            let base = if self.rng.chance(4, 5) { *self.rng.pick(&R32) } else { Register::None };
            let index = if self.rng.chance(1, 2) {
                loop {
                    let r = *self.rng.pick(&R32);
                    if r != Register::ESP {
                        break r;
                    }
                }
            } else {
                Register::None
            };
            instr.set_memory_base(base);
            instr.set_memory_index(index);
            instr.set_memory_index_scale(*self.rng.pick(&[1, 2, 4, 8]));
            let (disp, size) = match self.rng.below(3) {
                0 if base != Register::None || index != Register::None => (0u64, 0),
                1 => ((self.rng.next_u8() as i8) as i32 as u32 as u64, 1),
                _ => (self.rng.interesting_u32() as u64, 4),
            };
            instr.set_memory_displacement64(disp);
            instr.set_memory_displ_size(size);
        } else {
            let (base, index) = *self.rng.pick(&ADDR16_FORMS);
            instr.set_memory_base(base);
            instr.set_memory_index(index);
            instr.set_memory_index_scale(1);
            let (disp, size) = if base == Register::None {
                (self.rng.next_u16() as u64, 2)
            } else {
                match self.rng.below(3) {
                    0 => (0, 0),
                    1 => ((self.rng.next_u8() as i8 as i16 as u16) as u64, 1),
                    _ => (self.rng.next_u16() as u64, 2),
                }
            };
            instr.set_memory_displacement64(disp);
            instr.set_memory_displ_size(size);
        }
        let seg = if self.rng.chance(1, 4) {
            let s = *self.rng.pick(&SEGS);
            if s == Register::CS && writes_possible {
                Register::DS
            } else {
                s
            }
        } else {
            Register::None
        };
        instr.set_segment_prefix(seg);
    }

    fn random_from_pool(&mut self) -> Option<Instruction> {
        let pool = pool();
        let code = pool.codes[self.rng.weighted(&pool.weights)];
        let oc = code.op_code();
        let mut instr = bare(code);
        for (op, &k) in oc.op_kinds().iter().enumerate() {
            let op = op as u32;
            let reg = |i: &mut Instruction, r: Register| {
                i.set_op_kind(op, OpKind::Register);
                i.set_op_register(op, r);
            };
            match k {
                K::r8_or_mem | K::r16_or_mem | K::r32_or_mem if self.rng.chance(1, 2) => {
                    self.memory(&mut instr, op, true)
                }
                K::r8_or_mem | K::r8_reg | K::r8_opcode => {
                    let r = *self.rng.pick(&R8);
                    reg(&mut instr, r)
                }
                K::r16_or_mem | K::r16_reg | K::r16_reg_mem | K::r16_rm | K::r16_opcode => {
                    let r = *self.rng.pick(&R16);
                    reg(&mut instr, r)
                }
                K::r32_or_mem | K::r32_reg | K::r32_reg_mem | K::r32_rm | K::r32_opcode => {
                    let r = *self.rng.pick(&R32);
                    reg(&mut instr, r)
                }
                K::mem => self.memory(&mut instr, op, true),
                K::mem_offs => {
                    instr.set_op_kind(op, OpKind::Memory);
                    instr.set_memory_base(Register::None);
                    instr.set_memory_index(Register::None);
                    instr.set_memory_displacement64(self.rng.next_u16() as u64);
                    instr.set_memory_displ_size(2);
                    if self.rng.chance(1, 4) {
                        let s = *self.rng.pick(&[Register::ES, Register::SS, Register::FS, Register::GS]);
                        instr.set_segment_prefix(s);
                    }
                }
                K::seg_reg => {
                    let r = *self.rng.pick(&SEGS);
                    reg(&mut instr, r)
                }
                K::es => reg(&mut instr, Register::ES),
                K::cs => reg(&mut instr, Register::CS),
                K::ss => reg(&mut instr, Register::SS),
                K::ds => reg(&mut instr, Register::DS),
                K::fs => reg(&mut instr, Register::FS),
                K::gs => reg(&mut instr, Register::GS),
                K::al => reg(&mut instr, Register::AL),
                K::cl => reg(&mut instr, Register::CL),
                K::ax => reg(&mut instr, Register::AX),
                K::dx => reg(&mut instr, Register::DX),
                K::eax => reg(&mut instr, Register::EAX),
                K::imm8 => {
                    let v = match code.mnemonic() {
                        // Shift/rotate counts: mostly small, sometimes anything.
                        m if crate::flagmask::is_shift_or_rotate(m) && self.rng.chance(3, 4) => {
                            self.rng.range(0, 33) as u8
                        }
                        _ => self.rng.next_u8(),
                    };
                    instr.set_op_kind(op, OpKind::Immediate8);
                    instr.set_immediate8(v);
                }
                K::imm8_const_1 => {
                    instr.set_op_kind(op, OpKind::Immediate8);
                    instr.set_immediate8(1);
                }
                K::imm8sex16 => {
                    instr.set_op_kind(op, OpKind::Immediate8to16);
                    instr.set_immediate8to16(self.rng.next_u8() as i8 as i16);
                }
                K::imm8sex32 => {
                    instr.set_op_kind(op, OpKind::Immediate8to32);
                    instr.set_immediate8to32(self.rng.next_u8() as i8 as i32);
                }
                K::imm16 => {
                    instr.set_op_kind(op, OpKind::Immediate16);
                    instr.set_immediate16(self.rng.interesting_u32() as u16);
                }
                K::imm32 => {
                    instr.set_op_kind(op, OpKind::Immediate32);
                    instr.set_immediate32(self.rng.interesting_u32());
                }
                K::seg_rBX_al => {
                    instr.set_op_kind(op, OpKind::Memory);
                    instr.set_memory_base(Register::BX);
                    instr.set_memory_index(Register::AL);
                    instr.set_memory_index_scale(1);
                    instr.set_memory_displ_size(0);
                    if self.rng.chance(1, 4) {
                        let s = *self.rng.pick(&SEGS);
                        instr.set_segment_prefix(s);
                    }
                }
                _ => return None,
            }
        }
        if oc.can_use_lock_prefix() && instr.op0_kind() == OpKind::Memory && self.rng.chance(1, 4) {
            instr.set_has_lock_prefix(true);
        }
        canonical(&instr)
    }

    /// Checks the constraints of the module doc for `instr` under `p`.
    fn allowed(&mut self, instr: &Instruction, p: Protect) -> bool {
        let m = instr.mnemonic();
        if matches!(m, Mnemonic::Shld | Mnemonic::Shrd)
            && instr.op0_register().size() != 4
            && instr.memory_size().size() != 4
        {
            // 16-bit double shifts: a count above 16 leaves the result undefined.
            let imm = instr.op_kind(2) == OpKind::Immediate8;
            if !imm || (instr.immediate8() & 0x1F) > 16 {
                return false;
            }
        }
        let stack_op = matches!(
            m,
            Mnemonic::Push
                | Mnemonic::Pop
                | Mnemonic::Pusha
                | Mnemonic::Pushad
                | Mnemonic::Popa
                | Mnemonic::Popad
                | Mnemonic::Pushf
                | Mnemonic::Pushfd
        );
        if stack_op && p.stack {
            return false;
        }
        let info = self.factory.info(instr);
        for i in 0..instr.op_count() {
            if instr.op_kind(i) == OpKind::Register
                && instr.op_register(i).full_register32() == Register::ESP
                && is_write(info.op_access(i))
            {
                return false;
            }
        }
        for u in info.used_registers() {
            if !is_write(u.access()) {
                continue;
            }
            let r = u.register();
            if r.is_segment_register() {
                return false;
            }
            let full = r.full_register32();
            if (full == Register::ESP && !stack_op)
                || (p.cx && full == Register::ECX)
                || (p.bp && full == Register::EBP)
            {
                return false;
            }
        }
        for mem in info.used_memory() {
            if is_write(mem.access()) && mem.segment() == Register::CS {
                return false;
            }
        }
        true
    }

    fn generic(&mut self, p: Protect) -> Insn {
        for _ in 0..200 {
            if let Some(i) = self.random_from_pool() {
                if self.allowed(&i, p) {
                    return Insn::plain(i);
                }
            }
        }
        Insn::plain(bare(Code::Nopw))
    }

    fn emit_generic(&mut self, out: &mut Vec<Insn>, p: Protect) {
        let i = self.generic(p);
        self.emit(out, i);
    }

    fn unit(&mut self) -> Unit {
        const KINDS: [(&str, u32); 13] = [
            ("insn", 600),
            ("popf", 25),
            ("skip", 60),
            ("loop", 40),
            ("call", 40),
            ("int", 25),
            ("string", 70),
            ("io", 30),
            ("seg", 25),
            ("enter", 15),
            ("fault", 15),
            ("mov-ss", 8),
            ("kvm-gap", 1),
        ];
        let weights: Vec<u32> = KINDS.iter().map(|k| k.1).collect();
        let kind = KINDS[self.rng.weighted(&weights)].0;
        let mut out = Vec::new();
        let none = Protect::default();
        match kind {
            "popf" => self.popf_unit(&mut out),
            "skip" => self.skip_unit(&mut out),
            "loop" => self.loop_unit(&mut out),
            "call" => self.call_unit(&mut out),
            "int" => {
                let i = match self.rng.below(4) {
                    0 => bare(Code::Int3),
                    1 => bare(Code::Into),
                    // Vectors 0x80-0xFF hang KVM's emulator on our hosts (known-differences.md).
                    _ => ok(Instruction::with1(Code::Int_imm8, self.rng.below(0x80) as u32)),
                };
                self.emit(&mut out, Insn::plain(i));
            }
            "string" => self.string_unit(&mut out),
            "io" => self.io_unit(&mut out),
            "seg" => self.seg_unit(&mut out),
            "enter" => {
                let size = self.rng.below(33) as u32 & !1;
                self.emit(&mut out, Insn::plain(ok(Instruction::with2(Code::Enterw_imm16_imm8, size, 0u32))));
                let p = Protect { bp: true, ..none };
                for _ in 0..self.rng.range(1, 2) {
                    self.emit_generic(&mut out, p);
                }
                self.emit(&mut out, Insn::plain(bare(Code::Leavew)));
            }
            "fault" => self.fault_unit(&mut out),
            "mov-ss" => {
                let r = self.r16_writable(none);
                let seg = self.safe_segment();
                self.emit(&mut out, Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, r, seg as u32))));
                self.emit(
                    &mut out,
                    Insn::plain(ok(Instruction::with2(Code::Mov_Sreg_rm16, Register::SS, r))),
                );
                let sp = (self.rng.range(0x1000, 0xF000) as u32) & !1;
                self.emit(
                    &mut out,
                    Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, Register::SP, sp))),
                );
            }
            "kvm-gap" => {
                let i = match self.rng.below(6) {
                    0 => bare(Code::Daa),
                    1 => bare(Code::Das),
                    2 => bare(Code::Aaa),
                    3 => bare(Code::Aas),
                    4 => ok(Instruction::with2(Code::Enterw_imm16_imm8, 4u32, 1u32)),
                    _ => {
                        let mut b =
                            ok(Instruction::with2(Code::Bound_r16_m1616, Register::AX, Register::None));
                        self.memory(&mut b, 1, false);
                        canonical(&b).unwrap_or_else(|| bare(Code::Daa))
                    }
                };
                self.emit(&mut out, Insn::plain(i));
                if i.mnemonic() == Mnemonic::Enter {
                    self.emit(&mut out, Insn::plain(bare(Code::Leavew)));
                }
            }
            _ => self.emit_generic(&mut out, none),
        }
        Unit { kind, insns: out }
    }

    fn popf_unit(&mut self, out: &mut Vec<Insn>) {
        let mut v = self.rng.next_u32() & !flags::TF | flags::FIXED;
        if self.rng.chance(1, 2) {
            v &= 0xFFFF & !(flags::IOPL | flags::NT | 0x8000);
            self.emit(out, Insn::plain(ok(Instruction::with1(Code::Push_imm16, v & 0xFFFF))));
            self.emit(out, Insn::plain(bare(Code::Popfw)));
        } else {
            v &= 0xFFFF | flags::AC | flags::ID;
            if self.rng.chance(3, 4) {
                v &= !(flags::IOPL | flags::NT | 0x8000);
            }
            self.emit(out, Insn::plain(ok(Instruction::with1(Code::Pushd_imm32, v))));
            self.emit(out, Insn::plain(bare(Code::Popfd)));
        }
    }

    fn skip_unit(&mut self, out: &mut Vec<Insn>) {
        const JCC: [Code; 18] = [
            Code::Jo_rel8_16,
            Code::Jno_rel8_16,
            Code::Jb_rel8_16,
            Code::Jae_rel8_16,
            Code::Je_rel8_16,
            Code::Jne_rel8_16,
            Code::Jbe_rel8_16,
            Code::Ja_rel8_16,
            Code::Js_rel8_16,
            Code::Jns_rel8_16,
            Code::Jp_rel8_16,
            Code::Jnp_rel8_16,
            Code::Jl_rel8_16,
            Code::Jge_rel8_16,
            Code::Jle_rel8_16,
            Code::Jg_rel8_16,
            Code::Jcxz_rel8_16,
            Code::Jmp_rel8_16,
        ];
        const NEAR: [Code; 18] = [
            Code::Jo_rel16,
            Code::Jno_rel16,
            Code::Jb_rel16,
            Code::Jae_rel16,
            Code::Je_rel16,
            Code::Jne_rel16,
            Code::Jbe_rel16,
            Code::Ja_rel16,
            Code::Js_rel16,
            Code::Jns_rel16,
            Code::Jp_rel16,
            Code::Jnp_rel16,
            Code::Jl_rel16,
            Code::Jge_rel16,
            Code::Jle_rel16,
            Code::Jg_rel16,
            Code::Jcxz_rel8_16,
            Code::Jmp_rel16,
        ];
        let k = self.rng.below(JCC.len() as u64) as usize;
        // A quarter use the 386 near forms (0F 8x cw / E9 cw).
        let code = if self.rng.chance(1, 4) { NEAR[k] } else { JCC[k] };
        let n = self.rng.range(1, 3) as usize;
        let mut body = Vec::new();
        let before = self.undef;
        let jump = ok(Instruction::with_branch(code, 0));
        // Analyse the jump first (it reads flags before the body runs).
        let mut head = Vec::new();
        self.emit(&mut head, Insn::plain(jump));
        let at_branch = self.undef;
        for _ in 0..n {
            self.emit_generic(&mut body, Protect::default());
        }
        let _ = before;
        self.undef |= at_branch;
        let target = head.len() + body.len();
        out.extend(head.into_iter().map(|i| {
            if i.instr.code() == code {
                Insn::branch(i.instr, target)
            } else {
                i
            }
        }));
        out.extend(body);
    }

    fn loop_unit(&mut self, out: &mut Vec<Insn>) {
        let wide = self.rng.chance(1, 5);
        let count = self.rng.range(1, 5) as u32;
        let set = if wide {
            ok(Instruction::with2(Code::Mov_r32_imm32, Register::ECX, count))
        } else {
            ok(Instruction::with2(Code::Mov_r16_imm16, Register::CX, count))
        };
        self.emit(out, Insn::plain(set));
        if self.undef != 0 {
            let d = self.definer();
            out.push(d);
            self.undef = 0;
        }
        let top = out.len();
        let p = Protect { cx: true, ..Protect::default() };
        for _ in 0..self.rng.range(1, 3) {
            self.emit_generic(out, p);
        }
        if self.undef != 0 {
            let d = self.definer();
            out.push(d);
            self.undef = 0;
        }
        let code = match (self.rng.below(3), wide) {
            (0, false) => Code::Loope_rel8_16_CX,
            (1, false) => Code::Loopne_rel8_16_CX,
            (_, false) => Code::Loop_rel8_16_CX,
            (0, true) => Code::Loope_rel8_16_ECX,
            (1, true) => Code::Loopne_rel8_16_ECX,
            (_, true) => Code::Loop_rel8_16_ECX,
        };
        out.push(Insn::branch(ok(Instruction::with_branch(code, 0)), top));
    }

    fn call_unit(&mut self, out: &mut Vec<Insn>) {
        // prologue; call L; jmp E; L: body; return; E:
        let variant = self.rng.below(4);
        match variant {
            1 => {
                let v = self.rng.next_u16() as u32;
                self.emit(out, Insn::plain(ok(Instruction::with1(Code::Push_imm16, v))))
            }
            2 => self.emit(out, Insn::plain(ok(Instruction::with1(Code::Pushw_CS, Register::CS)))),
            3 => {
                self.emit(out, Insn::plain(bare(Code::Pushfw)));
                self.emit(out, Insn::plain(ok(Instruction::with1(Code::Pushw_CS, Register::CS))));
            }
            _ => {}
        }
        let call_at = out.len();
        out.push(Insn::plain(ok(Instruction::with_branch(Code::Call_rel16, 0))));
        let jmp_at = out.len();
        out.push(Insn::plain(ok(Instruction::with_branch(Code::Jmp_rel8_16, 0))));
        let sub = out.len();
        let p = Protect { stack: true, ..Protect::default() };
        for _ in 0..self.rng.range(1, 2) {
            self.emit_generic(out, p);
        }
        let ret = match variant {
            1 => ok(Instruction::with1(Code::Retnw_imm16, 2u32)),
            2 => bare(Code::Retfw),
            3 => bare(Code::Iretw),
            _ => bare(Code::Retnw),
        };
        self.emit(out, Insn::plain(ret));
        let end = out.len();
        out[call_at].target = Some(sub);
        out[jmp_at].target = Some(end);
    }

    fn string_unit(&mut self, out: &mut Vec<Insn>) {
        let rep = match self.rng.below(6) {
            0..=2 => RepPrefixKind::None,
            3 | 4 => RepPrefixKind::Repe,
            _ => RepPrefixKind::Repne,
        };
        let addr32 = rep == RepPrefixKind::None && self.rng.chance(1, 10);
        let asz = if addr32 { 32 } else { 16 };
        if rep != RepPrefixKind::None {
            let n = match self.rng.below(10) {
                0 => self.rng.range(1000, 3000),
                1 => 0,
                2..=4 => self.rng.range(17, 300),
                _ => self.rng.range(1, 16),
            } as u32;
            self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, Register::CX, n))));
        }
        let seg = if self.rng.chance(1, 4) { *self.rng.pick(&SEGS) } else { Register::None };
        let size = self.rng.below(3);
        let i = match (self.rng.below(5), size) {
            (0, 0) => Instruction::with_movsb(asz, seg, rep),
            (0, 1) => Instruction::with_movsw(asz, seg, rep),
            (0, _) => Instruction::with_movsd(asz, seg, rep),
            (1, 0) => Instruction::with_cmpsb(asz, seg, rep),
            (1, 1) => Instruction::with_cmpsw(asz, seg, rep),
            (1, _) => Instruction::with_cmpsd(asz, seg, rep),
            (2, 0) => Instruction::with_stosb(asz, rep),
            (2, 1) => Instruction::with_stosw(asz, rep),
            (2, _) => Instruction::with_stosd(asz, rep),
            (3, 0) => Instruction::with_lodsb(asz, seg, rep),
            (3, 1) => Instruction::with_lodsw(asz, seg, rep),
            (3, _) => Instruction::with_lodsd(asz, seg, rep),
            (_, 0) => Instruction::with_scasb(asz, rep),
            (_, 1) => Instruction::with_scasw(asz, rep),
            (_, _) => Instruction::with_scasd(asz, rep),
        };
        let i = ok(i);
        self.emit(out, Insn::plain(i));
    }

    fn io_unit(&mut self, out: &mut Vec<Insn>) {
        let port = *self.rng.pick(&PORTS);
        let none = Protect::default();
        let set_dx = |b: &mut Self, out: &mut Vec<Insn>| {
            b.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, Register::DX, port as u32))));
        };
        match self.rng.below(6) {
            0 if port < 0x100 => {
                let i = ok(Instruction::with2(Code::Out_imm8_AL, port as u32, Register::AL));
                self.emit(out, Insn::plain(i));
            }
            1 if port < 0x100 => {
                let i = ok(Instruction::with2(Code::In_AL_imm8, Register::AL, port as u32));
                self.emit(out, Insn::plain(i));
            }
            2 => {
                set_dx(self, out);
                let (code, r) = *self.rng.pick(&[
                    (Code::Out_DX_AL, Register::AL),
                    (Code::Out_DX_AX, Register::AX),
                    (Code::Out_DX_EAX, Register::EAX),
                ]);
                self.emit(out, Insn::plain(ok(Instruction::with2(code, Register::DX, r))));
            }
            3 => {
                set_dx(self, out);
                self.string_io_pointer(out, Register::SI);
                let n = self.rng.range(0, 12) as u32;
                self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, Register::CX, n))));
                let seg = if self.rng.chance(1, 4) { *self.rng.pick(&SEGS) } else { Register::None };
                let i = if self.rng.chance(1, 2) {
                    Instruction::with_outsb(16, seg, RepPrefixKind::Repe)
                } else {
                    Instruction::with_outsw(16, seg, RepPrefixKind::Repe)
                };
                self.emit(out, Insn::plain(ok(i)));
            }
            4 => {
                set_dx(self, out);
                self.string_io_pointer(out, Register::DI);
                let n = self.rng.range(0, 12) as u32;
                self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, Register::CX, n))));
                let i = if self.rng.chance(1, 2) {
                    Instruction::with_insb(16, RepPrefixKind::Repe)
                } else {
                    Instruction::with_insw(16, RepPrefixKind::Repe)
                };
                self.emit(out, Insn::plain(ok(i)));
            }
            _ => {
                set_dx(self, out);
                let (code, r) = *self.rng.pick(&[
                    (Code::In_AL_DX, Register::AL),
                    (Code::In_AX_DX, Register::AX),
                    (Code::In_EAX_DX, Register::EAX),
                ]);
                self.emit(out, Insn::plain(ok(Instruction::with2(code, r, Register::DX))));
                let _ = none;
            }
        }
    }

    /// `mov si|di, imm` with a pointer whose REP INS/OUTS range cannot wrap past FFFF: KVM's
    /// emulator checks the whole range of a REP INS/OUTS up front and raises #GP where a CPU
    /// wraps the offset (known-differences.md, "REP INS/OUTS across offset FFFF").
    fn string_io_pointer(&mut self, out: &mut Vec<Insn>, r: Register) {
        let v = self.rng.range(0, 0xF000) as u32;
        self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, r, v))));
    }

    fn seg_unit(&mut self, out: &mut Vec<Insn>) {
        let none = Protect::default();
        let seg = self.safe_segment();
        let target = *self.rng.pick(&[Register::ES, Register::DS, Register::FS, Register::GS]);
        if self.rng.chance(1, 2) {
            let r = self.r16_writable(none);
            self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_r16_imm16, r, seg as u32))));
            self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_Sreg_rm16, target, r))));
            return;
        }
        // Far pointer in memory at DS:d, then LxS.
        let d = self.rng.next_u16() & 0xFFF0;
        let lss = self.rng.chance(1, 5);
        let off = if lss { (self.rng.range(0x1000, 0xF000) as u32) & !1 } else { self.rng.next_u16() as u32 };
        let m = |disp: u16| iced_x86::MemoryOperand::with_base_displ_size(Register::None, disp as i64, 2);
        self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_rm16_imm16, m(d), off))));
        self.emit(
            out,
            Insn::plain(ok(Instruction::with2(Code::Mov_rm16_imm16, m(d.wrapping_add(2)), seg as u32))),
        );
        let (code, r) = if lss {
            (Code::Lss_r16_m1616, Register::SP)
        } else {
            let r = self.r16_writable(none);
            let code = match target {
                Register::ES => Code::Les_r16_m1616,
                Register::DS => Code::Lds_r16_m1616,
                Register::FS => Code::Lfs_r16_m1616,
                _ => Code::Lgs_r16_m1616,
            };
            (code, r)
        };
        self.emit(out, Insn::plain(ok(Instruction::with2(code, r, m(d)))));
    }

    fn fault_unit(&mut self, out: &mut Vec<Insn>) {
        let i = match self.rng.below(5) {
            0 => bare(Code::Ud2),
            1 => ok(Instruction::with1(Code::Aam_imm8, 0u32)),
            2 => {
                let mut i = ok(Instruction::with2(Code::Add_rm16_r16, Register::AX, Register::BX));
                i.set_has_lock_prefix(true);
                i
            }
            3 => {
                let m = iced_x86::MemoryOperand::with_base_displ_size(Register::None, 0xFFFF, 2);
                let r = self.r16_writable(Protect::default());
                ok(Instruction::with2(Code::Mov_r16_rm16, r, m))
            }
            _ => {
                let r = self.r8(Protect::default());
                self.emit(out, Insn::plain(ok(Instruction::with2(Code::Mov_r8_imm8, r, 0u32))));
                ok(Instruction::with1(Code::Div_rm8, r))
            }
        };
        self.emit(out, Insn::plain(i));
    }
}

/// Encodes and decodes `instr` back: the canonical form (or `None` when iced cannot encode it).
fn canonical(instr: &Instruction) -> Option<Instruction> {
    let mut e = Encoder::new(16);
    let len = e.encode(instr, 0).ok()?;
    let bytes = e.take_buffer();
    let mut d = Decoder::new(16, &bytes, DecoderOptions::NONE);
    let out = d.decode();
    if out.is_invalid() || out.len() != len || out.code() != instr.code() {
        return None;
    }
    Some(out)
}

/// Generates the program with seed `seed` (the same bytes on every machine).
pub fn generate(seed: u64) -> Program {
    let mut rng = SplitMix64::new(seed);
    let mut gpr = [0u32; 8];
    for g in gpr.iter_mut() {
        *g = rng.interesting_u32();
    }
    gpr[4] = crate::program::SP0 as u32;
    let mut eflags = (rng.next_u32() & (flags::STATUS | flags::DF | flags::IF)) | flags::FIXED;
    if rng.chance(1, 8) {
        eflags |= rng.next_u32() & (flags::AC | flags::ID);
    }
    let data_seed = if rng.chance(9, 10) { Some(rng.next_u64()) } else { None };
    let init = InitState { gpr, eflags, data_seed };
    let n = rng.range(8, 40) as usize;
    let mut b = Builder { rng: &mut rng, undef: 0, factory: InstructionInfoFactory::new() };
    let units = (0..n).map(|_| b.unit()).collect();
    Program { seed, init, units }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_covers_the_integer_set_and_nothing_else() {
        let p = pool();
        let ms: Vec<Mnemonic> = p.codes.iter().map(|c| c.mnemonic()).collect();
        for m in [
            Mnemonic::Add,
            Mnemonic::Bsf,
            Mnemonic::Shld,
            Mnemonic::Xadd,
            Mnemonic::Bswap,
            Mnemonic::Setne,
            Mnemonic::Xlatb,
            Mnemonic::Salc,
            Mnemonic::Imul,
        ] {
            assert!(ms.contains(&m), "{m:?} missing");
        }
        for m in
            [Mnemonic::Fld, Mnemonic::Cmove, Mnemonic::Hlt, Mnemonic::Cpuid, Mnemonic::Popf, Mnemonic::Jmp]
        {
            assert!(!ms.contains(&m), "{m:?} present");
        }
    }

    /// Programs 0..200 of seed 2024 (CI's campaign) are byte-for-byte those of the generator
    /// before it moved into this crate (FNV-1a of every image and start state, computed with
    /// the old `picoqemu::fuzz::gen`). A change here invalidates the campaign's explained
    /// divergences: change the fingerprint only together with a re-check of CI's campaign.
    #[test]
    fn the_fuzz_profile_is_pinned() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for k in 0..200u64 {
            let p = generate(crate::rng::program_seed(2024, k));
            let img = p.assemble().unwrap().image;
            for b in img.iter().chain(format!("{:?}", p.init).as_bytes()) {
                h ^= *b as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
        assert_eq!(h, 0x134e_d51d_6efc_be64);
    }

    #[test]
    fn generation_is_deterministic() {
        for seed in 0..20 {
            let a = generate(seed);
            let b = generate(seed);
            assert_eq!(a, b);
            let ia = a.assemble().unwrap().image;
            let ib = b.assemble().unwrap().image;
            assert_eq!(ia, ib);
        }
        assert_ne!(generate(1).assemble().unwrap().image, generate(2).assemble().unwrap().image);
    }

    #[test]
    fn programs_assemble_and_never_read_undefined_flags_statically() {
        for seed in 0..300 {
            let p = generate(seed);
            let asm = p.assemble().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(asm.body_end < crate::program::BODY_LIMIT);
            assert!(p.insn_count() >= 8);
        }
    }
}
