//! Test helpers: a machine with a program at 0000:0100 run on the interpreter.
use picoqemu_core::{Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, StopReason};

use crate::InterpBackend;

/// A test machine: code at 0000:0100, IP = 0x100, everything else zero.
pub struct T {
    pub m: Machine,
    pub cpu: CpuState,
    pub be: InterpBackend,
    started: bool,
}

/// The result of a run.
pub struct R {
    pub stop: StopReason,
    pub st: CpuState,
}

impl T {
    pub fn new(code: &[u8]) -> T {
        let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
        m.ram_mut().write(0x100, code).expect("code fits");
        let cpu = CpuState { eip: 0x100, ..CpuState::default() };
        T { m, cpu, be: InterpBackend::new(), started: false }
    }

    pub fn poke(&mut self, addr: u32, bytes: &[u8]) {
        self.m.ram_mut().write(addr as u64, bytes).expect("poke in RAM");
    }

    pub fn peek(&self, addr: u32, n: usize) -> Vec<u8> {
        self.m.ram().read_vec(u64::from(addr), n).expect("peek in RAM")
    }

    pub fn peek16(&self, addr: u32) -> u16 {
        let b = self.peek(addr, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    /// Runs (at most a million instructions) and returns the stop and the state.
    pub fn run(&mut self) -> R {
        self.run_limited(RunLimits::instructions(1_000_000))
    }

    pub fn run_limited(&mut self, limits: RunLimits) -> R {
        if !self.started {
            self.be.set_state(&self.cpu).expect("set_state");
            self.started = true;
        }
        let stop = self.be.run(&mut self.m, limits).unwrap_or_else(StopReason::from);
        let st = self.be.state().expect("state");
        R { stop, st }
    }
}
