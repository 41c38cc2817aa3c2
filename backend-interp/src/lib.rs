//! picoqemu-interp: a real-mode x86 interpreter (386+ rules, as KVM runs real mode) built on
//! iced-x86 decoding.
//!
//! Structure: instructions are decoded once per physical address into [`op::Op`]s whose
//! handler was chosen at decode time (`decode.rs`), grouped into blocks and cached per 4 KiB
//! page (`cache.rs`) with page-granular self-modifying-code invalidation; a cached block is
//! optimised once (`opt.rs`: dead-flag elimination, `dec reg; jnz` fusion, pure ops) and is
//! only ever run whole (TF or a budget ending inside it runs freshly decoded single
//! instructions instead). Each op carries its offset in the block, so EIP is derived, not
//! advanced, per instruction. The step loop
//! ([`InterpBackend::run`]) looks up a block, runs its handlers, chains straight into the
//! next cached block while nothing else needs attention, and handles faults, traps, budgets
//! and deadlines between blocks (the wall clock is read every 64 Ki instructions). Instruction semantics live in modules by group:
//! `arith`, `logic`, `shift`, `muldiv`, `bcd`, `transfer`, `stack`, `control`, `string`,
//! `io`, `system`, `interrupt`; operand and memory access in `operand`, lazy flags in
//! `flags`, the register file in `cpu`.
//!
//! Counting: every executed instruction counts as one retired instruction (a faulting one
//! too, as the fault's delivery is the step); a REP string instruction counts one per
//! iteration (one when its count is 0), so `max_instructions = Some(1)` runs exactly one
//! instruction or one REP iteration and then stops with `StepDone`. RDTSC returns this count.
//!
//! Known, documented behaviour: a single-step (#DB) trap due after a HLT is not delivered,
//! the run stops `Halted` first; there is no interrupt controller, so IF and the STI shadow
//! have no visible effect beyond the flag itself; segment loads keep the hidden limit (386
//! "unreal mode" behaviour); the stack is always 16-bit (SP).
// No unsafe code, except the compiled-block tier's executable memory (`jit/exec.rs`, which
// opts in with its own `allow`; the benchmark that justifies it is in BENCHMARKS.md).
#![deny(unsafe_code)]

mod arith;
mod bcd;
mod cache;
mod control;
mod cpu;
mod decode;
mod flags;
mod interrupt;
mod io;
mod jit;
mod logic;
mod muldiv;
mod op;
mod operand;
mod opt;
mod shift;
mod stack;
mod string;
mod system;
#[cfg(test)]
mod testutil;
mod transfer;

use std::time::Instant;

use iced_x86::Instruction;
use picoqemu_core::flags::TF;
use picoqemu_core::{
    Backend, BackendError, BackendStats, CpuState, InsnBytes, Machine, RunLimits, StopReason,
};

use crate::cache::{CodeCache, MAX_BLOCK};
use crate::cpu::{Cpu, CS};
use crate::jit::{JitTier, JIT_PAGES, TIER_COMPILED, TIER_NO};
use crate::op::{Flow, Op};
use crate::operand::{Ctx, PG_CODE, PG_DIRTY, PG_MMIO, PG_SLOW};

pub use crate::jit::{JitMode, JitStats, HOT_THRESHOLD};
pub use crate::system::CPUID_FEATURES;

/// How many instructions run between two looks at the wall clock.
const TIME_CHECK_INTERVAL: u64 = 1 << 16;

/// The software CPU.
pub struct InterpBackend {
    cpu: Cpu,
    cache: CodeCache,
    pages: Vec<u8>,
    icount: u64,
    /// Scratch decoder output, reused.
    ins: Instruction,
    /// Scratch block being built, reused.
    scratch: Vec<Op>,
    /// The optimiser facts of `scratch`'s instructions.
    scratch_fx: Vec<decode::Fx>,
    /// Force A20 wrapping regardless of the machine's configuration.
    force_a20_wrap: bool,
    /// The compiled-block tier.
    jit: JitTier,
}

impl std::fmt::Debug for InterpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterpBackend").field("cpu", &self.cpu).field("icount", &self.icount).finish()
    }
}

impl Default for InterpBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl InterpBackend {
    pub fn new() -> Self {
        InterpBackend {
            cpu: Cpu::default(),
            cache: CodeCache::default(),
            pages: Vec::new(),
            icount: 0,
            ins: Instruction::default(),
            scratch: Vec::with_capacity(MAX_BLOCK),
            scratch_fx: Vec::with_capacity(MAX_BLOCK),
            force_a20_wrap: false,
            jit: JitTier::new(JitMode::default()),
        }
    }

    /// Selects when hot loops are compiled to host code ([`JitMode::Hot`] by default;
    /// [`JitMode::Off`] everywhere but x86-64 Linux with BMI2).
    pub fn with_jit(mut self, mode: JitMode) -> Self {
        self.jit = JitTier::new(mode);
        self
    }

    /// The compiled-block tier's mode in effect (after the host check).
    pub fn jit_mode(&self) -> JitMode {
        self.jit.mode()
    }

    /// What the compiled-block tier did so far.
    pub fn jit_stats(&self) -> JitStats {
        self.jit.stats
    }

    /// Wraps physical addresses at 1 MiB (A20 disabled) even when the machine does not ask
    /// for it.
    pub fn with_a20_wrap(mut self, on: bool) -> Self {
        self.force_a20_wrap = on;
        self
    }

    /// Pages of guest RAM that currently hold decoded instructions.
    pub fn cached_pages(&self) -> usize {
        self.cache.live_pages()
    }
}

/// Fetches up to 15 instruction bytes at CS:EIP, stopping at the CS limit.
fn fetch(cx: &mut Ctx, buf: &mut [u8; 15]) -> usize {
    let cs = cx.c.segs[CS as usize];
    let eip = cx.c.eip;
    let avail = if eip > cs.limit { 0 } else { (cs.limit - eip) as u64 + 1 };
    let n = avail.min(15) as usize;
    for (i, b) in buf.iter_mut().enumerate().take(n) {
        *b = cx.rd::<1>(cs.base.wrapping_add(eip).wrapping_add(i as u32)) as u8;
    }
    n
}

impl Backend for InterpBackend {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn set_state(&mut self, state: &CpuState) -> Result<(), BackendError> {
        self.cpu.load_state(state);
        Ok(())
    }

    fn state(&mut self) -> Result<CpuState, BackendError> {
        Ok(self.cpu.to_state())
    }

    fn run(&mut self, machine: &mut Machine, limits: RunLimits) -> Result<StopReason, BackendError> {
        let a20 = if machine.config().a20_wrap || self.force_a20_wrap { 0x000F_FFFF } else { u32::MAX };
        let ram_len = machine.ram().len();
        // Page flags: MMIO from the bus, CODE for what the cache still holds.
        self.pages.clear();
        self.pages.resize(ram_len / 4096, 0);
        // Compiled code indexes the table by linear page up to JIT_PAGES: what is not plain
        // RAM there (beyond RAM, above 1 MiB with A20 wrapping) is PG_SLOW.
        let ram_pages = self.pages.len();
        self.pages.resize(ram_pages.max(JIT_PAGES), PG_SLOW);
        if a20 != u32::MAX {
            for f in &mut self.pages[0x100..] {
                *f |= PG_SLOW;
            }
        }
        for (base, len) in machine.bus().mmio_regions() {
            let end = base.saturating_add(len);
            let mut p = base / 4096;
            while p * 4096 < end && (p as usize) < self.pages.len() {
                self.pages[p as usize] |= PG_MMIO;
                p += 1;
            }
        }
        for &pg in self.cache.sync(machine.ram_mut().bytes(), a20) {
            if self.pages[pg] & PG_MMIO == 0 {
                self.pages[pg] |= PG_CODE;
            }
        }
        // MMIO pages must not be served from the cache.
        for pg in 0..self.pages.len() {
            if self.pages[pg] & PG_MMIO != 0 {
                self.cache.invalidate(pg);
            }
        }

        let (ram, bus) = machine.ram_and_bus_mut();
        let mut cx = Ctx::new(self.cpu, ram.as_mut_slice(), bus, &mut self.pages, a20);
        cx.icount = self.icount;
        cx.mmio_any = cx.pages.iter().any(|&f| f & PG_MMIO != 0);
        let start = cx.icount;
        let single = limits.max_instructions == Some(1);
        let limit = limits.max_instructions.map_or(u64::MAX, |n| start.saturating_add(n));
        let deadline = limits.timeout.map(|d| Instant::now() + d);
        let mut next_event = start.saturating_add(TIME_CHECK_INTERVAL).min(limit);
        let cache = &mut self.cache;
        let ins = &mut self.ins;
        let scratch = &mut self.scratch;
        let scratch_fx = &mut self.scratch_fx;
        let mut single_op = [Op::new(system::nop, 0)];
        let jit = &mut self.jit;
        let jit_threshold = jit.threshold();

        let stop = loop {
            if cx.icount >= next_event {
                if cx.icount >= limit {
                    break if single { StopReason::StepDone } else { StopReason::BudgetExhausted };
                }
                if let Some(d) = deadline {
                    if Instant::now() >= d {
                        break StopReason::Timeout;
                    }
                }
                next_event = cx.icount.saturating_add(TIME_CHECK_INTERVAL).min(limit);
            }
            // MOV SS / POP SS / LSS hold off the trap of their own step only.
            cx.c.inhibit = false;
            let tf = cx.c.flags.bits & TF != 0;
            let remaining = limit - cx.icount;
            cx.rep_budget = if tf { 1 } else { remaining };

            let cs = cx.c.segs[CS as usize];
            let eip = cx.c.eip;
            let phys = (cs.base.wrapping_add(eip) & a20) as usize;
            let fits = |bytes: u32| eip as u64 + bytes as u64 <= cs.limit as u64 + 1;
            // Compiled tier: count the block's starts, compile it once hot, run it when compiled.
            if let (Some(th), false) = (jit_threshold, tf) {
                let mut compiled = None;
                let mut to_compile = None;
                if let Some((_, bytes, k, tier)) = cache.lookup(phys).filter(|b| fits(b.1)) {
                    let t = tier.get();
                    if t & TIER_COMPILED != 0 {
                        if t != TIER_NO {
                            compiled = Some(t);
                        }
                    } else if t >= th {
                        to_compile = Some((bytes as usize, k));
                    } else {
                        tier.set(t + 1);
                    }
                }
                if let Some((bytes, k)) = to_compile {
                    let (t, flushed) = match cx.ram.get(phys..phys + bytes) {
                        Some(code) => jit.compile(code, eip, k),
                        None => (TIER_NO, false),
                    };
                    if flushed {
                        cache.reset_tiers();
                    }
                    if let Some((.., tier)) = cache.lookup(phys) {
                        tier.set(t);
                    }
                    if t != TIER_NO {
                        compiled = Some(t);
                    }
                }
                if let Some(t) = compiled {
                    let budget = (limit - cx.icount).min(TIME_CHECK_INTERVAL);
                    if let Some(r) = jit.run(t, &mut cx.c, cx.ram, cx.pages, eip, budget) {
                        cx.icount += r.retired;
                        if r.demote {
                            // It keeps leaving early: the interpreter is better at this block.
                            if let Some((.., tier)) = cache.lookup(phys) {
                                tier.set(TIER_NO);
                            }
                        }
                        if r.retired > 0 {
                            continue;
                        }
                    }
                }
            }
            // Physical address of the running block when it is cached (usize::MAX when not)
            // and the instructions it retires.
            let mut cur_phys = phys;
            let mut cur_insns = 1u64;
            // Cached blocks may be optimised (opt.rs) and are only run whole: with TF or a
            // budget that ends inside the block, single raw instructions are decoded instead.
            let hit = match cache.lookup(phys) {
                Some((ops, bytes, k, tier)) if fits(bytes) => Some((ops, k, tier)),
                _ => None,
            };
            let mut ops: &[Op] = match hit {
                Some((ops, k, _)) if !tf && k <= remaining => {
                    cur_insns = k;
                    ops
                }
                _ => {
                    // Build a block (or decode one uncached instruction).
                    let single_only = hit.is_some();
                    scratch.clear();
                    scratch_fx.clear();
                    let mut buf = [0u8; 15];
                    let mut ip = eip;
                    let mut p = phys;
                    let mut bytes = 0u32;
                    let mut cacheable = !single_only && p < cx.ram.len() && cx.pages[p >> 12] & PG_MMIO == 0;
                    loop {
                        let save = cx.c.eip;
                        cx.c.eip = ip;
                        let n = fetch(&mut cx, &mut buf);
                        cx.c.eip = save;
                        let d = decode::decode(&buf[..n], ins);
                        let len = d.op.len as usize;
                        let crosses = (p & 0xFFF) + len > 0x1000;
                        if n < 15 || crosses {
                            cacheable = false;
                        }
                        if (d.alone || crosses || n < 15) && !scratch.is_empty() {
                            break;
                        }
                        let mut o = d.op;
                        o.off = bytes as u16;
                        scratch.push(o);
                        scratch_fx.push(d.fx);
                        bytes += len as u32;
                        ip = ip.wrapping_add(len as u32);
                        p += len;
                        if single_only
                            || d.ends_block
                            || d.alone
                            || crosses
                            || n < 15
                            || scratch.len() >= MAX_BLOCK
                            || p & 0xFFF == 0
                            || ip > 0xFFFF
                        {
                            break;
                        }
                    }
                    single_op[0] = scratch[0];
                    let mut run_cached = None;
                    if cacheable {
                        let k = opt::optimise(scratch, scratch_fx);
                        if cache.insert(phys, scratch, bytes, k, cx.ram) {
                            cx.pages[phys >> 12] |= PG_CODE;
                            if !tf && k as u64 <= remaining {
                                run_cached = cache.lookup(phys).map(|(ops, _, k, _)| (ops, k));
                            }
                        }
                    }
                    match run_cached {
                        Some((ops, k)) => {
                            cur_insns = k;
                            ops
                        }
                        None => {
                            cur_phys = usize::MAX;
                            &single_op[..]
                        }
                    }
                }
            };

            // The running block's compiled-tier state (for the loop-back shortcut below).
            let mut cur_tier = match cur_phys {
                usize::MAX => None,
                _ => cache.lookup(cur_phys).map(|(.., tier)| tier),
            };
            let mut start_eip = eip;
            let mut flow;
            let mut last_len;
            loop {
                flow = Flow::Next;
                // Index of the last op run, and its end offset in the block.
                let mut last = 0usize;
                for (i, op) in ops.iter().enumerate() {
                    last = i;
                    if op.pure {
                        // Cannot fault, stop or read EIP (opt.rs): always Flow::Next.
                        (op.exec)(&mut cx, op);
                        continue;
                    }
                    // EIP of this instruction, derived from the block start: no dependency on
                    // the previous handler's EIP store.
                    cx.c.eip = start_eip.wrapping_add(op.off as u32);
                    flow = (op.exec)(&mut cx, op);
                    if flow != Flow::Next || cx.brk {
                        break;
                    }
                }
                let lop = &ops[last];
                last_len = lop.len as u32;
                if flow == Flow::Next {
                    // No IP wrap inside a block: the entry check guarantees it ends by the limit.
                    let e = start_eip.wrapping_add(lop.off as u32 + last_len);
                    cx.c.eip = if start_eip <= 0xFFFF { e & 0xFFFF } else { e };
                }
                cx.icount += last as u64 + 1;
                // Chain straight into the next cached block while nothing needs the outer loop.
                if matches!(flow, Flow::Next | Flow::Jump)
                    && !tf
                    && !cx.brk
                    && cx.icount < next_event
                    && cx.c.flags.bits & TF == 0
                {
                    let ncs = cx.c.segs[CS as usize];
                    let neip = cx.c.eip;
                    let nphys = (ncs.base.wrapping_add(neip) & a20) as usize;
                    // A loop back to the start of this block skips the cache lookup (the cache
                    // only changes in the outer loop).
                    let rem = limit - cx.icount;
                    let next = match cur_tier {
                        Some(tier) if nphys == cur_phys => {
                            let l = &ops[ops.len() - 1];
                            Some((ops, (l.off + l.len as u16) as u32, cur_insns, tier))
                        }
                        _ => cache.lookup(nphys),
                    };
                    if let Some((o, bytes, k, tier)) = next {
                        if neip as u64 + bytes as u64 <= ncs.limit as u64 + 1 && k <= rem {
                            if let Some(th) = jit_threshold {
                                let t = tier.get();
                                if t < th {
                                    tier.set(t + 1);
                                } else if t != TIER_NO {
                                    // Hot or compiled: the outer loop compiles or runs it.
                                    break;
                                }
                            }
                            ops = o;
                            start_eip = neip;
                            cur_phys = nphys;
                            cur_insns = k;
                            cur_tier = Some(tier);
                            cx.c.inhibit = false;
                            cx.rep_budget = rem;
                            continue;
                        }
                    }
                }
                break;
            }
            if !tf && !cx.brk && matches!(flow, Flow::Next | Flow::Jump) {
                continue;
            }
            let mut delivered = false;
            match flow {
                Flow::Next | Flow::Jump => {}
                Flow::Fault(v) => {
                    delivered = true;
                    let ip = cx.c.eip;
                    if interrupt::raise(&mut cx, v, ip) == Flow::TripleFault {
                        break StopReason::TripleFault;
                    }
                }
                Flow::Halt => {
                    let e = cx.c.eip.wrapping_add(last_len);
                    cx.c.eip = if cx.c.eip <= 0xFFFF { e & 0xFFFF } else { e };
                    break StopReason::Halted;
                }
                Flow::Unsupported => {
                    cx.icount -= 1;
                    let mut buf = [0u8; 15];
                    let n = fetch(&mut cx, &mut buf);
                    break StopReason::Unsupported {
                        cs: cx.c.segs[CS as usize].selector,
                        ip: cx.c.eip,
                        bytes: InsnBytes::new(&buf[..n]),
                    };
                }
                Flow::TripleFault => break StopReason::TripleFault,
            }
            if tf && !delivered && !cx.c.inhibit && cx.delivered_int == 0 {
                let ip = cx.c.eip;
                if interrupt::raise(&mut cx, interrupt::DB, ip) == Flow::TripleFault {
                    break StopReason::TripleFault;
                }
            }
            cx.delivered_int = 0;
            if !cx.brk {
                continue;
            }
            if cx.dirty {
                cx.dirty = false;
                for pg in 0..cx.pages.len() {
                    if cx.pages[pg] & PG_DIRTY != 0 {
                        cx.pages[pg] &= !PG_DIRTY;
                        cache.invalidate(pg);
                    }
                }
            }
            if let Some(s) = cx.stop.take() {
                break s;
            }
            cx.brk = false;
        };
        self.cpu = cx.c;
        self.icount = cx.icount;
        machine.bus_mut().flush();
        Ok(stop)
    }

    fn stats(&self) -> BackendStats {
        BackendStats { instructions: Some(self.icount), exits: None }
    }
}
