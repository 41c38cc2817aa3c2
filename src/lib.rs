//! picoqemu: an x86 real-mode machine with two CPUs, KVM and an interpreter, as a library
//! and as the `picoqemu` command.
//!
//! This crate is the front door. It re-exports the types an embedder needs from the member
//! crates ([`picoqemu_core`]: machine, RAM, bus, devices, CPU state, the [`Backend`] trait;
//! [`picoqemu_interp`]: the interpreter; [`picoqemu_kvm`]: KVM), and holds what the binary,
//! the integration tests and the benchmarks share: the CLI, its options and backend factory
//! ([`backends`]), the guest programs built from source ([`guests`]), `diff`/`fuzz` and the
//! SingleStepTests runner.
//!
//! # Embedding: the unicorn-style tour
//!
//! A [`Machine`] is guest RAM plus an [`IoBus`] of devices; a [`Backend`] is a CPU that runs
//! real-mode code against it. Both backends implement the same trait, so everything below
//! works on either, and state read from one can be written into the other.
//!
//! 1. **Build a machine**: [`Machine::new`] with a [`MachineConfig`] (RAM size, A20,
//!    [`Platform::Pc`] for the PIC and PIT) and a bus ([`IoBus::capturing`] keeps serial and
//!    port-0xE9 output in memory; [`IoBus::new`] sends it to sinks of your choice).
//! 2. **Load an image**: [`load_image`] with an [`ImageKind`] (the article's raw layout at
//!    0000:0000, a boot sector at 0000:7C00, or a ROM ending at 0xFFFFF); it returns the
//!    start [`CpuState`]. Or write RAM yourself with [`GuestRam::write`](picoqemu_core::GuestRam).
//! 3. **Pick a backend**: [`InterpBackend::new`] (always available; [`JitMode`] selects the
//!    compiled tier) or [`KvmBackend::new`] (needs `/dev/kvm`); [`backends::select`] picks
//!    KVM when usable and falls back to the interpreter.
//! 4. **Run with a budget**: [`Backend::run`] with [`RunLimits`] (instructions and/or wall
//!    time) returns a [`StopReason`]: `Halted`, `BudgetExhausted`, `Breakpoint`, a fault, …;
//!    [`Backend::step`] runs one instruction; [`Backend::kicker`] interrupts a run from
//!    another thread.
//! 5. **Hook port I/O and breakpoints**: register a [`PortHook`] (two closures) or your own
//!    [`Device`] on the bus before the run; [`Backend::set_breakpoints`] stops before an
//!    instruction at a linear address.
//! 6. **Inspect and modify state**: [`Backend::state`] / [`Backend::set_state`] for the CPU,
//!    [`Machine::ram`] / [`Machine::ram_mut`] for memory, [`Machine::screen_text`] for the
//!    VGA text screen, [`IoBus::uart`] and friends for device state.
//! 7. **Save and restore**: [`snapshot::save`] encodes the whole machine with the CPU's
//!    [`Backend::cpu_snapshot`] (hidden segment state, interrupt shadow, halted state, pending
//!    events); [`snapshot::restore`] loads it into a machine built the same way and
//!    [`Backend::restore_cpu_snapshot`] continues it on either backend.
//!
//! ```
//! use picoqemu::{
//!     load_image, Backend, Breakpoint, BreakpointKind, Gpr, ImageKind, InterpBackend, IoBus,
//!     Machine, MachineConfig, PortHook, RunLimits, StopReason,
//! };
//! use std::sync::{Arc, Mutex};
//!
//! // The article's program: draws "Hello World!" in VGA text memory at 0xB8000, then hlt.
//! let image = picoqemu::guests::hello()?;
//! let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing())?;
//! let start = load_image(&mut machine, &image, ImageKind::Raw)?;
//!
//! // A port hook (the program does no port I/O, so it stays silent).
//! let writes = Arc::new(Mutex::new(0u32));
//! let counter = Arc::clone(&writes);
//! machine
//!     .bus_mut()
//!     .register(PortHook::new("my port", 0x300..=0x303).on_write(move |_, _| *counter.lock().unwrap() += 1))?;
//!
//! let mut cpu = InterpBackend::new();
//! cpu.set_state(&start)?;
//! // Stop before the `hlt` at 0000:0039 and look at the registers.
//! cpu.set_breakpoints(&[Breakpoint { linear: 0x39, kind: BreakpointKind::Software }])?;
//! let stop = cpu.run(&mut machine, RunLimits::instructions(100_000))?;
//! assert_eq!(stop, StopReason::Breakpoint { cs: 0, ip: 0x39 });
//! let mut state = cpu.state()?;
//! assert_eq!(state.reg(Gpr::Edi) & 0xFFFF, 800); // 400 characters drawn, two bytes each
//!
//! // Modify the state, drop the breakpoint, and run to the end.
//! state.set_reg(Gpr::Eax, 0x1234);
//! cpu.set_state(&state)?;
//! cpu.set_breakpoints(&[])?;
//! assert_eq!(cpu.run(&mut machine, RunLimits::instructions(100_000))?, StopReason::Halted);
//! assert_eq!(cpu.state()?.reg(Gpr::Eax) & 0xFFFF, 0x1234);
//!
//! let screen = machine.screen_text();
//! assert!(screen.starts_with(r" _   _      _ _        __        __         _     _ _"));
//! assert_eq!(*writes.lock().unwrap(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/embed.rs` (`cargo run --release --example embed`) goes further: it runs the same
//! program on both backends and compares them, counts a guest's port writes with a hook, and
//! moves a half-finished guest from one CPU to the other.
pub mod backends;
pub mod cli;
pub mod diff;
pub mod fuzz;
pub mod gdb;
pub mod guests;
pub mod inspect;
pub mod options;
pub mod signals;
pub mod sst;
pub mod state;
pub mod workloads;

pub use picoqemu_core;
pub use picoqemu_core::devices::PortHook;
pub use picoqemu_core::snapshot;
pub use picoqemu_core::{
    load_image, Backend, BackendError, BackendStats, Breakpoint, BreakpointKind, CpuState, Device, Gpr,
    GuestRam, ImageKind, IoBus, Kick, Machine, MachineConfig, Platform, RunLimits, SegReg, Segment, StepInfo,
    StopReason,
};
pub use picoqemu_interp;
pub use picoqemu_interp::{InterpBackend, JitMode};
pub use picoqemu_kvm;
pub use picoqemu_kvm::KvmBackend;
