//! A fake [`Backend`] for tests of the suite runner (this crate's and `picoqemu sst`'s): it "executes" a test by applying the
//! recorded `FINA` state, optionally with one deliberate error, so the tests can prove that the
//! runner accepts a perfect CPU and catches each kind of wrong one.
use std::collections::HashMap;

use picoqemu_core::{
    Backend, BackendError, BackendStats, CpuState, InsnBytes, Machine, RunLimits, SegReg, StopReason,
};

use super::moo::{Reg16, Test};
use super::runner::initial_state;

/// The one thing the fake gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// XOR these bits into the final FLAGS.
    Flags(u16),
    /// XOR 0x01 into the first `FINA` RAM byte.
    FinaByte,
    /// XOR this into the FLAGS word pushed by an exception (at SS:SP+4).
    PushedFlags(u16),
    /// Write 0x5A at this physical address.
    Stray(u32),
    /// Set bit 16 of EAX.
    UpperHalf,
    /// Stop with `Unsupported` instead of running.
    Unsupported,
    /// Leave DS's base stale after a DS load.
    StaleBase,
}

/// Applies `FINA` to whatever test matches the state it was given.
pub struct FakeCpu {
    /// Tests by initial state (the suite reuses register seeds across files, so several tests
    /// can share one; the instruction bytes in RAM tell them apart).
    by_state: HashMap<CpuState, Vec<Test>>,
    state: CpuState,
    pub fault: Fault,
    /// Only tests with this index get the fault (all when `None`).
    pub fault_index: Option<u32>,
}

impl FakeCpu {
    pub fn new(tests: impl IntoIterator<Item = Test>, fault: Fault) -> Self {
        let mut by_state: HashMap<CpuState, Vec<Test>> = HashMap::new();
        for t in tests {
            by_state.entry(initial_state(&t)).or_default().push(t);
        }
        FakeCpu { by_state, state: CpuState::default(), fault, fault_index: None }
    }
}

impl Backend for FakeCpu {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn set_state(&mut self, state: &CpuState) -> Result<(), BackendError> {
        self.state = *state;
        Ok(())
    }
    fn state(&mut self) -> Result<CpuState, BackendError> {
        Ok(self.state)
    }
    fn run(&mut self, machine: &mut Machine, _limits: RunLimits) -> Result<StopReason, BackendError> {
        let pc = self.state.pc_linear() as usize;
        let ram = machine.ram_mut().bytes();
        let found = self.by_state.get(&self.state).and_then(|ts| {
            ts.iter().find(|t| ram.get(pc..pc + t.bytes.len()).is_some_and(|b| b == t.bytes.as_slice()))
        });
        let Some(t) = found else {
            return Err(BackendError::new("fake", "no test starts in this state"));
        };
        let fault = if self.fault_index.is_none_or(|i| i == t.index) { self.fault } else { Fault::None };
        if fault == Fault::Unsupported {
            return Ok(StopReason::Unsupported { cs: 0, ip: 0, bytes: InsnBytes::new(&t.bytes) });
        }
        let s = &mut self.state;
        for (g, r) in super::runner::GPR_MAP {
            s.set_reg(g, u32::from(t.final_reg(r)));
        }
        for (seg, r) in [
            (SegReg::Cs, Reg16::Cs),
            (SegReg::Ss, Reg16::Ss),
            (SegReg::Ds, Reg16::Ds),
            (SegReg::Es, Reg16::Es),
        ] {
            let old_base = s.seg(seg).base;
            s.set_seg(seg, t.final_reg(r));
            if fault == Fault::StaleBase && seg == SegReg::Ds {
                s.segs[seg as usize].base = old_base;
            }
        }
        s.eip = u32::from(t.final_reg(Reg16::Ip));
        s.eflags = u32::from(t.final_reg(Reg16::Flags)) & 0x0FFF;
        let ram = machine.ram_mut().as_mut_slice();
        for &(a, v) in &t.fina.ram {
            ram[a as usize] = v;
        }
        match fault {
            Fault::Flags(x) => s.eflags ^= u32::from(x),
            Fault::FinaByte => {
                if let Some(&(a, _)) = t.fina.ram.first() {
                    ram[a as usize] ^= 1;
                }
            }
            Fault::PushedFlags(x) => {
                let [lo, hi] = super::runner::pushed_flags_addresses(t);
                ram[lo as usize] ^= x as u8;
                ram[hi as usize] ^= (x >> 8) as u8;
            }
            Fault::Stray(a) => ram[a as usize] = 0x5A,
            Fault::UpperHalf => s.gpr[0] |= 0x1_0000,
            Fault::None | Fault::Unsupported | Fault::StaleBase => {}
        }
        Ok(StopReason::Halted)
    }
    fn stats(&self) -> BackendStats {
        BackendStats::default()
    }
}
