//! Execution breakpoints of the interpreter and the kick handle that interrupts its runs.
//!
//! Breakpoints cost nothing while none is set and nothing on pages without one: a page that
//! holds a breakpoint is never cached (the run loop drops its blocks at run entry and never
//! builds new ones there), so every instruction on it is decoded and run alone through the
//! block-build path, which is where the linear address is compared. Cached blocks, chaining
//! and compiled loops never see such a page. Software and hardware kinds behave the same
//! here (no byte of guest memory changes) and there is no limit on their number.
use std::sync::atomic::{AtomicBool, Ordering};

use picoqemu_core::{Breakpoint, Kick};

/// The breakpoint set: linear addresses, and the physical pages they fall on for one run.
#[derive(Debug, Default, Clone)]
pub struct Breakpoints {
    /// Sorted, without duplicates.
    linear: Vec<u32>,
    /// Physical page numbers holding a breakpoint under the current run's A20 mask; sorted.
    pages: Vec<usize>,
}

impl Breakpoints {
    /// Replaces the set (both kinds are honoured the same way, any number of them).
    pub fn set(&mut self, bps: &[Breakpoint]) {
        self.linear = bps.iter().map(|b| b.linear).collect();
        self.linear.sort_unstable();
        self.linear.dedup();
        self.pages.clear();
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.linear.is_empty()
    }

    /// True when a breakpoint sits at `linear`.
    pub fn contains(&self, linear: u32) -> bool {
        self.linear.binary_search(&linear).is_ok()
    }

    /// Computes the physical pages of the breakpoints under `a20` and returns them.
    pub fn map_pages(&mut self, a20: u32) -> &[usize] {
        self.pages = self.linear.iter().map(|&l| ((l & a20) >> 12) as usize).collect();
        self.pages.sort_unstable();
        self.pages.dedup();
        &self.pages
    }

    /// True when physical page `pg` holds a breakpoint (after [`Breakpoints::map_pages`]).
    #[inline]
    pub fn on_page(&self, pg: usize) -> bool {
        !self.pages.is_empty() && self.pages.binary_search(&pg).is_ok()
    }
}

/// The interpreter's [`Kick`]: a flag the run loop reads at run entry, at every time check
/// (each 64 Ki instructions) and while halted; reading it clears it, so one kick interrupts
/// one run.
#[derive(Debug, Default)]
pub struct KickFlag(AtomicBool);

impl KickFlag {
    /// True (once) when a kick arrived since the last call.
    #[inline]
    pub fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::AcqRel)
    }
}

impl Kick for KickFlag {
    fn kick(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoqemu_core::BreakpointKind;

    fn bp(linear: u32) -> Breakpoint {
        Breakpoint { linear, kind: BreakpointKind::Software }
    }

    #[test]
    fn set_maps_pages_under_a20() {
        let mut b = Breakpoints::default();
        assert!(b.is_empty());
        b.set(&[bp(0x10_0010), bp(0x7C00), bp(0x7C00)]);
        assert!(b.contains(0x7C00) && b.contains(0x10_0010) && !b.contains(0x10));
        assert_eq!(b.map_pages(u32::MAX), &[7, 0x100]);
        assert!(b.on_page(0x100) && !b.on_page(0));
        assert_eq!(b.map_pages(0xF_FFFF), &[0, 7]);
        assert!(b.on_page(0));
        b.set(&[]);
        assert!(b.is_empty() && !b.on_page(7));
    }

    #[test]
    fn one_kick_one_take() {
        let k = KickFlag::default();
        assert!(!k.take());
        k.kick();
        k.kick();
        assert!(k.take());
        assert!(!k.take());
    }
}
