//! The interpreter's run loop ([`run`]), in named phases:
//! * [`prepare_pages`]: the page-flag table (MMIO, code, slow pages for compiled code), the
//!   code cache checked against RAM, pages holding breakpoints dropped from the cache;
//! * [`Runner::checkpoint`]: between blocks, when a bound is reached or the bus needs a look:
//!   the budget, kicks and the wall clock (every 64 Ki instructions), device events (the bus's
//!   clock is told the exact instruction count) and external interrupts;
//! * [`Runner::try_compiled`]: the compiled tier (count a block's starts, compile it when hot,
//!   run it when compiled);
//! * [`Runner::build_block`]: the breakpoint check, then decode a block (cached and optimised)
//!   or one uncached instruction;
//! * [`Runner::exec_chain`]: run a block's handlers and chain into the next cached block while
//!   nothing needs the loop;
//! * [`Runner::after_block`]: faults, HLT (waiting for an interrupt with IF=1), unsupported
//!   instructions, single-step traps, self-modifying code and device stop requests.
//!
//! Bounds are instruction counts ([`Bounds`]): `hard` (the budget's end, the next device event,
//! the boundary after an interrupt shadow) is never overrun by a block, compiled code or a
//! REP, so the instruction at which an event fires is the same whatever the block boundaries
//! and with the compiled tier on or off; `next` adds the time check (kicks, the deadline),
//! which blocks may overrun by at most one block.
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iced_x86::Instruction;
use picoqemu_core::flags::{IF, TF};
use picoqemu_core::{InsnBytes, Machine, RunLimits, Segment, StopReason};

use crate::breakpoints::{Breakpoints, KickFlag};
use crate::cache::{CodeCache, MAX_BLOCK};
use crate::cpu::CS;
use crate::decode::{self, Fx};
use crate::flow::Flow;
use crate::jit::{CompileOutcome, JitTier, TIER_COMPILED, TIER_NO};
use crate::op::Op;
use crate::operand::{Ctx, PG_DIRTY, PG_MMIO, PG_SLOW};
use crate::{interrupt, opt, system, InterpBackend};

/// How many instructions run between two looks at the wall clock and the kick flag.
pub const TIME_CHECK_INTERVAL: u64 = 1 << 16;

/// Longest sleep while halted in real time before looking at kicks and the deadline again.
const IDLE_POLL: Duration = Duration::from_millis(1);

/// Runs `be` on `machine` until a stop (the body of `Backend::run`).
pub(crate) fn run(be: &mut InterpBackend, machine: &mut Machine, limits: RunLimits) -> StopReason {
    if be.kick.take() || be.interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
        return StopReason::Interrupted;
    }
    let a20 = if machine.config().a20_wrap || be.force_a20_wrap { 0x000F_FFFF } else { u32::MAX };
    prepare_pages(be, machine, a20);
    let track = !machine.bus().mmio_regions().is_empty();
    let (ram, bus) = machine.ram_and_bus_mut();
    let mut cx = Ctx::new(be.cpu, ram.as_mut_slice(), bus, be.pages.view(), a20);
    cx.icount = be.icount;
    cx.told = be.icount;
    // INTR may have been raised since the last run.
    cx.attn = true;
    cx.mmio_any = !be.watches.is_empty() || cx.pages.as_slice().iter().any(|&f| f & PG_MMIO != 0);
    cx.watches = &be.watches;
    cx.hist = be.hist;
    let mut r = Runner {
        jit_threshold: be.jit.threshold(),
        cache: &mut be.cache,
        jit: &mut be.jit,
        ins: &mut be.ins,
        scratch: &mut be.scratch,
        scratch_fx: &mut be.scratch_fx,
        single_op: [Op::new(system::nop, 0)],
        bps: &be.bps,
        kick: &be.kick,
        ctrl_c: be.interrupt,
        a20,
        track,
        b: Bounds::new(cx.icount, limits),
        bp_resume: be.bp_resume,
        rep_on_bp: None,
        halted: false,
        magic: be.magic,
    };
    let stop = match r.resume(&mut cx, std::mem::take(&mut be.resume)) {
        Some(s) => s,
        None => r.run_loop(&mut cx),
    };
    be.halted = r.halted;
    // The clock ends the run exact.
    cx.sync_time(0);
    be.bp_resume = match stop {
        StopReason::Breakpoint { .. } => {
            Some((cx.c.segs[CS as usize].base.wrapping_add(cx.c.eip), cx.icount))
        }
        _ => r.bp_resume,
    };
    be.cpu = cx.c;
    be.icount = cx.icount;
    be.hist = cx.hist;
    machine.bus_mut().flush();
    stop
}

/// Page flags: MMIO from the bus, CODE for what the cache still holds, SLOW where compiled
/// code must not go; the cache drops changed pages, MMIO pages and pages with breakpoints.
fn prepare_pages(be: &mut InterpBackend, machine: &mut Machine, a20: u32) {
    // Pages holding a breakpoint go first, so that the cache's check below leaves them out.
    for &pg in be.bps.map_pages(a20) {
        be.cache.invalidate(pg);
    }
    let ram_len = machine.ram().len();
    // PG_SLOW where compiled code must not go (beyond RAM, above 1 MiB with A20 wrapping).
    be.pages.rebuild(ram_len, a20 != u32::MAX, &machine.bus().mmio_regions());
    be.cache.sync(machine.ram_mut().bytes(), a20);
    for (pg, lines) in be.cache.code_pages() {
        if be.pages.as_slice()[pg] & PG_MMIO == 0 {
            be.pages.mark_code(pg, lines);
        }
    }
    // Pages holding a watched byte take the slow paths (interpreter and compiled code alike).
    for w in &be.watches {
        let (first, last) = (w.linear & a20, w.linear.saturating_add(w.len.max(1) - 1) & a20);
        for pg in (first >> 12)..=(last >> 12).max(first >> 12) {
            if (pg as usize) < be.pages.as_slice().len() {
                be.pages.set(pg as usize, PG_SLOW);
            }
        }
    }
    // MMIO pages must not be served from the cache.
    for (pg, &f) in be.pages.as_slice().iter().enumerate() {
        if f & PG_MMIO != 0 {
            be.cache.invalidate(pg);
        }
    }
}

/// The instruction counts at which the loop must stop running blocks.
struct Bounds {
    /// End of the instruction budget.
    limit: u64,
    /// The run is a single step (`StepDone` rather than `BudgetExhausted`).
    single: bool,
    /// Wall-clock deadline.
    deadline: Option<Instant>,
    /// Next look at kicks and the wall clock.
    check_at: u64,
    /// The next device event is due (virtual time).
    event_at: u64,
    /// The boundary after an interrupt-shadowed instruction with a request waiting.
    irq_at: u64,
    /// `min(limit, event_at, irq_at)`: nothing may run past it.
    hard: u64,
    /// `min(hard, check_at)`: the loop calls [`Runner::checkpoint`] there.
    next: u64,
}

impl Bounds {
    fn new(start: u64, limits: RunLimits) -> Self {
        let mut b = Bounds {
            limit: limits.max_instructions.map_or(u64::MAX, |n| start.saturating_add(n)),
            single: limits.max_instructions == Some(1),
            deadline: limits.timeout.and_then(|d| Instant::now().checked_add(d)),
            check_at: start.saturating_add(TIME_CHECK_INTERVAL),
            event_at: u64::MAX,
            irq_at: u64::MAX,
            hard: 0,
            next: 0,
        };
        b.update();
        b
    }

    fn update(&mut self) {
        self.hard = self.limit.min(self.event_at).min(self.irq_at);
        self.next = self.hard.min(self.check_at);
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// A block about to run: its ops, where it starts, and (when cached) its address, size in
/// instructions and compiled-tier state.
#[derive(Clone, Copy)]
struct Block<'c> {
    ops: &'c [Op],
    start_eip: u32,
    /// Physical address when cached, `usize::MAX` for a lone uncached instruction.
    phys: usize,
    insns: u64,
    tier: Option<&'c Cell<u32>>,
}

/// How a block execution ended: the last handler's flow and the length of its instruction.
struct Exit {
    flow: Flow,
    last_len: u32,
}

/// What [`Runner::build_block`] produced.
enum Built {
    /// A block now cached at the address, to run whole.
    Cached,
    /// One instruction in `Runner::single_op`.
    Single,
    /// A breakpoint stops the run before the instruction.
    Breakpoint,
}

/// True when `bytes` of code from `eip` lie within the CS limit.
#[inline(always)]
fn fits(cs: &Segment, eip: u32, bytes: u32) -> bool {
    eip as u64 + bytes as u64 <= cs.limit as u64 + 1
}

/// Fetches up to 15 instruction bytes at CS:EIP, stopping at the CS limit.
pub(crate) fn fetch(cx: &mut Ctx, buf: &mut [u8; 15]) -> usize {
    let cs = cx.c.segs[CS as usize];
    let eip = cx.c.eip;
    let avail = if eip > cs.limit { 0 } else { (cs.limit - eip) as u64 + 1 };
    let n = avail.min(15) as usize;
    for (i, b) in buf.iter_mut().enumerate().take(n) {
        *b = cx.rd::<1>(cs.base.wrapping_add(eip).wrapping_add(i as u32)) as u8;
    }
    n
}

/// The backend's parts one run uses, next to the execution context.
struct Runner<'r> {
    cache: &'r mut CodeCache,
    jit: &'r mut JitTier,
    jit_threshold: Option<u32>,
    /// Scratch decoder output, block being built and its optimiser facts.
    ins: &'r mut Instruction,
    scratch: &'r mut Vec<Op>,
    scratch_fx: &'r mut Vec<Fx>,
    /// A lone instruction to run (uncached, or a single step inside a cached block).
    single_op: [Op; 1],
    bps: &'r Breakpoints,
    kick: &'r KickFlag,
    /// The embedder's interrupt flag (`InterpBackend::with_interrupt`), only read.
    ctrl_c: Option<&'static AtomicBool>,
    a20: u32,
    /// Some device claims MMIO: keep `Ctx::op_idx` exact (see [`Runner::exec`]).
    track: bool,
    b: Bounds,
    /// `(linear, icount)`: the instruction at `linear` starting at that count runs even if a
    /// breakpoint is there (resuming from that breakpoint, or a REP resuming an iteration).
    bp_resume: Option<(u32, u64)>,
    /// Linear address of a lone REP instruction just decoded on a breakpoint page.
    rep_on_bp: Option<u32>,
    /// The run stopped in the HLT state (see [`Runner::halt_state`]).
    halted: bool,
    /// Bochs' magic breakpoint is on: `xchg bx, bx` decodes to `system::magic_break`.
    magic: bool,
}

impl<'r> Runner<'r> {
    fn run_loop(&mut self, cx: &mut Ctx) -> StopReason {
        loop {
            if cx.icount >= self.b.next || cx.attn {
                if let Some(s) = self.checkpoint(cx) {
                    return s;
                }
            }
            // MOV SS / POP SS / LSS hold off the trap of their own step only.
            cx.c.inhibit = false;
            let tf = cx.c.flags.bits & TF != 0;
            let remaining = self.b.hard - cx.icount;
            cx.rep_budget = if tf { 1 } else { remaining };
            let cs = cx.c.segs[CS as usize];
            let eip = cx.c.eip;
            let phys = (cs.base.wrapping_add(eip) & self.a20) as usize;
            if !tf && self.jit_threshold.is_some() && self.try_compiled(cx, &cs, eip, phys) {
                continue;
            }
            let mut single = false;
            let blk = match self.cache.lookup(phys) {
                Some((ops, bytes, k, tier)) if !tf && k <= remaining && fits(&cs, eip, bytes) => {
                    Block { ops, start_eip: eip, phys, insns: k, tier: Some(tier) }
                }
                hit => {
                    let hit = hit.is_some_and(|h| fits(&cs, eip, h.1));
                    match self.build_block(cx, &cs, eip, phys, tf, hit) {
                        Built::Breakpoint => {
                            return StopReason::Breakpoint { cs: cs.selector, ip: eip };
                        }
                        Built::Cached => self.built(eip, phys),
                        Built::Single => {
                            single = true;
                            self.single(eip)
                        }
                    }
                }
            };
            let exit = self.exec(cx, blk, tf);
            if single && self.rep_on_bp.is_some() {
                self.rep_resumes(cx, &cs, eip, &exit);
            }
            if !tf && !cx.brk && matches!(exit.flow, Flow::Next | Flow::Jump) {
                continue;
            }
            if let Some(s) = self.after_block(cx, exit, tf) {
                return s;
            }
        }
    }

    /// Between blocks, when the loop reached [`Bounds::next`] or the bus needs a look: the
    /// budget, the time check, device events and external interrupts.
    #[inline(never)]
    fn checkpoint(&mut self, cx: &mut Ctx) -> Option<StopReason> {
        let n = cx.icount;
        if n >= self.b.limit {
            return Some(if self.b.single { StopReason::StepDone } else { StopReason::BudgetExhausted });
        }
        let mut look = std::mem::take(&mut cx.attn) || n >= self.b.event_at;
        if n >= self.b.irq_at {
            self.b.irq_at = u64::MAX;
            look = true;
        }
        if n >= self.b.check_at {
            if self.interrupted() {
                return Some(StopReason::Interrupted);
            }
            if self.b.past_deadline() {
                return Some(StopReason::Timeout);
            }
            self.b.check_at = n.saturating_add(TIME_CHECK_INTERVAL);
            // Real time: service the device events whose time has come.
            look |= cx.bus.event_deadline().is_some_and(|d| Instant::now() >= d);
        }
        if look {
            cx.sync_time(0);
            self.b.event_at = cx.bus.instructions_until_event().map_or(u64::MAX, |k| n.saturating_add(k));
            if let Some(s) = self.take_interrupt(cx) {
                return Some(s);
            }
        }
        self.b.update();
        None
    }

    /// A kick arrived (taken), or the embedder's interrupt flag is set.
    fn interrupted(&self) -> bool {
        self.kick.take() || self.ctrl_c.is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// At an instruction boundary: delivers the waiting external interrupt when IF=1 and no
    /// interrupt shadow holds it off (then it is taken one instruction later).
    fn take_interrupt(&mut self, cx: &mut Ctx) -> Option<StopReason> {
        let shadow = std::mem::take(&mut cx.c.irq_shadow);
        if cx.c.flags.bits & IF == 0 || !cx.bus.interrupt_pending() {
            return None;
        }
        if shadow {
            self.b.irq_at = cx.icount + 1;
            return None;
        }
        let vector = cx.bus.acknowledge_interrupt()?;
        let ip = cx.c.eip;
        let flow = interrupt::raise(cx, vector, ip);
        cx.delivered_int = 0;
        (flow == Flow::TripleFault).then_some(StopReason::TripleFault)
    }

    /// The compiled tier: counts the block's starts, compiles it once hot and runs it when
    /// compiled. True when compiled code retired instructions.
    #[inline]
    fn try_compiled(&mut self, cx: &mut Ctx, cs: &Segment, eip: u32, phys: usize) -> bool {
        let Some(th) = self.jit_threshold else { return false };
        let mut compiled = None;
        let mut to_compile = false;
        if let Some((.., tier)) = self.cache.lookup(phys).filter(|b| fits(cs, eip, b.1)) {
            let t = tier.get();
            if t & TIER_COMPILED != 0 {
                if t != TIER_NO {
                    compiled = Some(t);
                }
            } else if t >= th {
                to_compile = true;
            } else {
                tier.set(t + 1);
            }
        }
        if to_compile {
            compiled = self.compile(cx, cs, phys, eip);
        }
        let Some(t) = compiled else { return false };
        let budget = (self.b.hard - cx.icount).min(TIME_CHECK_INTERVAL);
        let Some(r) = self.jit.run(t, &mut cx.c, cx.ram, &cx.pages, eip, budget) else { return false };
        cx.icount += r.retired;
        if r.retired > 0 {
            cx.hist.record_compiled(cs.selector, eip, r.bytes, r.retired);
        }
        if r.demote {
            // It keeps leaving early: the interpreter is better at this block.
            if let Some((.., tier)) = self.cache.lookup(phys) {
                tier.set(TIER_NO);
            }
        }
        r.retired > 0
    }

    /// Translates the loop region starting at the hot cached block at `phys` (guest code up
    /// to the end of its page and of the CS limit); its compiled-tier value when it compiled.
    /// The region's code lines join the page's, so stores to any of them drop it.
    #[cold]
    fn compile(&mut self, cx: &mut Ctx, cs: &Segment, phys: usize, eip: u32) -> Option<u32> {
        // The page from its start (or from IP 0) to its end (or the CS limit): a region's
        // callees may lie before its start.
        let first = phys - (phys & 0xFFF).min(eip as usize);
        let page_end = (phys | 0xFFF) + 1;
        let limit_end = phys + (cs.limit.saturating_sub(eip) as usize).saturating_add(1);
        let end = page_end.min(limit_end).min(cx.ram.len());
        let code_eip = eip - (phys - first) as u32;
        let out = match cx.ram.get(first..end) {
            Some(code) if end > phys => self.jit.compile(code, code_eip, (first & 0xFFF) as u32, eip),
            _ => CompileOutcome { tier: TIER_NO, flushed: false, bytes: 0, lines: 0 },
        };
        if out.flushed {
            self.cache.reset_tiers();
        }
        if out.tier != TIER_NO {
            self.cache.add_code(phys, out.lines, cx.ram)?;
            cx.pages.mark_code(phys >> 12, out.lines);
        }
        if let Some((.., tier)) = self.cache.lookup(phys) {
            tier.set(out.tier);
        }
        (out.tier != TIER_NO).then_some(out.tier)
    }

    /// No runnable cached block at CS:EIP: stops at a breakpoint there, or decodes a block
    /// (cached, optimised, and run whole when TF is clear and the budget covers it) or one
    /// uncached instruction. `hit`: a cached block starts here (it is too long for the budget,
    /// or TF is set), so only its first instruction is decoded.
    fn build_block(
        &mut self,
        cx: &mut Ctx,
        cs: &Segment,
        eip: u32,
        phys: usize,
        tf: bool,
        hit: bool,
    ) -> Built {
        let lin = cs.base.wrapping_add(eip);
        let bp_page = !self.bps.is_empty() && self.bps.on_page(phys >> 12);
        if bp_page && self.bps.contains(lin) && self.bp_resume != Some((lin, cx.icount)) {
            return Built::Breakpoint;
        }
        let cacheable = !hit && !bp_page && phys < cx.ram.len() && cx.pages[phys >> 12] & PG_MMIO == 0;
        let (bytes, cacheable, alone) = self.decode_block(cx, eip, phys, cacheable);
        self.single_op[0] = self.scratch[0];
        if bp_page && alone {
            self.rep_on_bp = Some(lin);
        }
        if cacheable {
            let k = opt::optimise(self.scratch, self.scratch_fx);
            if let Some(lines) = self.cache.insert(phys, self.scratch, bytes, k, cx.ram) {
                cx.pages.mark_code(phys >> 12, lines);
                if !tf && k as u64 <= self.b.hard - cx.icount {
                    return Built::Cached;
                }
            }
        }
        Built::Single
    }

    /// Decodes the block at `eip` (`phys`) into `scratch`; only its first instruction unless
    /// `cacheable`. Returns its size in bytes, whether it may be cached, and whether its first
    /// instruction must be a block of its own (a REP string instruction).
    fn decode_block(
        &mut self,
        cx: &mut Ctx,
        eip: u32,
        phys: usize,
        mut cacheable: bool,
    ) -> (u32, bool, bool) {
        let single = !cacheable;
        self.scratch.clear();
        self.scratch_fx.clear();
        let mut buf = [0u8; 15];
        let (mut ip, mut p, mut bytes) = (eip, phys, 0u32);
        let mut first_alone = false;
        loop {
            let save = cx.c.eip;
            cx.c.eip = ip;
            let n = fetch(cx, &mut buf);
            cx.c.eip = save;
            let mut d = decode::decode(&buf[..n], self.ins);
            if self.magic && buf[..n].starts_with(&decode::MAGIC_BREAK) {
                d = decode::magic_break();
            }
            let len = d.op.len as usize;
            let crosses = (p & 0xFFF) + len > 0x1000;
            if n < 15 || crosses {
                cacheable = false;
            }
            if (d.alone || crosses || n < 15) && !self.scratch.is_empty() {
                break;
            }
            if self.scratch.is_empty() {
                first_alone = d.alone;
            }
            let mut o = d.op;
            o.off = bytes as u16;
            o.idx = self.scratch.len() as u8;
            self.scratch.push(o);
            self.scratch_fx.push(d.fx);
            bytes += len as u32;
            ip = ip.wrapping_add(len as u32);
            p += len;
            if single
                || d.ends_block
                || d.alone
                || crosses
                || n < 15
                || self.scratch.len() >= MAX_BLOCK
                || p & 0xFFF == 0
                || ip > 0xFFFF
            {
                break;
            }
        }
        (bytes, cacheable, first_alone)
    }

    /// The block [`Runner::build_block`] just cached at `phys`.
    fn built(&self, eip: u32, phys: usize) -> Block<'_> {
        match self.cache.lookup(phys) {
            Some((ops, _, k, tier)) => Block { ops, start_eip: eip, phys, insns: k, tier: Some(tier) },
            None => self.single(eip),
        }
    }

    /// After the lone REP instruction at `cs:eip` on a breakpoint page ran: when it resumes
    /// (another chunk of iterations follows), its breakpoint does not stop it again.
    #[cold]
    fn rep_resumes(&mut self, cx: &Ctx, cs: &Segment, eip: u32, exit: &Exit) {
        let Some(lin) = self.rep_on_bp.take() else { return };
        let now = cx.c.segs[CS as usize];
        if exit.flow == Flow::Jump && now.selector == cs.selector && cx.c.eip == eip {
            self.bp_resume = Some((lin, cx.icount));
        }
    }

    /// The lone instruction in `single_op` as a block.
    fn single(&self, eip: u32) -> Block<'_> {
        Block { ops: &self.single_op, start_eip: eip, phys: usize::MAX, insns: 1, tier: None }
    }

    /// Runs `blk` and the blocks chained after it, keeping `Ctx::op_idx` exact when some
    /// device claims MMIO (an MMIO access may then come from any instruction).
    #[inline(always)]
    fn exec<'c>(&'c self, cx: &mut Ctx, blk: Block<'c>, tf: bool) -> Exit {
        if self.track {
            self.exec_chain::<true>(cx, blk, tf)
        } else {
            self.exec_chain::<false>(cx, blk, tf)
        }
    }

    /// Runs `blk`'s handlers, then chains straight into the next cached block while nothing
    /// needs the outer loop. `TRACK`: record each op's index for MMIO accesses.
    #[inline(always)]
    fn exec_chain<'c, const TRACK: bool>(&'c self, cx: &mut Ctx, mut blk: Block<'c>, tf: bool) -> Exit {
        loop {
            let mut flow = Flow::Next;
            let cs = cx.c.segs[CS as usize].selector;
            // Index of the last op run, and its end offset in the block.
            let mut last = 0usize;
            for (i, op) in blk.ops.iter().enumerate() {
                last = i;
                if op.pure {
                    // Cannot fault, stop or read EIP (opt.rs): always Flow::Next.
                    (op.exec)(cx, op);
                    continue;
                }
                // EIP of this instruction, derived from the block start: no dependency on
                // the previous handler's EIP store.
                cx.c.eip = blk.start_eip.wrapping_add(op.off as u32);
                if TRACK {
                    cx.op_idx = op.idx as u32;
                }
                flow = (op.exec)(cx, op);
                if flow != Flow::Next || cx.brk {
                    break;
                }
            }
            let lop = &blk.ops[last];
            let last_len = lop.len as u32;
            if flow == Flow::Next {
                // No IP wrap inside a block: the entry check guarantees it ends by the limit.
                let e = blk.start_eip.wrapping_add(lop.off as u32 + last_len);
                cx.c.eip = if blk.start_eip <= 0xFFFF { e & 0xFFFF } else { e };
            }
            cx.icount += last as u64 + 1;
            let bytes = u32::from(lop.off) + last_len;
            cx.hist.record(cs, blk.start_eip, bytes);
            if TRACK {
                cx.op_idx = 0;
            }
            if matches!(flow, Flow::Next | Flow::Jump)
                && !tf
                && !cx.brk
                && cx.icount < self.b.next
                && cx.c.flags.bits & TF == 0
            {
                if let Some(next) = self.next_block(cx, &blk) {
                    blk = next;
                    cx.c.inhibit = false;
                    cx.rep_budget = self.b.hard - cx.icount;
                    continue;
                }
            }
            return Exit { flow, last_len };
        }
    }

    /// The cached block at the new CS:EIP when it can run next without the outer loop (it
    /// fits the CS limit and the budget, and is neither hot nor compiled).
    #[inline(always)]
    fn next_block<'c>(&'c self, cx: &Ctx, blk: &Block<'c>) -> Option<Block<'c>> {
        let ncs = cx.c.segs[CS as usize];
        let neip = cx.c.eip;
        let nphys = (ncs.base.wrapping_add(neip) & self.a20) as usize;
        // A loop back to the start of this block skips the cache lookup (the cache only
        // changes in the outer loop).
        let (ops, bytes, k, tier) = match blk.tier {
            Some(tier) if nphys == blk.phys => {
                let l = &blk.ops[blk.ops.len() - 1];
                (blk.ops, (l.off + l.len as u16) as u32, blk.insns, tier)
            }
            _ => self.cache.lookup(nphys)?,
        };
        if !fits(&ncs, neip, bytes) || k > self.b.hard - cx.icount {
            return None;
        }
        if let Some(th) = self.jit_threshold {
            let t = tier.get();
            if t < th {
                tier.set(t + 1);
            } else if t != TIER_NO {
                // Hot or compiled: the outer loop compiles or runs it.
                return None;
            }
        }
        Some(Block { ops, start_eip: neip, phys: nphys, insns: k, tier: Some(tier) })
    }

    /// After a block that ended in something other than a plain fall-through or jump (or with
    /// TF set, or a break request): faults, HLT, unsupported instructions, the single-step
    /// trap, dropped code pages and device stop requests.
    #[inline(never)]
    fn after_block(&mut self, cx: &mut Ctx, exit: Exit, tf: bool) -> Option<StopReason> {
        let mut delivered = false;
        match exit.flow {
            Flow::Next | Flow::Jump => {}
            Flow::Fault(v) => {
                delivered = true;
                let ip = cx.c.eip;
                if interrupt::raise(cx, v, ip) == Flow::TripleFault {
                    return Some(StopReason::TripleFault);
                }
            }
            Flow::Halt => {
                let e = cx.c.eip.wrapping_add(exit.last_len);
                cx.c.eip = if cx.c.eip <= 0xFFFF { e & 0xFFFF } else { e };
                return self.halt_state(cx);
            }
            Flow::Unsupported => return Some(unsupported(cx)),
            Flow::TripleFault => return Some(StopReason::TripleFault),
        }
        if tf && !delivered && !cx.c.inhibit && cx.delivered_int == 0 {
            let ip = cx.c.eip;
            if interrupt::raise(cx, interrupt::DB, ip) == Flow::TripleFault {
                return Some(StopReason::TripleFault);
            }
        }
        cx.delivered_int = 0;
        if !cx.brk {
            return None;
        }
        if cx.dirty {
            cx.dirty = false;
            for pg in 0..cx.pages.len() {
                if cx.pages[pg] & PG_DIRTY != 0 {
                    cx.pages.clear(pg, PG_DIRTY);
                    cx.pages.forget_code(pg);
                    self.cache.invalidate(pg);
                }
            }
        }
        if let Some(s) = cx.stop.take() {
            return Some(match s {
                StopReason::Watchpoint { addr, kind, .. } => {
                    StopReason::Watchpoint { cs: cx.c.segs[CS as usize].selector, ip: cx.c.eip, addr, kind }
                }
                s => s,
            });
        }
        cx.brk = false;
        None
    }

    /// A restored snapshot's pending work before the first instruction: the interrupt the
    /// other CPU had acknowledged but not delivered, then the HLT state it was in.
    #[cold]
    fn resume(&mut self, cx: &mut Ctx, resume: crate::Resume) -> Option<StopReason> {
        if let Some(vector) = resume.vector {
            let ip = cx.c.eip;
            let flow = interrupt::raise(cx, vector, ip);
            cx.delivered_int = 0;
            if flow == Flow::TripleFault {
                return Some(StopReason::TripleFault);
            }
        }
        if resume.halted {
            return self.halt_state(cx);
        }
        None
    }

    /// [`Runner::halt`], remembering whether the run ends with the CPU still halted (a
    /// snapshot taken now resumes in the HLT state).
    fn halt_state(&mut self, cx: &mut Ctx) -> Option<StopReason> {
        let stop = self.halt(cx);
        self.halted =
            matches!(stop, Some(StopReason::Halted | StopReason::Interrupted | StopReason::Timeout));
        stop
    }

    /// HLT retired (EIP is past it). With IF=0 the run stops `Halted`. With IF=1 the CPU
    /// waits for an external interrupt: virtual time skips to each device event in turn, real
    /// time sleeps until it; the interrupt is delivered and the run goes on (`None`). It
    /// stops `Halted` when nothing can ever wake it, or on a kick or the deadline.
    #[cold]
    fn halt(&mut self, cx: &mut Ctx) -> Option<StopReason> {
        if cx.c.flags.bits & IF == 0 {
            return Some(StopReason::Halted);
        }
        loop {
            cx.sync_time(0);
            if !cx.bus.idle() {
                return Some(StopReason::Halted);
            }
            if cx.bus.interrupt_pending() {
                // HLT has retired: no shadow holds the request off any more.
                cx.c.irq_shadow = false;
                // Events may have fired: the next checkpoint looks at the bus again.
                cx.attn = true;
                return self.take_interrupt(cx);
            }
            if self.interrupted() {
                return Some(StopReason::Interrupted);
            }
            if self.b.past_deadline() {
                return Some(StopReason::Timeout);
            }
            if let Some(at) = cx.bus.event_deadline() {
                if let Some(s) = self.sleep_until(at) {
                    return Some(s);
                }
                cx.bus.retire(0);
            }
        }
    }

    /// Real time, halted: sleeps until `at`, waking for kicks and the run's deadline.
    fn sleep_until(&self, at: Instant) -> Option<StopReason> {
        loop {
            if self.interrupted() {
                return Some(StopReason::Interrupted);
            }
            if self.b.past_deadline() {
                return Some(StopReason::Timeout);
            }
            let now = Instant::now();
            if now >= at {
                return None;
            }
            let until = self.b.deadline.map_or(at, |d| d.min(at));
            std::thread::sleep(until.saturating_duration_since(now).min(IDLE_POLL));
        }
    }
}

/// The stop for an instruction the interpreter does not implement (nothing of it ran).
#[cold]
fn unsupported(cx: &mut Ctx) -> StopReason {
    cx.icount -= 1;
    let mut buf = [0u8; 15];
    let n = fetch(cx, &mut buf);
    StopReason::Unsupported {
        cs: cx.c.segs[CS as usize].selector,
        ip: cx.c.eip,
        bytes: InsnBytes::new(&buf[..n]),
    }
}
