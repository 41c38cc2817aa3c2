//! picoqemu-interp: a real-mode x86 interpreter (386+ rules, as KVM runs real mode) built on
//! iced-x86 decoding.
//!
//! Structure: instructions are decoded once per physical address into `op::Op`s whose
//! handler was chosen at decode time (`decode.rs`), grouped into blocks and cached per 4 KiB
//! page (`cache.rs`) with page-granular self-modifying-code invalidation; a cached block is
//! optimised once (`opt.rs`: dead-flag elimination, `dec reg; jnz` fusion, pure ops) and is
//! only ever run whole (TF or a budget ending inside it runs freshly decoded single
//! instructions instead). Each op carries its offset in the block, so EIP is derived, not
//! advanced, per instruction. The step loop (`run.rs`, in named phases) looks up a block,
//! runs its handlers, chains straight into the next cached block while nothing else needs
//! attention, and between blocks handles faults, traps, budgets, device events, external
//! interrupts, kicks and deadlines (the wall clock is read every 64 Ki instructions).
//! Breakpoints and the kick handle are in `breakpoints.rs`. Instruction semantics live in
//! modules by group: `arith`, `logic`, `shift`, `muldiv`, `bcd`, `transfer`, `stack`,
//! `control`, `string`, `io`, `system`, `interrupt`; operand and memory access in `operand`,
//! lazy flags in `flags`, the register file in `cpu`.
//!
//! Counting: every executed instruction counts as one retired instruction (a faulting one
//! too, as the fault's delivery is the step); a REP string instruction counts one per
//! iteration (one when its count is 0), so `max_instructions = Some(1)` runs exactly one
//! instruction or one REP iteration and then stops with `StepDone`. RDTSC returns this count.
//! The delivery of an external interrupt is not an instruction (a step that delivers one
//! also runs the handler's first instruction).
//!
//! Time and interrupts: the bus's clock is told the exact count before every port or MMIO
//! access and at every device-event boundary, which no block, REP or compiled loop overruns,
//! so devices see the same time with any block boundaries and with the compiled tier on or
//! off. External interrupts are taken at instruction boundaries with IF=1 outside the
//! one-instruction shadow of STI (with IF clear before), MOV SS and POP SS; INTR is looked at
//! only where it can change (run entry, after a device access or a device event, when the
//! guest sets IF). HLT with IF=1 waits for the next event (virtual time skips to it) and
//! stops `Halted` only when nothing can wake the CPU.
//!
//! Breakpoints: a run resumed at the breakpoint it stopped at (same instruction count) runs
//! that instruction; a REP resuming an iteration does not stop again.
//!
//! Inspection: every block run (and every compiled-loop entry) is recorded in a fixed
//! `HistoryRing` (one array store, no allocation) for `Backend::history`. With
//! `Backend::set_magic_break(true)`, `xchg bx, bx` (87 DB) decodes to an op that stops the run
//! with `Breakpoint` after it (the code cache is emptied when the setting changes); when off,
//! nothing checks for it.
//!
//! Known, documented behaviour: a single-step (#DB) trap due after a HLT is not delivered
//! (with IF=0 the run stops `Halted` first; with IF=1 the wake-up interrupt's handler runs
//! without it); segment loads keep the hidden limit (386 "unreal mode" behaviour); the stack
//! is always 16-bit (SP).
// No unsafe code, except the compiled-block tier's executable memory (`jit/exec.rs`, which
// opts in with its own `allow`; the benchmark that justifies it is in BENCHMARKS.md).
#![deny(unsafe_code)]

mod arith;
mod bcd;
mod breakpoints;
mod cache;
mod control;
mod cpu;
mod decode;
mod flags;
mod flow;
mod interrupt;
mod io;
mod jit;
mod logic;
mod muldiv;
mod op;
mod operand;
mod opt;
mod pages;
mod run;
mod shift;
mod stack;
mod string;
mod system;
#[cfg(test)]
mod testutil;
mod transfer;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use iced_x86::Instruction;
use picoqemu_core::{
    Backend, BackendError, BackendStats, Breakpoint, CpuSnapshot, CpuState, History, HistoryRing,
    InterruptShadow, Kick, Machine, RunLimits, StopReason, Watchpoint,
};

use crate::breakpoints::{Breakpoints, KickFlag};
use crate::cache::{CodeCache, MAX_BLOCK};
use crate::cpu::Cpu;
use crate::jit::JitTier;
use crate::op::Op;
use crate::pages::PageFlags;

pub use crate::jit::{JitMode, JitStats, HOT_THRESHOLD};
pub use crate::run::TIME_CHECK_INTERVAL;
pub use crate::system::CPUID_FEATURES;

/// The software CPU.
pub struct InterpBackend {
    cpu: Cpu,
    cache: CodeCache,
    pages: PageFlags,
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
    /// Execution breakpoints.
    bps: Breakpoints,
    /// Data watchpoints: their pages take the slow memory paths, which check them.
    watches: Vec<Watchpoint>,
    /// `(linear, icount)`: the run that starts at this instruction count does not stop at a
    /// breakpoint on its first instruction (resuming from that breakpoint).
    bp_resume: Option<(u32, u64)>,
    /// Interrupts runs from other threads.
    kick: Arc<KickFlag>,
    /// Set from outside (Ctrl-C) to end the run at the next time check.
    interrupt: Option<&'static AtomicBool>,
    /// The last run ended with the CPU in the HLT state.
    halted: bool,
    /// What a restored snapshot left for the next run to do first.
    resume: Resume,
    /// Bochs' magic breakpoint (`xchg bx, bx`) is on.
    magic: bool,
    /// The last stretches of code run (`Backend::history`).
    hist: HistoryRing,
}

/// Work a restored [`CpuSnapshot`] leaves for the start of the next run.
#[derive(Debug, Clone, Copy, Default)]
struct Resume {
    /// An interrupt acknowledged but not yet delivered.
    vector: Option<u8>,
    /// The CPU is halted: wait as after a HLT.
    halted: bool,
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
            pages: PageFlags::default(),
            icount: 0,
            ins: Instruction::default(),
            scratch: Vec::with_capacity(MAX_BLOCK),
            scratch_fx: Vec::with_capacity(MAX_BLOCK),
            force_a20_wrap: false,
            jit: JitTier::new(JitMode::default()),
            bps: Breakpoints::default(),
            watches: Vec::new(),
            bp_resume: None,
            kick: Arc::new(KickFlag::default()),
            interrupt: None,
            halted: false,
            resume: Resume::default(),
            magic: false,
            hist: HistoryRing::default(),
        }
    }

    /// Ends every run with [`StopReason::Interrupted`] at its next time check (every 64 Ki
    /// instructions) once `flag` is set, e.g. by a SIGINT handler. The flag is only read.
    pub fn with_interrupt(mut self, flag: &'static AtomicBool) -> Self {
        self.interrupt = Some(flag);
        self
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
        Ok(run::run(self, machine, limits))
    }

    fn reset(&mut self, machine: &mut Machine) -> Result<(), BackendError> {
        let _ = machine;
        self.cpu = Cpu::default();
        self.bp_resume = None;
        self.halted = false;
        self.resume = Resume::default();
        self.hist.clear();
        Ok(())
    }

    fn set_breakpoints(&mut self, breakpoints: &[Breakpoint]) -> Result<(), BackendError> {
        self.bps.set(breakpoints);
        Ok(())
    }

    fn kicker(&self) -> Option<Arc<dyn Kick>> {
        Some(self.kick.clone())
    }

    /// Any number of watchpoints of any kind, exact: the pages holding watched bytes are
    /// forced onto the slow memory paths (also out of compiled loops), which compare each
    /// access with the list; other pages run at full speed. The run stops after the
    /// accessing instruction (a REP string instruction: after the iteration, IP still on the
    /// REP, as with x86 data breakpoints); a fault raised by that instruction is delivered first.
    fn set_watchpoints(&mut self, watchpoints: &[Watchpoint]) -> Result<(), BackendError> {
        self.watches = watchpoints.to_vec();
        Ok(())
    }

    fn stats(&self) -> BackendStats {
        BackendStats { instructions: Some(self.icount), exits: None, exit_reasons: None }
    }

    // Snapshots (`--save-state` / `--load-state`).

    /// The registers, the shadow of STI / MOV SS, the HLT state and the instruction count
    /// (RDTSC). The interpreter never holds an acknowledged, undelivered interrupt after a run,
    /// but one restored from a snapshot and not yet run is reported again.
    fn cpu_snapshot(&mut self) -> Result<CpuSnapshot, BackendError> {
        let shadow = match (self.cpu.inhibit, self.cpu.irq_shadow) {
            (true, _) => InterruptShadow::MovSs,
            (false, true) => InterruptShadow::Sti,
            (false, false) => InterruptShadow::None,
        };
        Ok(CpuSnapshot {
            state: self.cpu.to_state(),
            shadow,
            halted: self.halted || self.resume.halted,
            pending_interrupt: self.resume.vector,
            instructions: self.icount,
        })
    }

    fn restore_cpu_snapshot(&mut self, snap: &CpuSnapshot) -> Result<(), BackendError> {
        self.cpu.load_state(&snap.state);
        self.cpu.irq_shadow = snap.shadow != InterruptShadow::None;
        self.cpu.inhibit = snap.shadow == InterruptShadow::MovSs;
        self.icount = snap.instructions;
        self.bp_resume = None;
        self.halted = false;
        self.resume = Resume { vector: snap.pending_interrupt, halted: snap.halted };
        Ok(())
    }

    // Inspection (`--magic-break`, abnormal-stop reports).

    /// Decodes `xchg bx, bx` as a stop from now on (or no longer): the code cache is emptied
    /// when the setting changes, so nothing decoded the other way runs again. Off, nothing
    /// is checked anywhere: the cost is at decode time only, and only when on.
    fn set_magic_break(&mut self, on: bool) -> Result<(), BackendError> {
        if on != self.magic {
            self.magic = on;
            self.cache = CodeCache::default();
        }
        Ok(())
    }

    /// The last [`picoqemu_core::HISTORY_LEN`] blocks run (or compiled loops entered).
    fn history(&self) -> History {
        self.hist.history()
    }
}
