//! picoqemu-kvm: runs the machine's real-mode guest on the host's KVM.
//!
//! One VM with one vCPU per [`KvmBackend`]. Guest RAM is the [`picoqemu_core::Machine`]'s own
//! allocation, registered as memslots around the bus's MMIO holes (an access there exits to
//! the bus, bounded to the at most 8 bytes KVM hands over); the vCPU state travels through
//! sync regs (`kvm_valid_regs`/`kvm_dirty_regs`) so loading and reading state costs no ioctl
//! (a free run with more than 64 exits stops the per-exit copy of the special registers and
//! fetches them once with `KVM_GET_SREGS` at its end: the copy costs about 2 % of an exit here).
//! Port I/O exits go to the bus one access at a time: for string I/O the width and count are
//! read from `kvm_run.io` (kvm-ioctls only gives `size * count` bytes). Every free run is
//! bounded by a watchdog (a POSIX timer signalling the vCPU thread, plus `immediate_exit`),
//! and `RunLimits::max_instructions` is honoured by single-stepping.
//!
//! Modules: `vm` (VM, memslots, coalesced PIO/MMIO zones), `regs` (`CpuState` <-> kvm regs), `exits`
//! (exit-shape checks, instruction bytes), `step` ([`StepEvent`] classification), `watchdog`
//! (timer, kicks and the signal), and `backend` (the run loop and the public API) with
//! `backend::irq` (interrupt injection, HLT), `backend::ticks` (deadline, ticks, hang check)
//! and `backend::debug` (breakpoints).
//!
//! # No hangs: ticks and the hang check
//! A free run arms the watchdog at the earliest of its deadline, the next device event (real
//! time) and a tick 100 ms away (one `timer_settime` per tick: nothing measurable). On a tick
//! the run looks at the vCPU: when CS:IP stayed on an instruction that hangs `KVM_RUN` here
//! (`vmcall`) with no register changed for three ticks, the run stops with
//! [`picoqemu_core::StopReason::EmulationFailure`] naming CS:IP and the bytes (status 3), with
//! or without a timeout. Other spinning guests (`jmp $`) are left alone: only the listed
//! instructions are stopped.
//!
//! # Kicks
//! [`picoqemu_core::Backend::kicker`] gives a thread-safe handle: a kick sets a flag and
//! signals the vCPU thread if a run is active (the watchdog's signal, sent with `tgkill`), so
//! `KVM_RUN` returns `EINTR` and the run stops with `Interrupted` at an instruction boundary;
//! a kick while no run is active sets `immediate_exit` at the start of the next run. One kick
//! ends one run.
//!
//! # Breakpoints
//! Both [`picoqemu_core::BreakpointKind`]s use the debug registers DR0-DR3
//! (`KVM_GUESTDBG_USE_HW_BP`), so guest memory never holds an INT3 byte and nothing has to be
//! restored on reads; the price is a limit of **4 breakpoints in all** (duplicates count
//! once), beyond which `set_breakpoints` fails with a clear error and keeps the previous set.
//! The stop comes before the instruction (`Breakpoint { cs, ip }`, told from other debug exits
//! by exception 1 with a B0-B3 bit in DR6). A run that starts on a breakpoint steps over it
//! first. Budgeted (single-step) runs check CS base + IP after each instruction instead;
//! `step` does not stop at breakpoints.
//!
//! # Magic breakpoint and statistics
//! `set_magic_break(true)` makes every run single-stepped (KVM cannot trap one opcode): the
//! bytes at CS:IP are read before each step and a step over `xchg bx, bx` (87 DB) stops with
//! `Breakpoint` at the next instruction, exact for generated code, at single-step speed and
//! without interrupt injection. Every `KVM_RUN` return is counted by reason
//! (`KvmStats::exit_reasons`, reported in `BackendStats::exit_reasons`).
//!
//! # Interrupts and time
//! There is no in-kernel interrupt controller: before each `KVM_RUN` of a free run a pending
//! request ([`picoqemu_core::Machine::interrupt_pending`]) is injected with `KVM_INTERRUPT`
//! when KVM reports the vCPU ready (IF=1, no shadow); otherwise the run requests an
//! interrupt-window exit. On PVM the window opens only between emulation batches of up to
//! 1,024 instructions, so delivery can come up to that many instructions after STI (on
//! VMX/SVM right after STI's shadow). HLT with IF=1 calls
//! [`picoqemu_core::Machine::idle`] and goes on when an interrupt can be delivered (in real
//! time it sleeps until the next device event); HLT with IF=0, or with nothing that could
//! wake the CPU, stops with `Halted`. Budgeted runs and `step` do not inject (requests stay
//! pending).
//!
//! KVM cannot count the instructions of a free run, so **virtual time** on KVM advances (a)
//! by the exact count of a budgeted (single-step) run, one `retire(1)` per instruction, (b)
//! to the next device event at a HLT with IF=1 (`idle`, deterministic), and (c) only where
//! unavoidable, at a tick of a free run with a device event scheduled: time jumps to that
//! event (a guest polling a timer without HLT would otherwise wait forever); this one is
//! paced by the host. In **real time** the watchdog is armed at the next device event so the
//! run returns to service it.
//!
//! # Coalesced PIO and MMIO
//! On by default ([`KvmOptions::coalesced_pio`], [`KvmOptions::coalesced_mmio`]): writes to
//! the ranges the bus's devices declare coalescible
//! ([`picoqemu_core::IoBus::coalescible_ranges`]; today byte writes to port 0xE9 and COM1's
//! THR 0x3F8, and writes to the MMIO console's output-only data register, offsets 0–3 of its
//! page) go to KVM's coalesced ring instead of exiting (about
//! 2 µs instead of 8.5–10 µs each here). Zones are registered lazily, one per port or
//! register on the guest's first write to it (that write exits and is handled as usual): each
//! zone adds 13–17 ms to the VM's destruction on our hosts, which a guest that never uses the
//! port should not pay ([`KvmBackend::coalesced_zones`], [`KvmBackend::coalesced_mmio_zone`]
//! list them). PIO and MMIO entries share one ring, in guest order. The ring is drained
//! through the bus, in order, before any exit is handled and at the end of every run and
//! step, so the output order between ports and MMIO, the UART's register semantics (DLAB,
//! loopback: every write is replayed in program order before the next read is served) and
//! the MMIO console's count (a read of offset 4 exits and sees every earlier write) are
//! unchanged. Reads of those ports and registers, wider port writes and MMIO writes that do
//! not fit the zone still exit. The debug-exit port 0xF4 is never coalesced. A stop
//! requested by a replayed write is ignored (none of these devices can request one). A failed
//! zone registration ends the run with `HostError` (the write that triggered it was
//! delivered).
//!
//! # CPUID
//! The vCPU gets picoqemu's own CPU model, the interpreter's (leaf 0: max leaf 1, vendor
//! "PicoQEMU x86"; leaf 1: family 5, model 2, stepping 1, TSC/CX8/CMOV), so CPUID is the same
//! on both backends and every host, and no process pays `KVM_GET_SUPPORTED_CPUID` (about
//! 0.3 ms here). On PVM hosts KVM still reports the host's feature bits in leaf 1 ECX/EDX.
//! [`KvmOptions::host_cpuid`] gives the guest the host's supported CPUID instead.
//!
//! # Single step and its quirks (measured on our PVM hosts, `kvm-on-our-hosts.md` §2)
//! `KvmBackend::step` runs one `KVM_SET_GUEST_DEBUG` single step and reports a
//! [`StepEvent`]; `run` with `max_instructions: Some(n)` loops over the same steps and counts
//! retired instructions (`Some(1)` ends with `StepDone`, `Some(n > 1)` with
//! `BudgetExhausted`). What a differential tester must know:
//! * **REP string instructions** run up to 1,024 iterations per step and leave IP on the REP
//!   with **RF (EFLAGS bit 16) set** ([`StepEvent::RepChunk`]); a REP with CX = N takes
//!   ceil(N/1024) chunk steps plus one step that leaves it. Only the leaving step counts as an
//!   instruction for the budget. Compare when IP leaves the REP; mask RF.
//! * **HLT** gives no HLT exit under single step: a debug exit with IP past the HLT. The
//!   backend recognises it by decoding the instruction before the step
//!   ([`StepEvent::Halted`]); the state is the same as after a free-run HLT exit. KVM's
//!   real-mode emulation loop also leaves its internal halt request set after such a step
//!   (it returns on the debug exit before consuming it; no ioctl clears it), which made the
//!   next emulated instruction not ending in a debug exit stop with a HLT exit, even after
//!   `reset`: a later fault step, or a later free run after one instruction. The backend
//!   consumes it right away by re-running the same HLT once without single step.
//! * **Port I/O and MMIO**: the step that executes them ends in the I/O exit, not a debug exit.
//!   The backend passes the access to the bus and re-enters once with `immediate_exit` so KVM
//!   completes the instruction (IN writes AL/AX) without running the next one
//!   ([`StepEvent::Io`]). A write that stops the run (port 0xF4) ends the step with
//!   [`StepEvent::Stopped`].
//! * **Faults** (#DE, #UD, #GP, ...): one step = delivery through the IVT **plus the handler's
//!   first instruction** ([`StepEvent::FaultDelivered`]; `halted` when that instruction was a
//!   HLT). `int n`, `int3` and `into` instead stop at the handler's first instruction, not
//!   executed ([`StepEvent::Retired`]).
//! * **MOV SS / POP SS**: the interrupt shadow is not honoured; the step stops after MOV SS
//!   (hardware would run the next instruction too). STI: one step each, no visible effect.
//! * **A guest that sets TF itself** never receives its own #DB while the host single-steps
//!   (KVM swallows it), so such programs cannot be compared in lockstep; compare them
//!   whole-run.
//! * `pushf` under single step pushes no TF here (it can on VMX hardware). KVM does OR TF
//!   into the real RFLAGS while the guest is at the linear RIP it recorded when single step
//!   was switched on, and a fault there pushed that TF; the backend switches single step on
//!   with RIP parked at the reset vector (as on a fresh VM), where a real-mode guest never is.
//! * Instructions KVM's emulator lacks (DAA/DAS/AAA/AAS, BOUND, ENTER with nesting, ICEBP,
//!   x87/MMX, POPCNT, CRC32, RDRAND, XGETBV, ARPL) stop with
//!   [`picoqemu_core::StopReason::EmulationFailure`] naming CS:IP and the instruction's bytes
//!   (trimmed to the decoded length); `movbe` raises #UD.
//! * **`vmcall`** hangs `KVM_RUN` when free-running (the hang check ends the run with
//!   `EmulationFailure`, see above), but under single step each step returns at once with nothing changed and IP
//!   still on it ([`StepEvent::NoProgress`]; a budgeted run counts those steps, so it ends).
//! * **Budgets on KVM are single steps**: `max_instructions` costs one `KVM_RUN` per
//!   instruction (about 7 µs here, against about 0.5 µs free-running); use `timeout` as a
//!   safety net for long guests and a budget only where the count matters.
//! * On VMX/SVM hosts real mode runs natively and these quirks differ (REP granularity, the
//!   MOV SS shadow, TF in PUSHF); the classification is by observed state, not by host type.
//!
//! # Lockstep use
//! Through the core trait, as `diff` does: [`picoqemu_core::Backend::step`] (one single
//! step, a [`picoqemu_core::StopReason`]) then [`picoqemu_core::Backend::last_step`] (a
//! [`picoqemu_core::StepInfo`]: REP chunk, I/O, fault merged with the handler's first
//! instruction, no progress). The KVM-specific [`KvmBackend::single_step`] also takes a
//! deadline and gives the full [`StepEvent`]:
//! ```no_run
//! use std::time::{Duration, Instant};
//! use picoqemu_core::{Backend, IoBus, Machine, MachineConfig};
//! use picoqemu_kvm::{KvmBackend, StepEvent};
//!
//! let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
//! let mut kvm = KvmBackend::new(&m).unwrap();
//! let deadline = Some(Instant::now() + Duration::from_secs(10));
//! loop {
//!     match kvm.single_step(&mut m, deadline) {
//!         StepEvent::RepChunk => continue, // IP still on the REP: compare later
//!         StepEvent::Retired | StepEvent::Io => { /* compare kvm.state() with the other CPU */ }
//!         StepEvent::FaultDelivered { .. } => { /* the other CPU: deliver + one instruction */ }
//!         StepEvent::Halted | StepEvent::NoProgress | StepEvent::Stopped(_) => break,
//!     }
//! }
//! kvm.end_steps().unwrap();
//! # let _ = kvm.state();
//! ```

mod backend;
pub mod baseline;
mod error;
mod exits;
mod iodata;
mod regs;
mod step;
mod vm;
mod watchdog;

pub use backend::{KvmBackend, KvmOptions, KvmStats};
pub use error::KvmError;
pub use step::StepEvent;
pub use watchdog::kick_current_thread;
