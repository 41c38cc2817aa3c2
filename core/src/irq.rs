//! The CPU's INTR input: external interrupt requests waiting for a CPU to take them.
//!
//! Both backends take external interrupts the same way, at an instruction boundary with
//! IF=1 and no interrupt shadow (after STI, MOV SS, POP SS): they ask the machine whether
//! INTR is asserted ([`crate::Machine::interrupt_pending`]) and then run the INTA cycle
//! ([`crate::Machine::acknowledge_interrupt`]), which yields the vector to deliver through
//! the IVT. The interpreter does this between instructions; the KVM backend injects the
//! vector with `KVM_INTERRUPT` when the vCPU is ready and otherwise asks KVM for an
//! interrupt-window exit. Where requests come from is the machine's business: today the
//! queue of vectors raised by the embedder ([`crate::Machine::raise_interrupt`], used by
//! tests and debuggers); an interrupt controller (8259A) feeds the same two calls.
use std::collections::VecDeque;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
