//! What a CPU ran last: [`HistoryRing`], a fixed ring of the most recent stretches of
//! straight-line code a backend executed (one entry per block run: where it started and how
//! many bytes of code it covered), and [`History`], its copy in order for reports
//! ([`crate::Backend::history`]). Recording is one array store and an index increment, with
//! no allocation, so an interpreter can do it on every block; turning entries back into
//! instructions (decoding from `cs:ip` until `bytes` are covered) is the reader's job.

/// How many stretches a [`HistoryRing`] keeps.
pub const HISTORY_LEN: usize = 32;

/// One stretch of straight-line code: the instructions in the `bytes` bytes from `cs:ip`, in
/// order (the last may be one that faulted or stopped the run). A REP string instruction is
/// one instruction however many iterations it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// CS selector while the stretch ran.
    pub cs: u16,
    /// IP of its first instruction.
    pub ip: u32,
    /// Bytes of code it covers, its last instruction included.
    pub bytes: u32,
    /// Non-zero when the stretch ran as compiled host code: this many instructions retired
    /// in a loop whose body is the `bytes` from `cs:ip` (not a straight line).
    pub compiled: u64,
}

/// A fixed ring of the last [`HISTORY_LEN`] [`HistoryEntry`]s. An entry is packed into
/// one `u64` (CS, 15 bits of length, IP), so recording one is a single store; a compiled
/// loop's instruction count goes to a side array, written only for such entries.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRing {
    packed: [u64; HISTORY_LEN],
    compiled: [u64; HISTORY_LEN],
    /// Entries recorded so far (the next one goes to `next % HISTORY_LEN`).
    next: u64,
}

/// Set in a packed entry whose instruction count is in `HistoryRing::compiled`.
const COMPILED: u64 = 1 << 47;

impl Default for HistoryRing {
    fn default() -> Self {
        HistoryRing { packed: [0; HISTORY_LEN], compiled: [0; HISTORY_LEN], next: 0 }
    }
}

impl HistoryRing {
    /// Records the straight-line stretch of `bytes` bytes (at most 32 KiB) from `cs:ip`,
    /// overwriting the oldest entry once the ring is full.
    #[inline(always)]
    pub fn record(&mut self, cs: u16, ip: u32, bytes: u32) {
        let e = u64::from(cs) << 48 | u64::from(bytes & 0x7FFF) << 32 | u64::from(ip);
        self.packed[(self.next as usize) % HISTORY_LEN] = e;
        self.next = self.next.wrapping_add(1);
    }

    /// Records a compiled loop whose body is the `bytes` from `cs:ip` and which retired
    /// `instructions`.
    pub fn record_compiled(&mut self, cs: u16, ip: u32, bytes: u32, instructions: u64) {
        self.compiled[(self.next as usize) % HISTORY_LEN] = instructions;
        self.record(cs, ip, bytes);
        self.packed[(self.next.wrapping_sub(1) as usize) % HISTORY_LEN] |= COMPILED;
    }

    /// Forgets everything (a CPU reset).
    pub fn clear(&mut self) {
        self.next = 0;
    }

    /// The recorded stretches, oldest first.
    pub fn history(&self) -> History {
        let n = (self.next as usize).min(HISTORY_LEN);
        let start = self.next as usize - n;
        let entries = (start..start + n).map(|i| self.entry(i % HISTORY_LEN)).collect();
        History { entries }
    }

    fn entry(&self, i: usize) -> HistoryEntry {
        let e = self.packed[i];
        HistoryEntry {
            cs: (e >> 48) as u16,
            ip: e as u32,
            bytes: ((e >> 32) & 0x7FFF) as u32,
            compiled: if e & COMPILED != 0 { self.compiled[i] } else { 0 },
        }
    }
}

/// The last stretches of code a backend ran, oldest first; empty when the backend does not
/// keep a history (KVM runs the guest out of sight).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
}

impl History {
    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_ring_has_no_history() {
        assert!(HistoryRing::default().history().is_empty());
    }

    #[test]
    fn entries_come_back_oldest_first() {
        let mut r = HistoryRing::default();
        for ip in 1..=3 {
            r.record(0, ip, 1);
        }
        let ips: Vec<u32> = r.history().entries.iter().map(|e| e.ip).collect();
        assert_eq!(ips, [1, 2, 3]);
    }

    #[test]
    fn entries_round_trip_compiled_ones_with_their_count() {
        let mut r = HistoryRing::default();
        r.record(0x07C0, 0xFFF0, 480);
        r.record_compiled(0xF000, 0x10, 12, 1 << 40);
        r.record(0x1234, 0x20, 3);
        let h = r.history().entries;
        assert_eq!(h[0], HistoryEntry { cs: 0x07C0, ip: 0xFFF0, bytes: 480, compiled: 0 });
        assert_eq!(h[1], HistoryEntry { cs: 0xF000, ip: 0x10, bytes: 12, compiled: 1 << 40 });
        assert_eq!(h[2], HistoryEntry { cs: 0x1234, ip: 0x20, bytes: 3, compiled: 0 });
    }

    #[test]
    fn a_full_ring_keeps_the_newest() {
        let mut r = HistoryRing::default();
        let total = HISTORY_LEN as u32 + 5;
        for ip in 0..total {
            r.record(0, ip, 1);
        }
        let ips: Vec<u32> = r.history().entries.iter().map(|e| e.ip).collect();
        assert_eq!(ips.len(), HISTORY_LEN);
        assert_eq!(ips[0], 5);
        assert_eq!(*ips.last().unwrap(), total - 1);
        r.clear();
        assert!(r.history().is_empty());
    }
}
