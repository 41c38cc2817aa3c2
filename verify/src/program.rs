//! A random test program: its start state and its body as a list of self-contained *units*,
//! and how it is laid out as a raw image (the `--raw` layout: loaded at physical 0, started at
//! 0000:0000, all segments 0).
//!
//! Memory map of the image (all code in segment 0):
//!
//! | address        | content |
//! |----------------|---------|
//! | 0000–0003      | `jmp SETUP` (the setup code then writes IVT entry 0) |
//! | 0000–03FF      | IVT: fault vectors (0,5,6,7,8,12,13,16) → fault handler, all others → trap handler |
//! | 0500           | fault handler: looks up the faulting IP in the resume table, returns past it |
//! | 0580           | trap handler (`INT n`, `INTO`, `INT3`): counts and `iret`s |
//! | 0600           | setup: `IVT[0]`, SS:SP, DS/ES/FS/GS, EFLAGS and the general registers |
//! | after setup    | the body units, then `hlt` (the body ends below 4000) |
//! | 7FF0/7FF2      | fault / trap counters |
//! | 8000 + 2·ip    | resume table: for each body instruction at `ip`, the IP of the next one |
//! | 10000–1FFFF    | random data (DS = 1000, FS = 1400, ES = 1800) |
//! | 20000–2FFFF    | the stack segment (SS = 2000, SP = 8000), zero |
//! | B8000          | GS: the VGA text buffer |
//!
//! Every unit encodes on its own: branches only target instructions of the same unit (or its
//! end), so any subset of units is again a valid program — which is what the minimiser needs.
use iced_x86::code_asm::*;
use iced_x86::{BlockEncoder, Decoder, DecoderOptions, Encoder, Instruction};
use thiserror::Error;

use crate::disasm;
use crate::rng::fill_bytes;

pub const FAULT_HANDLER: u16 = 0x0500;
pub const TRAP_HANDLER: u16 = 0x0580;
pub const SETUP: u16 = 0x0600;
pub const BODY_LIMIT: u16 = 0x4000;
pub const FAULT_COUNT: u16 = 0x7FF0;
pub const TRAP_COUNT: u16 = 0x7FF2;
pub const RESUME_TABLE: u16 = 0x8000;
pub const DATA_SEG: u16 = 0x1000;
pub const FS_SEG: u16 = 0x1400;
pub const ES_SEG: u16 = 0x1800;
pub const SS_SEG: u16 = 0x2000;
pub const GS_SEG: u16 = 0xB800;
pub const SP0: u16 = 0x8000;
/// Bytes of the raw image (code segment + data segment).
pub const IMAGE_LEN: usize = 0x2_0000;
/// Guest RAM used for fuzzing (the minimum: 1 MiB + 64 KiB).
pub const FUZZ_MEM: usize = picoqemu_core::MIN_MEM_SIZE;
/// Vectors whose exceptions are faults (the pushed IP is the faulting instruction).
pub const FAULT_VECTORS: [u8; 8] = [0, 5, 6, 7, 8, 12, 13, 16];

/// Why a program cannot be laid out.
#[derive(Debug, Error)]
pub enum ProgramError {
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("the body is {0} bytes, more than the {max} bytes available", max = BODY_LIMIT as usize - 0x700)]
    TooLarge(usize),
    #[error("a branch in unit {0} is out of range")]
    BranchRange(usize),
}

impl From<iced_x86::IcedError> for ProgramError {
    fn from(e: iced_x86::IcedError) -> Self {
        ProgramError::Encode(e.to_string())
    }
}

/// One instruction of a unit. `target` (for branches) is the index of the instruction in the
/// same unit it jumps to; the unit's length means "just past the unit".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insn {
    pub instr: Instruction,
    pub target: Option<usize>,
}

impl Insn {
    pub fn plain(instr: Instruction) -> Self {
        Insn { instr, target: None }
    }
    pub fn branch(instr: Instruction, target: usize) -> Self {
        Insn { instr, target: Some(target) }
    }
}

/// A self-contained group of instructions (one random instruction, a loop, a call, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub kind: &'static str,
    pub insns: Vec<Insn>,
}

/// The start state the setup code establishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitState {
    /// EAX, ECX, EDX, EBX, (ESP: ignored, SP = 8000), EBP, ESI, EDI.
    pub gpr: [u32; 8],
    /// EFLAGS loaded with POPFD (TF is always cleared).
    pub eflags: u32,
    /// Seed of the data segment contents; `None` leaves it zero.
    pub data_seed: Option<u64>,
}

/// A generated program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The seed it was generated from (for naming).
    pub seed: u64,
    pub init: InitState,
    pub units: Vec<Unit>,
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingLine {
    pub ip: u16,
    pub bytes: Vec<u8>,
    pub text: String,
}

/// A laid-out program.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub image: Vec<u8>,
    pub body_start: u16,
    pub body_end: u16,
    /// Start IP of every body instruction (unit by unit), including the final HLT.
    pub body_ips: Vec<u16>,
}

fn fixed_code(
    ip: u16,
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Result<Vec<u8>, ProgramError> {
    let mut a = CodeAssembler::new(16)?;
    build(&mut a)?;
    Ok(a.assemble(ip as u64)?)
}

/// The fault handler (see the module doc).
pub fn fault_handler() -> Result<Vec<u8>, ProgramError> {
    fixed_code(FAULT_HANDLER, |a| {
        let mut halt = a.create_label();
        a.push(bp)?;
        a.mov(bp, sp)?;
        a.push(si)?;
        a.mov(si, word_ptr(bp + 2))?;
        a.cmp(si, SETUP as u32)?;
        a.jb(halt)?;
        a.cmp(si, BODY_LIMIT as u32)?;
        a.jae(halt)?;
        a.add(si, si)?;
        a.mov(si, word_ptr(si + RESUME_TABLE as u32).cs())?;
        a.test(si, si)?;
        a.jz(halt)?;
        a.mov(word_ptr(bp + 2), si)?;
        a.inc(word_ptr(FAULT_COUNT as u32).cs())?;
        a.pop(si)?;
        a.pop(bp)?;
        a.iret()?;
        a.set_label(&mut halt)?;
        a.hlt()?;
        Ok(())
    })
}

/// The trap handler (see the module doc).
pub fn trap_handler() -> Result<Vec<u8>, ProgramError> {
    fixed_code(TRAP_HANDLER, |a| {
        a.inc(word_ptr(TRAP_COUNT as u32).cs())?;
        a.iret()?;
        Ok(())
    })
}

/// The assembled fault and trap handlers, or why they could not be assembled.
type HandlerBytes = Result<(Vec<u8>, Vec<u8>), String>;

/// The fault and trap handlers, assembled once.
fn handlers() -> Result<(&'static [u8], &'static [u8]), ProgramError> {
    static HANDLERS: std::sync::OnceLock<HandlerBytes> = std::sync::OnceLock::new();
    let h = HANDLERS.get_or_init(|| match (fault_handler(), trap_handler()) {
        (Ok(f), Ok(t)) => Ok((f, t)),
        (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
    });
    match h {
        Ok((f, t)) => Ok((f.as_slice(), t.as_slice())),
        Err(e) => Err(ProgramError::Encode(e.clone())),
    }
}

/// The setup code for `init`.
pub fn setup_code(init: &InitState) -> Result<Vec<u8>, ProgramError> {
    fixed_code(SETUP, |a| {
        a.mov(word_ptr(0u32), FAULT_HANDLER as u32)?;
        a.mov(word_ptr(2u32), 0u32)?;
        a.mov(ax, SS_SEG as u32)?;
        a.mov(ss, ax)?;
        a.mov(sp, SP0 as u32)?;
        for (seg, v) in [(ds, DATA_SEG), (es, ES_SEG), (fs, FS_SEG), (gs, GS_SEG)] {
            a.mov(ax, v as u32)?;
            a.mov(seg, ax)?;
        }
        let fl = init.eflags & !picoqemu_core::flags::TF | picoqemu_core::flags::FIXED;
        a.add_instruction(Instruction::with1(iced_x86::Code::Pushd_imm32, fl)?)?;
        a.popfd()?;
        let regs = [eax, ecx, edx, ebx, esp, ebp, esi, edi];
        for (i, r) in regs.iter().enumerate() {
            if i != 4 {
                a.mov(*r, init.gpr[i])?;
            }
        }
        Ok(())
    })
}

fn encode_at(instr: &Instruction, ip: u16) -> Result<Vec<u8>, ProgramError> {
    let mut e = Encoder::new(16);
    e.encode(instr, ip as u64)?;
    Ok(e.take_buffer())
}

/// Lays out one unit at `ip`; returns its bytes and the IP of each instruction.
pub fn encode_unit(unit: &Unit, ip: u16, index: usize) -> Result<(Vec<u8>, Vec<u16>), ProgramError> {
    // Pass 1: lengths (a branch is encoded to itself, which is always in range).
    let mut ips = Vec::with_capacity(unit.insns.len() + 1);
    let mut at = ip;
    for insn in &unit.insns {
        ips.push(at);
        let mut i = insn.instr;
        if insn.target.is_some() {
            i.set_near_branch16(at);
        }
        at = at.wrapping_add(encode_at(&i, at)?.len() as u16);
    }
    ips.push(at);
    // Pass 2: real targets.
    let mut out = Vec::new();
    for (k, insn) in unit.insns.iter().enumerate() {
        let mut i = insn.instr;
        if let Some(t) = insn.target {
            let target = *ips.get(t).ok_or(ProgramError::BranchRange(index))?;
            i.set_near_branch16(target);
        }
        let b = encode_at(&i, ips[k]).map_err(|_| ProgramError::BranchRange(index))?;
        if b.len() as u16 != ips[k + 1].wrapping_sub(ips[k]) {
            return Err(ProgramError::BranchRange(index));
        }
        out.extend_from_slice(&b);
    }
    ips.pop();
    Ok((out, ips))
}

impl Program {
    /// Lays the program out as a raw image.
    pub fn assemble(&self) -> Result<Assembled, ProgramError> {
        let mut image = vec![0u8; IMAGE_LEN];
        for v in 0..256usize {
            let h = if FAULT_VECTORS.contains(&(v as u8)) { FAULT_HANDLER } else { TRAP_HANDLER };
            image[v * 4..v * 4 + 2].copy_from_slice(&h.to_le_bytes());
        }
        let jmp = SETUP - 3;
        image[0..3].copy_from_slice(&[0xE9, jmp as u8, (jmp >> 8) as u8]);
        let (fh, th) = handlers()?;
        image[FAULT_HANDLER as usize..FAULT_HANDLER as usize + fh.len()].copy_from_slice(fh);
        image[TRAP_HANDLER as usize..TRAP_HANDLER as usize + th.len()].copy_from_slice(th);
        let setup = setup_code(&self.init)?;
        image[SETUP as usize..SETUP as usize + setup.len()].copy_from_slice(&setup);
        let body_start = SETUP + setup.len() as u16;
        let mut at = body_start;
        let mut body_ips = Vec::new();
        for (k, unit) in self.units.iter().enumerate() {
            let (bytes, ips) = encode_unit(unit, at, k)?;
            let end = at as usize + bytes.len();
            if end + 1 > BODY_LIMIT as usize {
                return Err(ProgramError::TooLarge(end - body_start as usize));
            }
            image[at as usize..end].copy_from_slice(&bytes);
            body_ips.extend(ips);
            at = end as u16;
        }
        image[at as usize] = 0xF4; // hlt
        body_ips.push(at);
        let body_end = at + 1;
        // Resume table, in address order.
        let mut sorted = body_ips.clone();
        sorted.sort_unstable();
        for w in sorted.windows(2) {
            let e = RESUME_TABLE as usize + 2 * w[0] as usize;
            image[e..e + 2].copy_from_slice(&w[1].to_le_bytes());
        }
        if let Some(seed) = self.init.data_seed {
            fill_bytes(seed, &mut image[0x1_0000..0x2_0000]);
        }
        Ok(Assembled { image, body_start, body_end, body_ips })
    }

    /// Number of instructions in the body (without the final HLT).
    pub fn insn_count(&self) -> usize {
        self.units.iter().map(|u| u.insns.len()).sum()
    }

    /// An assembly listing: start state, setup, handlers and the body, unit by unit.
    pub fn listing(&self, asm: &Assembled) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "; picoqemu fuzz program (seed {:#018x}), raw layout: load at 0, start 0000:0000\n",
            self.seed
        ));
        out.push_str(&format!(
            "; data segment 1000:0000-FFFF: {}\n",
            match self.init.data_seed {
                Some(s) => format!("SplitMix64 bytes from seed {s:#018x}"),
                None => "zero".to_string(),
            }
        ));
        out.push_str(&format!(
            "; DS={DATA_SEG:04x} ES={ES_SEG:04x} FS={FS_SEG:04x} GS={GS_SEG:04x} SS:SP={SS_SEG:04x}:{SP0:04x}\n"
        ));
        let section = |out: &mut String, title: &str, from: u16, to: u16| {
            out.push_str(&format!("\n; {title}\n"));
            out.push_str(&listing_range(&asm.image, from, to));
        };
        section(&mut out, "jmp to setup", 0, 3);
        section(
            &mut out,
            "fault handler",
            FAULT_HANDLER,
            FAULT_HANDLER + fault_handler().map(|b| b.len()).unwrap_or(0) as u16,
        );
        section(
            &mut out,
            "trap handler",
            TRAP_HANDLER,
            TRAP_HANDLER + trap_handler().map(|b| b.len()).unwrap_or(0) as u16,
        );
        section(&mut out, "setup", SETUP, asm.body_start);
        out.push_str("\n; body\n");
        let mut idx = 0;
        for (k, unit) in self.units.iter().enumerate() {
            let from = asm.body_ips[idx];
            idx += unit.insns.len();
            let to = asm.body_ips[idx];
            out.push_str(&format!("; unit {k}: {}\n", unit.kind));
            out.push_str(&listing_range(&asm.image, from, to));
        }
        out.push_str(&listing_range(&asm.image, asm.body_end - 1, asm.body_end));
        out
    }
}

/// A program's units are what the minimiser removes; any subset is again a valid program.
impl crate::shrink::Shrinkable for Program {
    fn parts(&self) -> usize {
        self.units.len()
    }
    fn without(&self, range: std::ops::Range<usize>) -> Option<Self> {
        let mut p = self.clone();
        p.units.drain(range);
        Some(p)
    }
}

/// Disassembles `image[from..to]` as 16-bit code, one line per instruction.
pub fn listing_range(image: &[u8], from: u16, to: u16) -> String {
    let mut out = String::new();
    let code = &image[from as usize..(to as usize).min(image.len())];
    let mut d = Decoder::with_ip(16, code, from as u64, DecoderOptions::NONE);
    while d.can_decode() {
        let pos = d.position();
        let i = d.decode();
        let hex: Vec<String> = code[pos..pos + i.len()].iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("{:04x}  {:<30} {}\n", i.ip(), hex.join(" "), disasm::format(&i)));
    }
    out
}

/// Encodes `instrs` as a block at `ip` (used for fixed snippets in tests).
pub fn encode_block(instrs: &[Instruction], ip: u16) -> Result<Vec<u8>, ProgramError> {
    let block = iced_x86::InstructionBlock::new(instrs, ip as u64);
    let r = BlockEncoder::encode(16, block, iced_x86::BlockEncoderOptions::NONE)?;
    Ok(r.code_buffer)
}
