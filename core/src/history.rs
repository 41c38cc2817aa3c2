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

/// A fixed ring of the last [`HISTORY_LEN`] [`HistoryEntry`]s.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRing {
    entries: [HistoryEntry; HISTORY_LEN],
    /// Entries recorded so far (the next one goes to `next % HISTORY_LEN`).
    next: u64,
}

impl Default for HistoryRing {
    fn default() -> Self {
        HistoryRing { entries: [HistoryEntry::default(); HISTORY_LEN], next: 0 }
    }
}

impl HistoryRing {
    /// Records a stretch, overwriting the oldest once the ring is full.
    #[inline(always)]
    pub fn record(&mut self, entry: HistoryEntry) {
        self.entries[(self.next as usize) % HISTORY_LEN] = entry;
        self.next = self.next.wrapping_add(1);
    }

    /// Forgets everything (a CPU reset).
    pub fn clear(&mut self) {
        self.next = 0;
    }

    /// The recorded stretches, oldest first.
    pub fn history(&self) -> History {
        let n = (self.next as usize).min(HISTORY_LEN);
        let start = self.next as usize - n;
        let entries = (start..start + n).map(|i| self.entries[i % HISTORY_LEN]).collect();
        History { entries }
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

    fn at(ip: u32) -> HistoryEntry {
        HistoryEntry { cs: 0, ip, bytes: 1, compiled: 0 }
    }

    #[test]
    fn an_empty_ring_has_no_history() {
        assert!(HistoryRing::default().history().is_empty());
    }

    #[test]
    fn entries_come_back_oldest_first() {
        let mut r = HistoryRing::default();
        for ip in 1..=3 {
            r.record(at(ip));
        }
        let ips: Vec<u32> = r.history().entries.iter().map(|e| e.ip).collect();
        assert_eq!(ips, [1, 2, 3]);
    }

    #[test]
    fn a_full_ring_keeps_the_newest() {
        let mut r = HistoryRing::default();
        let total = HISTORY_LEN as u32 + 5;
        for ip in 0..total {
            r.record(at(ip));
        }
        let ips: Vec<u32> = r.history().entries.iter().map(|e| e.ip).collect();
        assert_eq!(ips.len(), HISTORY_LEN);
        assert_eq!(ips[0], 5);
        assert_eq!(*ips.last().unwrap(), total - 1);
        r.clear();
        assert!(r.history().is_empty());
    }
}
