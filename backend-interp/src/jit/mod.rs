//! The compiled tier: hot loops become host x86-64 code.
//!
//! The interpreter counts how often each cached block starts; a block that reaches the
//! threshold ([`JitMode`]) is handed to `translate.rs` with the rest of its page: `region.rs`
//! finds the loop region it heads (through the last branch back to it, inner branches and
//! blocks included) and `translate.rs` either produces host code or declines (then the block
//! stays interpreted for good). The region's code lines join the page's code lines, so a
//! store to any of them drops it like any cached block. Compiled code runs passes of its
//! loop until control leaves the region (a branch out, an instruction it leaves to the
//! interpreter), the instruction budget would be overrun, or a memory access needs the
//! interpreter (MMIO, a page holding code, a segment-limit overrun, A20 wrap): then it
//! returns to the step loop with EIP at the first instruction not run, so the interpreter
//! resumes exactly there. A region that keeps leaving early is handed back to the
//! interpreter. Results are identical to the interpreter's, flags included, except flags the
//! SDM leaves undefined, which come from the host CPU (as under KVM's emulator);
//! `docs/known-differences.md` lists that.
//!
//! Only built for x86-64 Linux hosts with BMI2; elsewhere [`JitTier::new`] returns a tier that
//! never compiles. `exec.rs` holds the `unsafe` code of this crate (the W^X buffer and the
//! `unsafe fn` that calls a block); the one call of it is in [`JitTier::run`], which discharges its
//! contract with the types it is given: a [`Pages`] view (every page beyond RAM is `PG_SLOW` by
//! construction) and the RAM slice it checks that view against.
mod exec;
mod region;
mod translate;

use crate::cpu::Cpu;
use crate::pages::{line_mask, Pages, PG_CODE, PG_MMIO, PG_SLOW};
use exec::{TABLES, T_READ, T_WRAP, T_WRITE, W_CODE};

pub use exec::JitCtx;

/// Pages the page-flag table must cover for compiled code: every linear address a 16-bit
/// offset can reach from a segment base up to 0xFFFF0 (plus a 4-byte access), 0x10FFF3.
pub const JIT_PAGES: usize = 0x111;

/// Bytes of host code kept at once; when full, every compiled block is dropped.
const CODE_BYTES: usize = 4 << 20;

/// When blocks get compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JitMode {
    /// Never: pure interpreter.
    Off,
    /// After a block started [`HOT_THRESHOLD`] times (the default).
    #[default]
    Hot,
    /// The first time a block runs (for testing the tier on short programs).
    Eager,
}

/// Starts of a block before it is compiled in [`JitMode::Hot`].
pub const HOT_THRESHOLD: u32 = 64;

/// Block tier value: translation was declined.
pub const TIER_NO: u32 = u32::MAX;
/// Block tier bit: compiled, the low bits are the entry id.
pub const TIER_COMPILED: u32 = 0x8000_0000;

/// What the tier did so far (cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Blocks translated to host code.
    pub compiled: u64,
    /// Hot blocks the translator declined.
    pub declined: u64,
    /// Entries into compiled code.
    pub runs: u64,
    /// Guest instructions retired by compiled code.
    pub instructions: u64,
    /// Times the code buffer filled up and was emptied.
    pub flushes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    off: usize,
    /// Instructions of the region.
    insns: u32,
    /// Bytes of guest code it covers.
    bytes: u32,
    /// Runs that left early (a leave or a failed memory check) having retired fewer than
    /// [`USEFUL_RUN`] instructions (or the whole region).
    early: u32,
}

/// Early exits after which a compiled region is given back to the interpreter.
const MAX_EARLY_EXITS: u32 = 16;
/// Instructions a run must retire before leaving early to be worth entering compiled code.
const USEFUL_RUN: u64 = 16;

/// What [`JitTier::compile`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOutcome {
    /// The tier value to store in the head block: `TIER_COMPILED | id`, or [`TIER_NO`].
    pub tier: u32,
    /// The code buffer was emptied on the way (every other block's compiled tier is stale).
    pub flushed: bool,
    /// Bytes of guest code the compiled loop covers from its start (0 when declined).
    pub bytes: u32,
    /// The code lines (64-byte lines of the page) the region was translated from.
    pub lines: u64,
}

/// The outcome of [`JitTier::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitRun {
    /// Guest instructions retired (0: the first instruction needs the interpreter).
    pub retired: u64,
    /// The block should stay interpreted from now on (it keeps exiting early).
    pub demote: bool,
    /// Bytes of guest code the region covers (for the history).
    pub bytes: u32,
}

/// Compiled code and its bookkeeping.
#[derive(Debug)]
pub struct JitTier {
    mode: JitMode,
    buf: Option<exec::ExecBuf>,
    entries: Vec<Entry>,
    tables: [u8; TABLES],
    pub stats: JitStats,
}

impl JitTier {
    /// A tier in `mode` (forced to `Off` where the host cannot run compiled code).
    pub fn new(mode: JitMode) -> JitTier {
        let supported = cfg!(all(target_arch = "x86_64", target_os = "linux")) && host_has_bmi2();
        let mode = if supported { mode } else { JitMode::Off };
        let mut tables = [0u8; TABLES];
        // "Offset wraps": indexed by (16-bit offset of the last byte) >> 12, 0x10 past 0xFFFF.
        for (i, t) in tables[T_WRAP..T_READ].iter_mut().enumerate() {
            *t = u8::from(i >= 0x10);
        }
        // "Read must exit" / "write must exit" by page-flag value.
        for f in 0..16u8 {
            tables[T_READ + f as usize] = u8::from(f & (PG_MMIO | PG_SLOW) != 0);
            tables[T_WRITE + f as usize] = match f {
                0 => 0,
                PG_CODE => W_CODE,
                _ => 1,
            };
        }
        JitTier { mode, buf: None, entries: Vec::new(), tables, stats: JitStats::default() }
    }

    pub fn mode(&self) -> JitMode {
        self.mode
    }

    /// Block starts before compiling (`None`: never).
    #[inline(always)]
    pub fn threshold(&self) -> Option<u32> {
        match self.mode {
            JitMode::Off => None,
            JitMode::Hot => Some(HOT_THRESHOLD),
            JitMode::Eager => Some(0),
        }
    }

    /// Translates the loop region at EIP `start_eip` from `code`: guest code of one page
    /// whose first byte is at EIP `code_eip` and at offset `page_off` of its page.
    pub fn compile(&mut self, code: &[u8], code_eip: u32, page_off: u32, start_eip: u32) -> CompileOutcome {
        let no = |flushed| CompileOutcome { tier: TIER_NO, flushed, bytes: 0, lines: 0 };
        if self.buf.is_none() {
            match exec::ExecBuf::new(CODE_BYTES) {
                Ok(b) => self.buf = Some(b),
                Err(_) => {
                    self.mode = JitMode::Off;
                    return no(false);
                }
            }
        }
        let Some(buf) = self.buf.as_mut() else { return no(false) };
        let mut flushed = false;
        loop {
            let Some(c) = translate::translate(code, code_eip, start_eip, buf.next_addr()) else {
                self.stats.declined += 1;
                return no(flushed);
            };
            match buf.append(&c.code) {
                Ok(Some(off)) if self.entries.len() < (TIER_COMPILED - 1) as usize => {
                    self.entries.push(Entry { off, insns: c.insns, bytes: c.bytes, early: 0 });
                    self.stats.compiled += 1;
                    let tier = TIER_COMPILED | (self.entries.len() as u32 - 1);
                    let lines = c.ranges.iter().fold(0, |m, &(ip, len)| {
                        m | line_mask((page_off + ip.wrapping_sub(code_eip)) as usize, len as usize)
                    });
                    return CompileOutcome { tier, flushed, bytes: c.bytes, lines };
                }
                Ok(_) if !flushed => {
                    // Full: start over (the caller resets every block's tier).
                    buf.clear();
                    self.entries.clear();
                    self.stats.flushes += 1;
                    flushed = true;
                }
                _ => {
                    // mprotect failed, or a region larger than the whole buffer: stop compiling.
                    self.mode = JitMode::Off;
                    return no(flushed);
                }
            }
        }
    }

    /// Runs compiled block `tier` from EIP `start_eip` with at most `budget` instructions.
    /// Returns what happened, or `None` when the CPU state does not allow compiled
    /// code now (segment bases above 0xFFFF0 or limits below 0xFFFF, EIP above 0xFFFF) or the
    /// budget is below one pass: the caller interprets the block instead.
    #[allow(unsafe_code)]
    pub fn run(
        &mut self,
        tier: u32,
        c: &mut Cpu,
        ram: &mut [u8],
        pages: &Pages<'_>,
        start_eip: u32,
        budget: u64,
    ) -> Option<JitRun> {
        let e = *self.entries.get((tier & !TIER_COMPILED) as usize)?;
        let buf = self.buf.as_ref()?;
        if budget < e.insns as u64
            || start_eip > 0xFFFF
            || pages.ram_pages() * 4096 > ram.len()
            || ram.len() < 0x1000
            || c.segs.iter().any(|s| s.base > 0xF_FFF0 || s.limit < 0xFFFF)
        {
            return None;
        }
        let mut ctx = JitCtx {
            regs: [0; 8],
            seg_base: [0; 6],
            tables: self.tables,
            flags: (c.flags.get() & picoqemu_core::flags::STATUS) as u64 | 2,
            ram: ram.as_mut_ptr() as u64,
            pages: pages.as_slice().as_ptr() as u64,
            budget,
            exit: 0,
            lines: pages.lines().as_ptr() as u64,
        };
        ctx.regs.copy_from_slice(&c.regs[..8]);
        for (b, s) in ctx.seg_base.iter_mut().zip(c.segs.iter()) {
            *b = s.base;
        }
        // SAFETY: `e.off` is an entry of `buf` recorded since its last clear (entries are
        // dropped with every clear); `ctx.tables` is `self.tables`, built in `new`. `pages` is
        // a `Pages`, which covers at least JIT_PAGES pages and marks every page from
        // `ram_pages()` on PG_SLOW (its constructor establishes that and nothing can undo it),
        // and `ram` covers `ram_pages()` pages (checked above), so every page a block may
        // touch is inside `ram`; its line masks (`lines`) have one entry per flag byte.
        // `ram` (`&mut`) and `pages` (`&`) are borrowed for the whole call, so nothing else
        // touches them.
        unsafe { buf.call(e.off, &mut ctx) };
        c.regs[..8].copy_from_slice(&ctx.regs);
        let status = picoqemu_core::flags::STATUS;
        let f = c.flags.get();
        c.flags.set((f & !status) | (ctx.flags as u32 & status));
        c.eip = start_eip.wrapping_add(ctx.exit as u32) & 0xFFFF;
        let retired = budget - ctx.budget;
        self.stats.runs += 1;
        self.stats.instructions += retired;
        let mut demote = retired == 0;
        let early = ctx.exit & u64::from(translate::EXIT_EARLY) != 0;
        if early && retired < u64::from(e.insns).min(USEFUL_RUN) {
            if let Some(entry) = self.entries.get_mut((tier & !TIER_COMPILED) as usize) {
                entry.early += 1;
                demote |= entry.early >= MAX_EARLY_EXITS;
            }
        }
        Some(JitRun { retired, demote, bytes: e.bytes })
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn host_has_bmi2() -> bool {
    std::arch::is_x86_feature_detected!("bmi2")
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn host_has_bmi2() -> bool {
    false
}
