//! The decoded-instruction cache: predecoded blocks keyed by the physical address of their
//! first instruction, stored per 4 KiB page of guest RAM.
//!
//! A block is a run of up to [`MAX_BLOCK`] instructions that ends at a control transfer (or
//! another instruction that must end a block), before a REP string instruction (which is a
//! block of its own), or at the page end; an instruction that crosses a page boundary is
//! never cached. Each cached page keeps a copy of the bytes it was decoded from:
//! * during a run, a store to a page holding code marks it dirty (`PG_DIRTY`) and the page's
//!   blocks are dropped as soon as the current instruction retires (self-modifying code);
//! * at the start of every run the copies are compared with RAM, so writes made between runs
//!   by anyone (loaders, test harnesses, the other backend) are noticed too.
use std::cell::Cell;

use crate::op::Op;

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
    snapshot: Box<[u8; PAGE]>,
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
    /// Drops every page whose bytes changed since it was decoded (or everything when the
    /// RAM size or the A20 mode changed). Returns the pages that stay cached.
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
                Some(pc) => pc.snapshot[..] == ram[pg * PAGE..(pg + 1) * PAGE],
                None => false,
            };
            if !same {
                pages[pg] = None;
            }
            same
        });
        &self.live
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
    /// snapshot). Returns false when the page is not cacheable (beyond RAM).
    pub fn insert(&mut self, phys: usize, ops: &[Op], bytes: u32, insns: u16, ram: &[u8]) -> bool {
        let pg = phys / PAGE;
        if pg >= self.pages.len()
            || ops.is_empty()
            || self.pages[pg].as_ref().is_some_and(|p| p.blocks.len() >= 0xFFFE)
        {
            return false;
        }
        let slot = &mut self.pages[pg];
        if slot.is_none() {
            let mut snapshot = Box::new([0u8; PAGE]);
            snapshot.copy_from_slice(&ram[pg * PAGE..(pg + 1) * PAGE]);
            *slot = Some(Box::new(PageCache {
                index: Box::new([0; PAGE]),
                blocks: Vec::new(),
                ops: Vec::new(),
                snapshot,
            }));
            self.live.push(pg);
        }
        let Some(pc) = slot.as_mut() else { return false };
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
        true
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
        assert!(c.insert(0x1234, &[op(), op()], 2, 2, &ram));
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
        assert_eq!(c.sync(&ram, u32::MAX), &[5]);
        assert!(c.lookup(0x2000).is_none());
        assert!(c.lookup(0x5000).is_some());
        c.sync(&ram, 0xF_FFFF);
        assert!(c.lookup(0x5000).is_none());
    }
}
