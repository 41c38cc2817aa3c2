//! Comparing two machines after a run: CPU state (with the masked flags), all of guest RAM as
//! compact differing ranges, device output (COM1, port 0xE9, POST code, the text screen and
//! cursor) and the stop reason. The result is a [`Comparison`] that prints itself as a report.
use std::fmt;

use picoqemu_core::cpu::FieldDiff;
use picoqemu_core::{flags, CpuState, Machine, StopReason};

/// A run of differing bytes in guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRange {
    pub start: u32,
    pub len: u32,
}

impl fmt::Display for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:05x}..{:05x} ({} bytes)", self.start, self.start as u64 + self.len as u64, self.len)
    }
}

/// How many ranges a comparison keeps (the byte total is always exact).
pub const MAX_RANGES: usize = 32;
/// Differing bytes closer than this are reported as one range.
const MERGE_GAP: u32 = 16;

/// Differing ranges between `a` and `b` (compared over their common length), starting at
/// physical address `base`. Returns the first [`MAX_RANGES`] ranges and the total count of
/// differing bytes.
pub fn diff_ranges(a: &[u8], b: &[u8], base: u32) -> (Vec<MemRange>, u64) {
    let n = a.len().min(b.len());
    let mut ranges: Vec<MemRange> = Vec::new();
    let mut total = 0u64;
    const CHUNK: usize = 256;
    let mut off = 0;
    while off < n {
        let end = (off + CHUNK).min(n);
        if a[off..end] != b[off..end] {
            for i in off..end {
                if a[i] != b[i] {
                    total += 1;
                    let addr = base.wrapping_add(i as u32);
                    let full = ranges.len() >= MAX_RANGES;
                    match ranges.last_mut() {
                        Some(r) if addr.wrapping_sub(r.start + r.len) < MERGE_GAP => {
                            r.len = addr - r.start + 1;
                        }
                        _ if !full => ranges.push(MemRange { start: addr, len: 1 }),
                        _ => {}
                    }
                }
            }
        }
        off = end;
    }
    (ranges, total)
}

/// The fields of `a` and `b` that differ, ignoring the EFLAGS bits in `mask`.
pub fn state_diff(a: &CpuState, b: &CpuState, mask: u32) -> Vec<FieldDiff> {
    let (mut a, mut b) = (*a, *b);
    a.eflags &= !mask;
    b.eflags &= !mask;
    a.diff(&b)
}

/// The bytes in `ranges` (`start..end` offsets) where `a` and `b` differ in bits that
/// `ignore(offset)` does not allow to differ: the first `max` as `(offset, a, b)`.
pub fn byte_diffs(
    a: &[u8],
    b: &[u8],
    ranges: &[(usize, usize)],
    ignore: impl Fn(usize) -> u8,
    max: usize,
) -> Vec<(usize, u8, u8)> {
    let mut out = Vec::new();
    for &(lo, hi) in ranges {
        let hi = hi.min(a.len()).min(b.len());
        if lo >= hi || a[lo..hi] == b[lo..hi] {
            continue;
        }
        for i in lo..hi {
            if (a[i] ^ b[i]) & !ignore(i) != 0 && out.len() < max {
                out.push((i, a[i], b[i]));
            }
        }
    }
    out
}

/// How one side's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stop: StopReason,
    pub state: CpuState,
}

/// Everything that differs between a reference run (KVM) and a candidate run (the interpreter).
#[derive(Debug, Clone)]
pub struct Comparison {
    pub left_name: &'static str,
    pub right_name: &'static str,
    pub left: Outcome,
    pub right: Outcome,
    /// EFLAGS bits excluded from the comparison (undefined flags, RF).
    pub masked_flags: u32,
    pub regs: Vec<FieldDiff>,
    pub mem: Vec<MemRange>,
    pub mem_bytes: u64,
    /// Names of the device outputs that differ (`serial`, `debugcon`, `post`, `cursor`).
    pub devices: Vec<&'static str>,
    pub serial: (Vec<u8>, Vec<u8>),
    pub debugcon: (Vec<u8>, Vec<u8>),
    pub stop_differs: bool,
}

/// Compares two finished runs. `masked_flags` are EFLAGS bits to ignore (RF is always ignored:
/// KVM leaves it set while it steps through a REP; it is not architecturally visible in real mode
/// except through an exception frame, which is compared as memory).
pub fn compare(
    names: (&'static str, &'static str),
    left: (&mut Machine, Outcome),
    right: (&mut Machine, Outcome),
    masked_flags: u32,
) -> Comparison {
    let mask = masked_flags | flags::RF;
    let (ml, ol) = left;
    let (mr, or) = right;
    let regs = state_diff(&ol.state, &or.state, mask);
    let (mem, mem_bytes) = diff_ranges(ml.ram_mut().bytes(), mr.ram_mut().bytes(), 0);
    let mut devices = Vec::new();
    let serial = (ml.bus().uart().out.captured().to_vec(), mr.bus().uart().out.captured().to_vec());
    let debugcon = (ml.bus().debugcon().out.captured().to_vec(), mr.bus().debugcon().out.captured().to_vec());
    // Digests (count + hash of everything) compare beyond the bounded captured bytes.
    if ml.bus().uart().out.capture_digest() != mr.bus().uart().out.capture_digest() {
        devices.push("serial");
    }
    if ml.bus().debugcon().out.capture_digest() != mr.bus().debugcon().out.capture_digest() {
        devices.push("debugcon");
    }
    if ml.bus().post_code() != mr.bus().post_code() {
        devices.push("post");
    }
    if ml.bus().vga().cursor() != mr.bus().vga().cursor() {
        devices.push("cursor");
    }
    let stop_differs = ol.stop != or.stop;
    Comparison {
        left_name: names.0,
        right_name: names.1,
        left: ol,
        right: or,
        masked_flags: mask,
        regs,
        mem,
        mem_bytes,
        devices,
        serial,
        debugcon,
        stop_differs,
    }
}

impl Comparison {
    pub fn is_identical(&self) -> bool {
        self.regs.is_empty() && self.mem_bytes == 0 && self.devices.is_empty() && !self.stop_differs
    }

    /// The kinds of difference, for checking that a minimised program still shows "the same"
    /// divergence: register field names, `memory`, device names and `stop`.
    pub fn signature(&self) -> Vec<String> {
        let mut s: Vec<String> = self.regs.iter().map(|d| d.field.clone()).collect();
        if self.mem_bytes != 0 {
            s.push("memory".into());
        }
        s.extend(self.devices.iter().map(|d| d.to_string()));
        if self.stop_differs {
            s.push("stop".into());
        }
        s
    }
}

fn show_bytes(b: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&b[..b.len().min(200)]).escape_debug().collect();
    if b.len() > 200 {
        format!("\"{shown}\"... ({} bytes)", b.len())
    } else {
        format!("\"{shown}\"")
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, r) = (self.left_name, self.right_name);
        if self.stop_differs {
            writeln!(f, "stop reason differs: {l}: {} | {r}: {}", self.left.stop, self.right.stop)?;
        } else {
            writeln!(f, "both stopped: {}", self.left.stop)?;
        }
        if !self.regs.is_empty() {
            writeln!(f, "registers that differ ({l} -> {r}):")?;
            for d in &self.regs {
                writeln!(f, "  {d}")?;
            }
        }
        let undefined = self.masked_flags & !flags::RF;
        if undefined != 0 {
            writeln!(
                f,
                "masked: undefined flags [{}] and RF",
                picoqemu_core::cpu::flag_string(undefined)
                    .chars()
                    .filter(|c| c.is_uppercase())
                    .collect::<String>()
            )?;
        }
        if self.mem_bytes != 0 {
            writeln!(f, "memory differs in {} bytes:", self.mem_bytes)?;
            for m in &self.mem {
                writeln!(f, "  {m}")?;
            }
            if self.mem.len() == MAX_RANGES {
                writeln!(f, "  (only the first {MAX_RANGES} ranges are listed)")?;
            }
        }
        for d in &self.devices {
            match *d {
                "serial" => writeln!(
                    f,
                    "COM1 output differs: {l}: {} | {r}: {}",
                    show_bytes(&self.serial.0),
                    show_bytes(&self.serial.1)
                )?,
                "debugcon" => writeln!(
                    f,
                    "port 0xE9 output differs: {l}: {} | {r}: {}",
                    show_bytes(&self.debugcon.0),
                    show_bytes(&self.debugcon.1)
                )?,
                other => writeln!(f, "device state differs: {other}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_merged_and_counted() {
        let a = vec![0u8; 4096];
        let mut b = a.clone();
        b[10] = 1;
        b[12] = 1;
        b[1000] = 7;
        let (r, n) = diff_ranges(&a, &b, 0x1000);
        assert_eq!(n, 3);
        assert_eq!(r, vec![MemRange { start: 0x100A, len: 3 }, MemRange { start: 0x13E8, len: 1 }]);
        assert_eq!(r[0].to_string(), "0100a..0100d (3 bytes)");
        let (r, n) = diff_ranges(&a, &a, 0);
        assert!(r.is_empty() && n == 0);
    }

    #[test]
    fn masked_bytes_and_flags_are_not_differences() {
        let a = [0u8, 1, 2, 3, 4, 5];
        let b = [0u8, 1, 0x12, 3, 5, 5];
        let all = byte_diffs(&a, &b, &[(0, 6)], |_| 0, 8);
        assert_eq!(all, vec![(2, 2, 0x12), (4, 4, 5)]);
        assert_eq!(byte_diffs(&a, &b, &[(0, 6)], |i| if i == 2 { 0x10 } else { 0 }, 8), vec![(4, 4, 5)]);
        assert_eq!(byte_diffs(&a, &b, &[(0, 3)], |_| 0, 8).len(), 1);
        assert_eq!(byte_diffs(&a, &b, &[(0, 6)], |_| 0, 1).len(), 1);
        let s = CpuState { eflags: flags::FIXED | flags::CF, ..CpuState::default() };
        let t = CpuState { eflags: flags::FIXED, ..CpuState::default() };
        assert_eq!(state_diff(&s, &t, flags::CF), vec![]);
        assert_eq!(state_diff(&s, &t, 0).len(), 1);
    }

    #[test]
    fn range_list_is_capped() {
        let a = vec![0u8; 8192];
        let b: Vec<u8> = (0..8192).map(|i| if i % 64 == 0 { 1 } else { 0 }).collect();
        let (r, n) = diff_ranges(&a, &b, 0);
        assert_eq!(r.len(), MAX_RANGES);
        assert_eq!(n, 128);
    }
}
