//! [`CpuSnapshot`]: what a CPU must hand over to be resumed on another backend — the
//! architectural state ([`CpuState`], hidden segment bases and limits included), the
//! interrupt shadow, whether it is halted, an external interrupt it acknowledged but has
//! not delivered yet, and the retired-instruction count — and its encoding.
use super::{SnapshotError, StateReader, StateWriter};
use crate::{CpuState, Segment};

/// The one-instruction window after STI (IF was clear) or MOV SS / POP SS in which external
/// interrupts (and, after MOV SS, debug traps) are held off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum InterruptShadow {
    #[default]
    None,
    /// After STI: interrupts are held off for one instruction.
    Sti,
    /// After MOV SS / POP SS / LSS: interrupts and debug traps are held off for one instruction.
    MovSs,
}

impl InterruptShadow {
    fn code(self) -> u8 {
        match self {
            InterruptShadow::None => 0,
            InterruptShadow::Sti => 1,
            InterruptShadow::MovSs => 2,
        }
    }
}

/// A CPU's whole state between two runs, as [`crate::Backend::cpu_snapshot`] reads it and
/// [`crate::Backend::restore_cpu_snapshot`] loads it, on either backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuSnapshot {
    pub state: CpuState,
    pub shadow: InterruptShadow,
    /// The CPU is halted (its last run stopped at a HLT or while waiting in one): the next
    /// run waits for an interrupt as after a HLT (with IF=0 it stops `Halted` at once).
    pub halted: bool,
    /// An external interrupt already acknowledged (INTA done) but not yet delivered through
    /// the IVT: the next run delivers it before anything else.
    pub pending_interrupt: Option<u8>,
    /// Instructions retired so far where the backend counts them (the interpreter's RDTSC),
    /// else 0.
    pub instructions: u64,
}

impl CpuSnapshot {
    /// A snapshot of `state` with no shadow, not halted, nothing pending.
    pub fn of(state: CpuState) -> Self {
        CpuSnapshot { state, ..CpuSnapshot::default() }
    }

    pub(crate) fn encode(&self, w: &mut StateWriter) {
        let s = &self.state;
        for g in s.gpr {
            w.u32(g);
        }
        w.u32(s.eip);
        w.u32(s.eflags);
        for seg in s.segs {
            w.u16(seg.selector);
            w.u32(seg.base);
            w.u32(seg.limit);
        }
        w.u32(s.cr0);
        w.u32(s.idt_base);
        w.u16(s.idt_limit);
        w.u8(self.shadow.code());
        w.bool(self.halted);
        w.bool(self.pending_interrupt.is_some());
        w.u8(self.pending_interrupt.unwrap_or(0));
        w.u64(self.instructions);
    }

    pub(crate) fn decode(r: &mut StateReader<'_>) -> Result<Self, SnapshotError> {
        let mut s = CpuState::default();
        for g in &mut s.gpr {
            *g = r.u32()?;
        }
        s.eip = r.u32()?;
        s.eflags = r.u32()?;
        for seg in &mut s.segs {
            *seg = Segment { selector: r.u16()?, base: r.u32()?, limit: r.u32()? };
        }
        s.cr0 = r.u32()?;
        s.idt_base = r.u32()?;
        s.idt_limit = r.u16()?;
        let shadow = match r.u8()? {
            0 => InterruptShadow::None,
            1 => InterruptShadow::Sti,
            2 => InterruptShadow::MovSs,
            v => return Err(r.invalid(format!("interrupt shadow {v} is not 0, 1 or 2"))),
        };
        let halted = r.bool()?;
        let has_pending = r.bool()?;
        let vector = r.u8()?;
        let instructions = r.u64()?;
        r.finish()?;
        Ok(CpuSnapshot {
            state: s,
            shadow,
            halted,
            pending_interrupt: has_pending.then_some(vector),
            instructions,
        })
    }
}
