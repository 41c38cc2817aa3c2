//! Operand access and addressing: the execution context [`Ctx`] handlers run against, with
//! effective-address computation, segment-limit checks, the RAM fast path, MMIO routing,
//! self-modifying-code tracking on stores, the stack, and port I/O.
//!
//! Physical addresses are linear addresses (no 1 MiB wrap) unless the machine enables A20
//! wrapping. Addresses in an MMIO page or beyond RAM go to the bus (unclaimed ones read as
//! all ones and drop writes).
use picoqemu_core::{HistoryRing, IoAction, IoBus, StopReason, Watchpoint};

use crate::cpu::{Cpu, ESP, SS};
use crate::flow::Flow;

pub use crate::pages::{line_mask, Pages, PG_CODE, PG_DIRTY, PG_MMIO, PG_SLOW};

/// Everything an instruction handler can touch during one run.
pub struct Ctx<'m> {
    pub c: Cpu,
    pub ram: &'m mut [u8],
    pub bus: &'m mut IoBus,
    /// One flag byte per 4 KiB page of RAM (`PG_*`).
    pub pages: Pages<'m>,
    /// `0xFFFF_FFFF`, or `0x000F_FFFF` with A20 wrapping.
    pub a20: u32,
    /// Set when the current block must end after this instruction (SMC, a stop request).
    pub brk: bool,
    /// Some page got `PG_DIRTY`.
    pub dirty: bool,
    /// A device asked to stop the run (debug exit) after this instruction.
    pub stop: Option<StopReason>,
    /// Instructions retired since the backend was created.
    pub icount: u64,
    /// How many REP iterations the current string instruction may run (budget).
    pub rep_budget: u64,
    /// Interrupts delivered during the current step (an INT n suppresses the TF trap).
    pub delivered_int: u32,
    /// Some page is MMIO (otherwise reads skip the page-flag lookup).
    pub mmio_any: bool,
    /// Instructions of the running block retired before the current op (`Op::idx`), so that
    /// an MMIO access knows the exact instruction count. Kept up to date only while some
    /// device claims MMIO (the step loop's tracking mode); 0 otherwise. Port I/O handlers
    /// pass their op's index themselves.
    pub op_idx: u32,
    /// The instruction count the bus's clock has been told about (`IoBus::retire`).
    pub told: u64,
    /// The run loop must look at the bus at the next instruction boundary: a device was
    /// accessed (its events or the INTR line may have changed) or the guest set IF or began
    /// an interrupt shadow. Whoever sets it also sets `brk`.
    pub attn: bool,
    /// The data watchpoints (empty: none; their pages are `PG_SLOW`, so only the slow paths
    /// look at this).
    pub watches: &'m [Watchpoint],
    /// The last stretches of code run (`Backend::history`): one entry per block run.
    pub hist: HistoryRing,
}

/// Returns the linear address of a checked memory operand, or returns the segment fault
/// from the calling handler.
macro_rules! lin {
    ($cx:expr, $op:expr, $w:expr) => {
        match $cx.mem_lin::<{ $w }>($op) {
            Some(l) => l,
            None => return $crate::operand::seg_fault($op.seg),
        }
    };
}
pub(crate) use lin;

/// #SS for the stack segment, #GP otherwise.
#[inline(always)]
pub fn seg_fault(seg: u8) -> Flow {
    Flow::Fault(if seg == SS { 12 } else { 13 })
}

impl<'m> Ctx<'m> {
    pub fn new(c: Cpu, ram: &'m mut [u8], bus: &'m mut IoBus, pages: Pages<'m>, a20: u32) -> Self {
        Ctx {
            c,
            ram,
            bus,
            pages,
            a20,
            brk: false,
            dirty: false,
            stop: None,
            icount: 0,
            rep_budget: u64::MAX,
            delivered_int: 0,
            mmio_any: true,
            op_idx: 0,
            told: 0,
            attn: false,
            watches: &[],
            hist: HistoryRing::default(),
        }
    }

    /// Linear address of a `W`-byte access at `seg:off`, or `None` past the segment limit.
    #[inline(always)]
    pub fn seg_lin<const W: u8>(&self, seg: u8, off: u32) -> Option<u32> {
        let s = &self.c.segs[seg as usize];
        if off as u64 + (W as u64 - 1) > s.limit as u64 {
            None
        } else {
            Some(s.base.wrapping_add(off))
        }
    }

    /// Like [`Ctx::seg_lin`] with a runtime size.
    #[inline]
    pub fn seg_lin_n(&self, seg: u8, off: u32, n: u32) -> Option<u32> {
        let s = &self.c.segs[seg as usize];
        if off as u64 + (n as u64).saturating_sub(1) > s.limit as u64 {
            None
        } else {
            Some(s.base.wrapping_add(off))
        }
    }

    #[inline(always)]
    fn phys(&self, lin: u32) -> usize {
        (lin & self.a20) as usize
    }

    /// Reads `W` bytes at linear address `lin`.
    #[inline(always)]
    pub fn rd<const W: u8>(&mut self, lin: u32) -> u32 {
        let p = self.phys(lin);
        let w = W as usize;
        if (p & 0xFFF) <= 0x1000 - w
            && p + w <= self.ram.len()
            && (!self.mmio_any || self.pages[p >> 12] & (PG_MMIO | PG_SLOW) == 0)
        {
            match W {
                1 => self.ram[p] as u32,
                2 => u16::from_le_bytes([self.ram[p], self.ram[p + 1]]) as u32,
                _ => u32::from_le_bytes([self.ram[p], self.ram[p + 1], self.ram[p + 2], self.ram[p + 3]]),
            }
        } else {
            self.rd_slow(lin, w)
        }
    }

    #[cold]
    fn rd_slow(&mut self, lin: u32, w: usize) -> u32 {
        let p = self.phys(lin);
        if (p & 0xFFF) + w > 0x1000 || self.phys(lin.wrapping_add(w as u32 - 1)) != p + w - 1 {
            let mut v = 0;
            for i in 0..w {
                v |= self.rd::<1>(lin.wrapping_add(i as u32)) << (8 * i);
            }
            return v;
        }
        let mut buf = [0u8; 4];
        if p + w <= self.ram.len() && self.pages[p >> 12] & PG_MMIO == 0 {
            buf[..w].copy_from_slice(&self.ram[p..p + w]);
            self.check_watches(p, w, false);
        } else {
            self.sync_time(self.op_idx);
            self.bus.mmio_read(p as u64, &mut buf[..w]);
            self.bus_accessed();
        }
        u32::from_le_bytes(buf)
    }

    /// Writes the low `W` bytes of `v` at linear address `lin`.
    #[inline(always)]
    pub fn wr<const W: u8>(&mut self, lin: u32, v: u32) {
        let p = self.phys(lin);
        let w = W as usize;
        if (p & 0xFFF) <= 0x1000 - w && p + w <= self.ram.len() && self.pages[p >> 12] == 0 {
            match W {
                1 => self.ram[p] = v as u8,
                2 => self.ram[p..p + 2].copy_from_slice(&(v as u16).to_le_bytes()),
                _ => self.ram[p..p + 4].copy_from_slice(&v.to_le_bytes()),
            }
        } else {
            self.wr_slow(lin, w, v)
        }
    }

    #[cold]
    fn wr_slow(&mut self, lin: u32, w: usize, v: u32) {
        let p = self.phys(lin);
        if (p & 0xFFF) + w > 0x1000 || self.phys(lin.wrapping_add(w as u32 - 1)) != p + w - 1 {
            for i in 0..w {
                self.wr::<1>(lin.wrapping_add(i as u32), v >> (8 * i));
            }
            return;
        }
        let bytes = v.to_le_bytes();
        if p + w <= self.ram.len() && self.pages[p >> 12] & PG_MMIO == 0 {
            self.ram[p..p + w].copy_from_slice(&bytes[..w]);
            self.note_ram_write(p, w);
            self.check_watches(p, w, true);
        } else {
            self.sync_time(self.op_idx);
            if let IoAction::Stop(s) = self.bus.mmio_write(p as u64, &bytes[..w]) {
                self.request_stop(s);
            }
            self.bus_accessed();
        }
    }

    /// Notes a store of `w` bytes (within one page) at physical address `p`: when it hits a
    /// line decoded code came from, the page's code is dropped once the instruction retires.
    #[inline]
    pub fn note_ram_write(&mut self, p: usize, w: usize) {
        let pg = p >> 12;
        if self.pages.code_hit(pg, line_mask(p & 0xFFF, w)) {
            self.pages.clear(pg, PG_CODE);
            self.pages.set(pg, PG_DIRTY);
            self.dirty = true;
            self.brk = true;
        }
    }

    /// Tells the bus's clock about the instructions retired since it last heard, so that a
    /// device accessed now sees the exact time. `idx`: instructions of the running block
    /// before the current one (0 between blocks, where `icount` is exact).
    #[inline]
    pub fn sync_time(&mut self, idx: u32) {
        let now = self.icount + idx as u64;
        if now > self.told {
            self.bus.retire(now - self.told);
            self.told = now;
        }
    }

    /// After a device access: the block ends and the run loop looks at the bus's events and
    /// INTR line before the next instruction.
    #[inline]
    pub fn bus_accessed(&mut self) {
        self.attn = true;
        self.brk = true;
    }

    /// The guest set IF or started an interrupt shadow: look at INTR at the next boundary.
    #[inline]
    pub fn irq_window_changed(&mut self) {
        self.attn = true;
        self.brk = true;
    }

    /// Ends the run after the current instruction.
    pub fn request_stop(&mut self, s: StopReason) {
        if self.stop.is_none() {
            self.stop = Some(s);
        }
        self.brk = true;
    }

    /// A RAM access of `w` bytes at physical `p` on the slow path: a watchpoint it triggers
    /// ends the run after this instruction (`run.rs` fills in the next CS:IP).
    #[cold]
    fn check_watches(&mut self, p: usize, w: usize, write: bool) {
        let a20 = self.a20;
        let hit = self.watches.iter().find(|wp| {
            wp.triggers_on(write)
                && Watchpoint { linear: wp.linear & a20, ..**wp }.overlaps(p as u32, w as u32)
        });
        if let Some(wp) = hit {
            let (addr, kind) = (wp.linear, wp.kind);
            self.request_stop(StopReason::Watchpoint { cs: 0, ip: 0, addr, kind });
        }
    }

    /// Physical RAM range `[lin, lin+n)` when it is plain RAM in one piece with no MMIO, no
    /// watched page and, for a write, no line of decoded code (used by the REP fast paths).
    #[inline]
    pub fn plain_ram(&self, lin: u32, n: usize, for_write: bool) -> Option<usize> {
        let p = self.phys(lin);
        if n == 0 || p + n > self.ram.len() || (lin as u64 + n as u64 - 1) > self.a20 as u64 {
            return None;
        }
        let (first, last) = (p >> 12, (p + n - 1) >> 12);
        if !for_write {
            let slow = PG_MMIO | PG_SLOW;
            return self.pages.range(first, last).iter().all(|&f| f & slow == 0).then_some(p);
        }
        for pg in first..=last {
            let f = self.pages[pg];
            if f & !PG_CODE != 0 {
                return None;
            }
            let lo = p.max(pg << 12);
            let hi = (p + n).min((pg + 1) << 12);
            if self.pages.code_hit(pg, line_mask(lo & 0xFFF, hi - lo)) {
                return None;
            }
        }
        Some(p)
    }

    // ---- stack (real mode: SS is a 16-bit stack, SP wraps at 64 KiB) ----

    /// Pushes `W` bytes; `false` (nothing changed) on a stack-segment fault.
    #[inline(always)]
    pub fn push<const W: u8>(&mut self, v: u32) -> bool {
        let sp = self.c.regs[ESP as usize].wrapping_sub(W as u32) & 0xFFFF;
        match self.seg_lin::<W>(SS, sp) {
            Some(lin) => {
                self.wr::<W>(lin, v);
                self.c.set_r16(ESP, sp);
                true
            }
            None => false,
        }
    }

    /// Pops `W` bytes, or `None` (nothing changed) on a stack-segment fault.
    #[inline(always)]
    pub fn pop<const W: u8>(&mut self) -> Option<u32> {
        let sp = self.c.regs[ESP as usize] & 0xFFFF;
        let lin = self.seg_lin::<W>(SS, sp)?;
        let v = self.rd::<W>(lin);
        self.c.set_r16(ESP, sp.wrapping_add(W as u32));
        Some(v)
    }

    #[inline]
    pub fn pop_w(&mut self, w: u8) -> Option<u32> {
        if w == 4 {
            self.pop::<4>()
        } else {
            self.pop::<2>()
        }
    }

    // ---- port I/O ----

    /// IN from `port` by the instruction whose `Op::idx` is `idx` (for the exact time).
    pub fn pio_in(&mut self, port: u16, w: u8, idx: u8) -> u32 {
        let mut buf = [0u8; 4];
        self.sync_time(idx as u32);
        self.bus.pio_read(port, &mut buf[..w as usize]);
        self.bus_accessed();
        u32::from_le_bytes(buf)
    }

    /// OUT to `port` by the instruction whose `Op::idx` is `idx`.
    pub fn pio_out(&mut self, port: u16, w: u8, v: u32, idx: u8) {
        let bytes = v.to_le_bytes();
        self.sync_time(idx as u32);
        if let IoAction::Stop(s) = self.bus.pio_write(port, &bytes[..w as usize]) {
            self.request_stop(s);
        }
        self.bus_accessed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::DS;

    fn with_ctx(f: impl FnOnce(&mut Ctx)) {
        let mut ram = vec![0u8; 0x11_0000];
        let mut pages = crate::pages::PageFlags::build(ram.len(), false, &[]);
        let mut bus = IoBus::capturing();
        let mut cx = Ctx::new(Cpu::default(), &mut ram, &mut bus, pages.view(), u32::MAX);
        f(&mut cx);
    }

    #[test]
    fn word_at_ffff_faults_and_high_memory_is_reachable() {
        with_ctx(|cx| {
            assert!(cx.seg_lin::<2>(DS, 0xFFFF).is_none());
            assert!(cx.seg_lin::<1>(DS, 0xFFFF).is_some());
            cx.c.load_seg(DS, 0xFFFF);
            let lin = cx.seg_lin::<1>(DS, 0xFFFF).unwrap();
            assert_eq!(lin, 0x10_FFEF);
            cx.wr::<1>(lin, 0x5A);
            assert_eq!(cx.ram[0x10_FFEF], 0x5A);
            assert_eq!(cx.rd::<1>(lin), 0x5A);
        });
    }

    #[test]
    fn a20_wrap_and_page_crossing() {
        with_ctx(|cx| {
            cx.a20 = 0xF_FFFF;
            cx.wr::<2>(0xF_FFFF, 0xBBAA);
            assert_eq!((cx.ram[0xF_FFFF], cx.ram[0]), (0xAA, 0xBB));
            assert_eq!(cx.rd::<2>(0xF_FFFF), 0xBBAA);
            cx.a20 = u32::MAX;
            cx.wr::<4>(0x0FFE, 0x4433_2211);
            assert_eq!(cx.rd::<4>(0x0FFE), 0x4433_2211);
        });
    }

    #[test]
    fn code_line_write_marks_dirty_and_data_next_to_code_does_not() {
        with_ctx(|cx| {
            cx.pages.mark_code(1, line_mask(0x200, 0x40));
            cx.wr::<2>(0x1100, 1);
            cx.wr::<4>(0x1240, 1);
            assert_eq!(cx.pages[1], PG_CODE);
            assert!(!cx.dirty && !cx.brk);
            assert_eq!(cx.plain_ram(0x1100, 0x100, true), Some(0x1100));
            assert_eq!(cx.plain_ram(0x1100, 0x101, true), None);
            cx.wr::<2>(0x11FF, 1);
            assert_eq!(cx.pages[1], PG_DIRTY);
            assert!(cx.dirty && cx.brk);
        });
    }

    #[test]
    fn stack_push_pop_wraps_and_faults() {
        with_ctx(|cx| {
            cx.c.regs[ESP as usize] = 0;
            assert!(cx.push::<2>(0x1234));
            assert_eq!(cx.c.regs[ESP as usize], 0xFFFE);
            assert_eq!(cx.pop::<2>(), Some(0x1234));
            assert_eq!(cx.c.regs[ESP as usize], 0);
            cx.c.regs[ESP as usize] = 1;
            assert!(!cx.push::<2>(0));
            assert_eq!(cx.c.regs[ESP as usize], 1);
        });
    }
}
