//! Shared harness of the run-control tests: a guest program assembled at 0000:0100 with the
//! addresses of its labels, an interrupt handler at 0000:0500 (vector 0x20), a stack at
//! 0000:8000, and the interpreter running it.
#![allow(dead_code)]

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use picoqemu_core::{Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_interp::{InterpBackend, JitMode};

pub const CODE: u16 = 0x100;
pub const HANDLER: u16 = 0x500;
pub const VECTOR: u8 = 0x20;
pub const STACK_TOP: u16 = 0x8000;
/// EFLAGS.IF.
pub const IF: u32 = 1 << 9;

/// Assembles 16-bit code for `org`; `f` returns the labels whose addresses the caller needs.
pub fn asm(
    org: u16,
    f: impl FnOnce(&mut CodeAssembler) -> Result<Vec<CodeLabel>, IcedError>,
) -> (Vec<u8>, Vec<u16>) {
    let mut a = CodeAssembler::new(16).expect("assembler");
    let labels = f(&mut a).expect("asm");
    let r = a
        .assemble_options(org as u64, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .expect("assemble");
    let ips = labels.iter().map(|l| r.label_ip(l).expect("label") as u16).collect();
    (r.inner.code_buffer, ips)
}

pub struct Guest {
    pub m: Machine,
    pub be: InterpBackend,
}

impl Guest {
    /// `code` at 0000:0100, `handler` at 0000:0500 for vector 0x20, EFLAGS = `eflags`.
    pub fn new(mode: JitMode, code: &[u8], handler: &[u8], eflags: u32) -> Guest {
        let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
        m.ram_mut().write(CODE as u64, code).expect("code");
        m.ram_mut().write(HANDLER as u64, handler).expect("handler");
        m.ram_mut().write(VECTOR as u64 * 4, &[HANDLER as u8, (HANDLER >> 8) as u8, 0, 0]).expect("ivt");
        let mut be = InterpBackend::new().with_jit(mode);
        let mut st = CpuState { eip: CODE as u32, eflags, ..CpuState::default() };
        st.gpr[4] = STACK_TOP as u32;
        be.set_state(&st).expect("state");
        Guest { m, be }
    }

    pub fn run(&mut self, limits: RunLimits) -> StopReason {
        self.be.run(&mut self.m, limits).expect("run")
    }

    /// Runs with a generous budget, so that a broken stop fails instead of hanging.
    pub fn go(&mut self) -> StopReason {
        self.run(RunLimits::instructions(10_000_000))
    }

    pub fn state(&mut self) -> CpuState {
        self.be.state().expect("state")
    }

    pub fn instructions(&self) -> u64 {
        self.be.stats().instructions.expect("the interpreter counts instructions")
    }

    pub fn peek16(&self, addr: u32) -> u16 {
        let mut b = [0u8; 2];
        self.m.ram().read(addr as u64, &mut b).expect("peek");
        u16::from_le_bytes(b)
    }

    /// The interrupt frame below `STACK_TOP` (IP, CS, FLAGS), as the last delivery left it.
    pub fn frame(&self) -> (u16, u16, u16) {
        let top = STACK_TOP as u32;
        (self.peek16(top - 6), self.peek16(top - 4), self.peek16(top - 2))
    }
}

/// True when the host can run the compiled tier (otherwise such checks are skipped).
pub fn tier_available() -> bool {
    let on = InterpBackend::new().with_jit(JitMode::Eager).jit_mode() == JitMode::Eager;
    if !on {
        eprintln!("SKIP (compiled-tier checks only): this host cannot run compiled code");
    }
    on
}
