//! The CPU's INTR input: external interrupt requests waiting for a CPU to take them, and the
//! ISA IRQ lines that devices drive ([`IrqLines`]).
//!
//! Both backends take external interrupts the same way, at an instruction boundary with
//! IF=1 and no interrupt shadow (after STI, MOV SS, POP SS): they ask the machine whether
//! INTR is asserted ([`crate::Machine::interrupt_pending`]) and then run the INTA cycle
//! ([`crate::Machine::acknowledge_interrupt`]), which yields the vector to deliver through
//! the IVT. The interpreter does this between instructions; the KVM backend injects the
//! vector with `KVM_INTERRUPT` when the vCPU is ready and otherwise asks KVM for an
//! interrupt-window exit. Where requests come from is the machine's business: today the
//! queue of vectors raised by the embedder ([`crate::Machine::raise_interrupt`], used by
//! tests and debuggers), and on a PC machine ([`crate::Platform::Pc`]) the 8259A pair
//! ([`crate::devices::Pic8259Pair`]), which the bus asks first. Devices drive IRQ lines
//! through their [`crate::device::DeviceCtx`]; after each access or event the bus hands the
//! changes to the interrupt controller, which raises INTR.
use std::collections::VecDeque;

use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Most requests that can wait at once; raising more drops the newest (an edge lost, as on
/// real hardware when a request line is pulsed faster than the CPU acknowledges it).
pub const MAX_PENDING: usize = 256;

/// Vectors waiting for INTA, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InterruptQueue {
    pending: VecDeque<u8>,
    dropped: u64,
}

impl InterruptQueue {
    /// Queues `vector`; returns false (and counts it) when [`MAX_PENDING`] are already waiting.
    pub fn raise(&mut self, vector: u8) -> bool {
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return false;
        }
        self.pending.push_back(vector);
        true
    }

    /// True while a request waits (INTR asserted).
    pub fn pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The INTA cycle: the oldest waiting vector, now taken.
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.pending.pop_front()
    }

    /// Requests lost because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets every request (machine reset).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.dropped = 0;
    }

    /// The waiting vectors and the dropped count, for a snapshot.
    pub(crate) fn save(&self, w: &mut StateWriter) {
        let pending: Vec<u8> = self.pending.iter().copied().collect();
        w.bytes(&pending);
        w.u64(self.dropped);
    }

    /// Reads what [`InterruptQueue::save`] wrote.
    pub(crate) fn restore(r: &mut StateReader<'_>) -> Result<Self, SnapshotError> {
        let pending = r.bytes(MAX_PENDING)?.iter().copied().collect();
        Ok(InterruptQueue { pending, dropped: r.u64()? })
    }
}

/// Number of IRQ lines (ISA IRQ 0–15: 0–7 on the master PIC, 8–15 on the slave).
pub const IRQ_LINES: u8 = 16;

/// The levels of the 16 IRQ lines and the rising edges seen since the interrupt controller
/// last looked. Lines 16 and above do not exist; driving them does nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IrqLines {
    level: u16,
    rising: u16,
    /// Levels when the controller last took the changes.
    seen: u16,
}

impl IrqLines {
    /// Drives `line` high (a rising edge if it was low).
    pub fn raise(&mut self, line: u8) {
        let Some(bit) = bit(line) else { return };
        if self.level & bit == 0 {
            self.rising |= bit;
        }
        self.level |= bit;
    }

    /// Drives `line` low.
    pub fn lower(&mut self, line: u8) {
        if let Some(bit) = bit(line) {
            self.level &= !bit;
        }
    }

    /// A rising edge that ends low again (the request of an edge-triggered device).
    pub fn pulse(&mut self, line: u8) {
        self.raise(line);
        self.lower(line);
    }

    /// Current levels, bit `n` for IRQ `n`.
    pub fn levels(&self) -> u16 {
        self.level
    }

    /// Whether anything changed since [`IrqLines::take_rising`] was last called.
    pub fn changed(&self) -> bool {
        self.rising != 0 || self.level != self.seen
    }

    /// The rising edges since the last call, now consumed.
    pub fn take_rising(&mut self) -> u16 {
        self.seen = self.level;
        std::mem::take(&mut self.rising)
    }

    /// All lines low, no edges (machine reset).
    pub fn clear(&mut self) {
        *self = IrqLines::default();
    }

    /// Levels, pending edges and the levels last seen, for a snapshot.
    pub(crate) fn save(&self, w: &mut StateWriter) {
        w.u16(self.level);
        w.u16(self.rising);
        w.u16(self.seen);
    }

    /// Reads what [`IrqLines::save`] wrote.
    pub(crate) fn restore(r: &mut StateReader<'_>) -> Result<Self, SnapshotError> {
        Ok(IrqLines { level: r.u16()?, rising: r.u16()?, seen: r.u16()? })
    }
}

fn bit(line: u8) -> Option<u16> {
    (line < IRQ_LINES).then(|| 1u16 << line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_record_levels_and_edges() {
        let mut l = IrqLines::default();
        assert!(!l.changed());
        l.raise(3);
        l.raise(3);
        assert_eq!((l.levels(), l.changed()), (0x08, true));
        assert_eq!(l.take_rising(), 0x08);
        assert!(!l.changed());
        l.lower(3);
        assert!(l.changed(), "a falling level is a change");
        assert_eq!(l.take_rising(), 0);
        l.pulse(0);
        l.pulse(15);
        l.pulse(16);
        assert_eq!(l.levels(), 0);
        assert_eq!(l.take_rising(), 0x8001);
        l.raise(9);
        l.clear();
        assert_eq!((l.levels(), l.changed()), (0, false));
    }

    #[test]
    fn fifo_and_bounded() {
        let mut q = InterruptQueue::default();
        assert!(!q.pending());
        assert!(q.raise(8));
        assert!(q.raise(9));
        assert!(q.pending());
        assert_eq!(q.acknowledge(), Some(8));
        assert_eq!(q.acknowledge(), Some(9));
        assert_eq!(q.acknowledge(), None);
        for i in 0..MAX_PENDING {
            assert!(q.raise(i as u8));
        }
        assert!(!q.raise(1));
        assert_eq!(q.dropped(), 1);
        q.clear();
        assert!(!q.pending());
    }
}
