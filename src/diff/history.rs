//! The last instructions executed, kept in a fixed ring buffer (no allocation per step) so a
//! divergence report can show how the guest got there.
use std::fmt;

use picoqemu_core::InsnBytes;

use super::disasm;

/// How many instructions a report shows.
pub const HISTORY_LEN: usize = 16;

/// One executed instruction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistEntry {
    /// 0-based number of the instruction in the run.
    pub step: u64,
    pub cs: u16,
    pub ip: u32,
    pub bytes: InsnBytes,
}

/// A ring of the last [`HISTORY_LEN`] instructions.
#[derive(Debug, Clone, Copy, Default)]
pub struct History {
    ring: [HistEntry; HISTORY_LEN],
    next: usize,
    filled: usize,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, e: HistEntry) {
        self.ring[self.next] = e;
        self.next = (self.next + 1) % HISTORY_LEN;
        self.filled = (self.filled + 1).min(HISTORY_LEN);
    }

    /// Oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &HistEntry> {
        let start = (self.next + HISTORY_LEN - self.filled) % HISTORY_LEN;
        (0..self.filled).map(move |i| &self.ring[(start + i) % HISTORY_LEN])
    }

    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.entries() {
            let (hex, text) = disasm::describe(e.bytes.as_slice(), e.ip);
            writeln!(f, "  #{:<8} {:04x}:{:04x}  {:<24} {}", e.step, e.cs, e.ip, hex, text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_sixteen_in_order() {
        let mut h = History::new();
        assert!(h.is_empty());
        for i in 0..20u64 {
            h.push(HistEntry { step: i, cs: 0, ip: i as u32, bytes: InsnBytes::new(&[0x90]) });
        }
        let steps: Vec<u64> = h.entries().map(|e| e.step).collect();
        assert_eq!(steps, (4..20).collect::<Vec<_>>());
        let text = h.to_string();
        assert_eq!(text.lines().count(), 16);
        assert!(text.lines().next().unwrap().contains("#4 "), "{text}");
        assert!(text.contains("nop"));
    }
}
