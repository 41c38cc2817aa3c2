//! The page-flag table: one byte of `PG_*` flags per 4 KiB page, which the interpreter checks
//! on memory accesses and compiled code indexes directly, and for pages holding decoded code
//! a mask of the 64-byte lines that code came from ([`LINE`]): a store to a code page only
//! counts as self-modifying code when it hits one of those lines, so data next to code (as
//! compilers lay it out) costs a mask test, not a re-decode.
//!
//! Compiled code trusts one invariant for memory safety: it reads and writes guest RAM at
//! `ram + linear` without a bounds check for every page whose flag byte lets it (0, or only
//! `PG_CODE`/`PG_DIRTY` for reads), for linear pages up to [`JIT_PAGES`]. So the table must
//! cover [`JIT_PAGES`] pages and every page at or beyond the end of RAM must carry
//! [`PG_SLOW`]. [`PageFlags::build`] establishes that; neither [`PageFlags`] nor the run-time
//! view [`Pages`] has a way to shrink the table or clear `PG_SLOW`, so it holds for as long as
//! the table lives.
use std::ops::Index;

use crate::jit::JIT_PAGES;

/// Page flag: the page is MMIO, not RAM.
pub const PG_MMIO: u8 = 1;
/// Page flag: the decode cache holds instructions from this page.
pub const PG_CODE: u8 = 2;
/// Page flag: a code page was written; its cached instructions must be dropped.
pub const PG_DIRTY: u8 = 4;
/// Page flag: not plain RAM for compiled code (beyond RAM, or above 1 MiB with A20 wrapping),
/// and a RAM page holding a watched byte (see `watch.rs`): the interpreter's reads and writes
/// of such a page take the slow path, which checks the watchpoints.
pub const PG_SLOW: u8 = 8;

/// Bytes per code line: a page's code mask has one bit per line (64 lines per page).
pub const LINE: usize = 64;

/// The code-line mask of bytes `[off, off + len)` of a page (`len` > 0; clamped to the page).
#[inline(always)]
pub fn line_mask(off: usize, len: usize) -> u64 {
    let first = (off / LINE).min(63);
    let last = ((off + len - 1) / LINE).min(63);
    (u64::MAX >> (63 - last)) & (u64::MAX << first)
}

/// The flag table of one machine layout (see the module doc for its invariant).
#[derive(Debug, Clone)]
pub struct PageFlags {
    flags: Vec<u8>,
    /// Per page: the lines decoded code came from (meaningful while `PG_CODE` is set).
    lines: Vec<u64>,
    /// Pages of RAM; every page from here on is `PG_SLOW`.
    ram_pages: usize,
}

impl Default for PageFlags {
    /// A table for no RAM at all: every page slow.
    fn default() -> Self {
        PageFlags { flags: vec![PG_SLOW; JIT_PAGES], lines: vec![0; JIT_PAGES], ram_pages: 0 }
    }
}

impl PageFlags {
    /// The table for `ram_len` bytes of RAM: pages beyond RAM, and above 1 MiB when
    /// `a20_wrap`, are `PG_SLOW`; pages touching one of `mmio` (`(base, len)`) are `PG_MMIO`.
    #[cfg(test)]
    pub fn build(ram_len: usize, a20_wrap: bool, mmio: &[(u64, u64)]) -> PageFlags {
        let mut t = PageFlags { flags: Vec::new(), lines: Vec::new(), ram_pages: 0 };
        t.rebuild(ram_len, a20_wrap, mmio);
        t
    }

    /// [`PageFlags::build`] in place, reusing the allocation.
    pub fn rebuild(&mut self, ram_len: usize, a20_wrap: bool, mmio: &[(u64, u64)]) {
        let ram_pages = ram_len / 4096;
        self.flags.clear();
        self.flags.resize(ram_pages, 0);
        self.flags.resize(ram_pages.max(JIT_PAGES), PG_SLOW);
        self.lines.clear();
        self.lines.resize(self.flags.len(), 0);
        self.ram_pages = ram_pages;
        if a20_wrap {
            for f in self.flags.iter_mut().skip(0x100) {
                *f |= PG_SLOW;
            }
        }
        for &(base, len) in mmio {
            let end = base.saturating_add(len);
            let mut p = base / 4096;
            while p * 4096 < end && (p as usize) < self.flags.len() {
                self.flags[p as usize] |= PG_MMIO;
                p += 1;
            }
        }
    }

    /// Page `pg` holds decoded code from the lines in `mask`: sets `PG_CODE` and the lines.
    pub fn mark_code(&mut self, pg: usize, mask: u64) {
        self.flags[pg] |= PG_CODE;
        self.lines[pg] |= mask;
    }

    /// Adds `bits` to page `pg`'s flags.
    pub fn set(&mut self, pg: usize, bits: u8) {
        self.flags[pg] |= bits;
    }

    /// The flags of every page.
    pub fn as_slice(&self) -> &[u8] {
        &self.flags
    }

    /// The view a run works with (same invariant, no allocation).
    pub fn view(&mut self) -> Pages<'_> {
        Pages { flags: &mut self.flags, lines: &mut self.lines, ram_pages: self.ram_pages }
    }
}

/// A run's mutable view of a [`PageFlags`]: flags can be read, and set or cleared except
/// `PG_SLOW`; it cannot be resized. Flag lookups cost what indexing a slice costs.
#[derive(Debug)]
pub struct Pages<'a> {
    flags: &'a mut [u8],
    lines: &'a mut [u64],
    ram_pages: usize,
}

impl Pages<'_> {
    /// Number of pages (at least [`JIT_PAGES`]).
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Pages of RAM the table describes (every later page is `PG_SLOW`).
    #[inline(always)]
    pub fn ram_pages(&self) -> usize {
        self.ram_pages
    }

    /// Adds `bits` to page `pg`'s flags.
    #[inline(always)]
    pub fn set(&mut self, pg: usize, bits: u8) {
        self.flags[pg] |= bits;
    }

    /// Removes `bits` (never `PG_SLOW`) from page `pg`'s flags.
    #[inline(always)]
    pub fn clear(&mut self, pg: usize, bits: u8) {
        self.flags[pg] &= !(bits & !PG_SLOW);
    }

    /// Page `pg` holds decoded code from the lines in `mask`: sets `PG_CODE` and the lines.
    #[inline]
    pub fn mark_code(&mut self, pg: usize, mask: u64) {
        self.flags[pg] |= PG_CODE;
        self.lines[pg] |= mask;
    }

    /// Page `pg`'s code is gone: clears `PG_CODE` and its lines.
    #[inline]
    pub fn forget_code(&mut self, pg: usize) {
        self.flags[pg] &= !PG_CODE;
        self.lines[pg] = 0;
    }

    /// True when page `pg` holds decoded code from a line of `mask`.
    #[inline(always)]
    pub fn code_hit(&self, pg: usize, mask: u64) -> bool {
        self.flags[pg] & PG_CODE != 0 && self.lines[pg] & mask != 0
    }

    /// The flags of pages `[first, last]`.
    #[inline(always)]
    pub fn range(&self, first: usize, last: usize) -> &[u8] {
        &self.flags[first..=last]
    }

    /// The code-line masks of every page, read-only (compiled code reads them through this).
    #[inline(always)]
    pub fn lines(&self) -> &[u64] {
        self.lines
    }

    /// The flags of every page, read-only (compiled code reads them through this).
    #[inline(always)]
    pub fn as_slice(&self) -> &[u8] {
        self.flags
    }
}

impl Index<usize> for Pages<'_> {
    type Output = u8;

    #[inline(always)]
    fn index(&self, pg: usize) -> &u8 {
        &self.flags[pg]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_ram_is_slow_and_stays_slow() {
        let mut t = PageFlags::build(0x4000, false, &[(0x1000, 0x10)]);
        assert_eq!(t.as_slice().len(), JIT_PAGES);
        assert_eq!(&t.as_slice()[..5], &[0, PG_MMIO, 0, 0, PG_SLOW]);
        assert!(t.as_slice()[4..].iter().all(|&f| f & PG_SLOW != 0));
        let mut v = t.view();
        v.set(5, PG_CODE);
        v.clear(5, 0xFF);
        v.clear(0, 0xFF);
        assert_eq!((v[5], v[0], v.ram_pages()), (PG_SLOW, 0, 4));
    }

    #[test]
    fn line_masks() {
        assert_eq!(line_mask(0, 1), 1);
        assert_eq!(line_mask(63, 2), 0b11);
        assert_eq!(line_mask(64, 64), 0b10);
        assert_eq!(line_mask(0, 4096), u64::MAX);
        assert_eq!(line_mask(4095, 1), 1 << 63);
        assert_eq!(line_mask(4000, 500), 0b11 << 62);
    }

    #[test]
    fn code_lines_are_tracked_per_page_and_reset_by_a_rebuild() {
        let mut t = PageFlags::build(0x4000, false, &[]);
        let mut v = t.view();
        v.mark_code(1, line_mask(0x100, 0x10));
        assert!(v.code_hit(1, line_mask(0x10F, 1)));
        assert!(!v.code_hit(1, line_mask(0x140, 4)));
        assert!(!v.code_hit(2, line_mask(0x100, 1)));
        v.forget_code(1);
        assert!(!v.code_hit(1, line_mask(0x100, 1)) && v[1] == 0);
        t.mark_code(3, 1);
        t.rebuild(0x4000, false, &[]);
        assert!(!t.view().code_hit(3, 1));
    }

    #[test]
    fn a20_wrap_slows_the_high_memory_area_and_big_ram_is_covered() {
        let t = PageFlags::build(0x20_0000, true, &[]);
        assert_eq!(t.as_slice().len(), 0x200);
        assert_eq!((t.as_slice()[0xFF], t.as_slice()[0x100], t.as_slice()[0x1FF]), (0, PG_SLOW, PG_SLOW));
        let d = PageFlags::default();
        assert!(d.as_slice().len() == JIT_PAGES && d.as_slice().iter().all(|&f| f == PG_SLOW));
    }
}
