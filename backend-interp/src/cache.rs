//! The decoded-instruction cache: predecoded blocks keyed by the physical address of their
//! first instruction, stored per 4 KiB page of guest RAM.
//!
//! A block is a run of up to [`MAX_BLOCK`] instructions that ends at a control transfer (or
//! another instruction that must end a block), before a REP string instruction (which is a
//! block of its own), or at the page end; an instruction that crosses a page boundary is
//! never cached. Each cached page records the 64-byte lines its blocks were decoded from
//! ([`crate::pages::LINE`]) and keeps a copy of those lines:
//! * during a run, a store to one of those lines marks the page dirty (`PG_DIRTY`) and the
//!   page's blocks are dropped as soon as the current instruction retires (self-modifying
//!   code); stores to the page's other lines (data next to code) leave the blocks alone;
//! * at the start of every run the copied lines are compared with RAM, so writes made between
//!   runs by anyone (loaders, test harnesses, the other backend) are noticed too.
use std::cell::Cell;

use crate::op::Op;
use crate::pages::{line_mask, LINE};

/// Longest block, in instructions.
pub const MAX_BLOCK: usize = 32;
const PAGE: usize = 4096;

#[derive(Debug, Clone)]
struct BlockRef {
    start: u32,
    len: u16,
    /// Bytes covered by the block (for the CS-limit check at entry).
    bytes: u16,
    /// Guest instructions the block retires when run to its end (fused ops count twice).
    insns: u16,
    /// Compiled-tier state (`jit`): starts counted so far, `TIER_NO`, or `TIER_COMPILED | id`.
    tier: Cell<u32>,
}

struct PageCache {
    /// Block number + 1 for each page offset where a block starts, 0 where none does.
    index: Box<[u16; PAGE]>,
    blocks: Vec<BlockRef>,
    ops: Vec<Op>,
    /// The lines the blocks were decoded from ([`line_mask`]).
    lines: u64,
    /// Those lines' bytes as decoded (other lines are stale).
    snapshot: Box<[u8; PAGE]>,
}

impl PageCache {
    /// True when every code line still holds the bytes its blocks were decoded from.
    fn unchanged(&self, page: &[u8]) -> bool {
        let mut m = self.lines;
        while m != 0 {
            let l = m.trailing_zeros() as usize * LINE;
            if self.snapshot[l..l + LINE] != page[l..l + LINE] {
                return false;
            }
            m &= m - 1;
        }
        true
    }

    /// Adds the lines of `mask` (copying their bytes from `page`).
    fn add_lines(&mut self, mask: u64, page: &[u8]) {
        let mut m = mask & !self.lines;
        while m != 0 {
            let l = m.trailing_zeros() as usize * LINE;
            self.snapshot[l..l + LINE].copy_from_slice(&page[l..l + LINE]);
            m &= m - 1;
        }
        self.lines |= mask;
    }
}

/// All cached pages.
#[derive(Default)]
pub struct CodeCache {
    pages: Vec<Option<Box<PageCache>>>,
    /// Indices of the pages that are `Some`.
    live: Vec<usize>,
    ram_len: usize,
    a20: u32,
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache").field("live_pages", &self.live.len()).finish()
    }
}

impl CodeCache {
    /// Drops every page whose code lines changed since they were decoded (or everything when
    /// the RAM size or the A20 mode changed). Returns the pages that stay cached.
    pub fn sync(&mut self, ram: &[u8], a20: u32) -> &[usize] {
        if ram.len() != self.ram_len || a20 != self.a20 {
            self.pages.clear();
            self.pages.resize_with(ram.len() / PAGE, || None);
            self.live.clear();
            self.ram_len = ram.len();
            self.a20 = a20;
        }
        let pages = &mut self.pages;
        self.live.retain(|&pg| {
            let same = match &pages[pg] {
                Some(pc) => pc.unchanged(&ram[pg * PAGE..(pg + 1) * PAGE]),
                None => false,
            };
            if !same {
                pages[pg] = None;
            }
            same
        });
        &self.live
    }

    /// The code lines of cached page `pg` (0 when it holds no blocks).
    pub fn code_lines(&self, pg: usize) -> u64 {
        self.pages.get(pg).and_then(Option::as_ref).map_or(0, |pc| pc.lines)
    }

    /// Every cached page with its code lines.
    pub fn code_pages(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.live.iter().map(|&pg| (pg, self.code_lines(pg)))
    }

    /// Drops the blocks of page `pg`.
    pub fn invalidate(&mut self, pg: usize) {
        if let Some(slot) = self.pages.get_mut(pg) {
            if slot.take().is_some() {
                self.live.retain(|&p| p != pg);
            }
        }
    }

    /// The block starting at physical address `phys`: its ops, the bytes it covers, the
    /// instructions it retires and its compiled-tier state.
    #[inline(always)]
    pub fn lookup(&self, phys: usize) -> Option<(&[Op], u32, u64, &Cell<u32>)> {
        let pc = self.pages.get(phys / PAGE)?.as_ref()?;
        let id = pc.index[phys % PAGE];
        if id == 0 {
            return None;
        }
        let b = &pc.blocks[id as usize - 1];
        Some((
            &pc.ops[b.start as usize..b.start as usize + b.len as usize],
            b.bytes as u32,
            b.insns as u64,
            &b.tier,
        ))
    }

    /// Adds the code lines `mask` of the page holding `phys` (a compiled region read them from
    /// `ram`) to the page's code lines. `None` when the page has no cached blocks.
    pub fn add_code(&mut self, phys: usize, mask: u64, ram: &[u8]) -> Option<()> {
        let pg = phys / PAGE;
        let pc = self.pages.get_mut(pg)?.as_mut()?;
        pc.add_lines(mask, ram.get(pg * PAGE..(pg + 1) * PAGE)?);
        Some(())
    }

    /// Forgets every block's compiled code (the code buffer was emptied); blocks count their
    /// starts again.
    pub fn reset_tiers(&mut self) {
        for &pg in &self.live {
            if let Some(pc) = &self.pages[pg] {
                for b in &pc.blocks {
                    b.tier.set(0);
                }
            }
        }
    }

    /// Stores a block of `ops` (covering `bytes` bytes, retiring `insns` instructions)
    /// starting at `phys`. `ram` is the RAM the block was decoded from (for the page
    /// snapshot). Returns the block's code-line mask, or `None` when the page is not
    /// cacheable (beyond RAM).
    pub fn insert(&mut self, phys: usize, ops: &[Op], bytes: u32, insns: u16, ram: &[u8]) -> Option<u64> {
        let pg = phys / PAGE;
        if pg >= self.pages.len()
            || ops.is_empty()
            || self.pages[pg].as_ref().is_some_and(|p| p.blocks.len() >= 0xFFFE)
        {
            return None;
        }
        let slot = &mut self.pages[pg];
        if slot.is_none() {
            *slot = Some(Box::new(PageCache {
                index: Box::new([0; PAGE]),
                blocks: Vec::new(),
                ops: Vec::new(),
                lines: 0,
                snapshot: Box::new([0u8; PAGE]),
            }));
            self.live.push(pg);
        }
        let pc = slot.as_mut()?;
        let mask = line_mask(phys % PAGE, (bytes as usize).max(1));
        pc.add_lines(mask, &ram[pg * PAGE..(pg + 1) * PAGE]);
        let start = pc.ops.len() as u32;
        pc.ops.extend_from_slice(ops);
        pc.blocks.push(BlockRef {
            start,
            len: ops.len() as u16,
            bytes: bytes as u16,
            insns,
            tier: Cell::new(0),
        });
        pc.index[phys % PAGE] = pc.blocks.len() as u16;
        Some(mask)
    }

    /// Number of cached pages.
    pub fn live_pages(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Flow;

    fn op() -> Op {
        Op::new(|_, _| Flow::Next, 1)
    }

    #[test]
    fn insert_lookup_invalidate() {
        let ram = vec![0u8; 0x11_0000];
        let mut c = CodeCache::default();
        c.sync(&ram, u32::MAX);
        assert!(c.lookup(0x1234).is_none());
        assert_eq!(c.insert(0x1234, &[op(), op()], 2, 2, &ram), Some(1 << (0x234 / 64)));
        assert_eq!(c.lookup(0x1234).map(|(o, b, _, _)| (o.len(), b)), Some((2, 2)));
        c.invalidate(1);
        assert!(c.lookup(0x1234).is_none());
        assert_eq!(c.live_pages(), 0);
    }

    #[test]
    fn sync_drops_pages_changed_between_runs() {
        let mut ram = vec![0u8; 0x11_0000];
        let mut c = CodeCache::default();
        c.sync(&ram, u32::MAX);
        c.insert(0x2000, &[op()], 1, 1, &ram);
        c.insert(0x5000, &[op()], 1, 1, &ram);
        ram[0x2FFF] = 1;
        // Data next to the code: the page stays cached.
        assert_eq!(c.sync(&ram, u32::MAX), &[2, 5]);
        ram[0x2000] = 1;
        assert_eq!(c.sync(&ram, u32::MAX), &[5]);
        assert!(c.lookup(0x2000).is_none());
        assert!(c.lookup(0x5000).is_some());
        c.sync(&ram, 0xF_FFFF);
        assert!(c.lookup(0x5000).is_none());
    }

    #[test]
    fn a_block_decoded_later_adds_its_lines_as_they_are_then() {
        let mut ram = vec![0u8; 0x11_0000];
        let mut c = CodeCache::default();
        c.sync(&ram, u32::MAX);
        c.insert(0x2000, &[op()], 1, 1, &ram);
        ram[0x2100] = 7; // data, then code decoded from it
        c.insert(0x2100, &[op()], 70, 1, &ram);
        assert_eq!(c.code_lines(2), 1 | 0b1100 << 2);
        assert_eq!(c.sync(&ram, u32::MAX), &[2]);
        ram[0x2145] = 1;
        assert!(c.sync(&ram, u32::MAX).is_empty());
        assert_eq!(c.code_lines(2), 0);
    }
}
