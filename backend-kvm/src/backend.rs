//! [`KvmBackend`]: the `Backend` implementation — vCPU state through sync regs, the run loop
//! that turns KVM exits into bus accesses and stop reasons, instruction budgets by single
//! step, and the public single-step API for lockstep testing.
use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{
    kvm_guest_debug, kvm_regs, kvm_sregs, kvm_vcpu_events, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
    KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_SYNC_X86_EVENTS,
    KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS, KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW,
};
use kvm_ioctls::{SyncReg, VcpuExit};
use picoqemu_core::{
    Backend, BackendError, BackendStats, Breakpoint, CpuSnapshot, CpuState, ExitCounts, IoAction, IoBus,
    Kick, Machine, RunLimits, StepInfo, StopReason, Watchpoint,
};

use crate::exits::{self, InsnKind};
use crate::iodata;
use crate::step::{classify, PcSnap, StepEvent};
use crate::vm::Vm;
use crate::watchdog::Watchdog;
use crate::KvmError;

mod debug;
mod irq;
mod snapshot;
mod ticks;
mod watch;

/// How to build a [`KvmBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvmOptions {
    /// Coalesce guest writes to the ports the bus's devices declare coalescible (today port
    /// 0xE9 and COM1's THR 0x3F8; [`picoqemu_core::IoBus::coalescible_ranges`]) in KVM's
    /// ring instead of exiting for each (on by default). A port's zone is registered on its first write
    /// (handled as an ordinary exit), so a guest that never uses it pays nothing (a zone adds
    /// 13–17 ms to the VM's destruction here). Writes are replayed through the bus in order
    /// before any exit is handled and at the end of every run, so device output and UART
    /// semantics (DLAB, loopback) are unchanged; reads of those ports still exit.
    pub coalesced_pio: bool,
    /// Coalesce guest writes to the MMIO ranges the devices declare coalescible (today the
    /// MMIO console's output-only data register, offsets 0–3 of its page) in the same ring
    /// (on by default; nothing to do when the machine has no such device). Registered lazily on
    /// the first write there, like the PIO zones. Reads (the count at offset 4 included)
    /// still exit, and the ring is drained before they are served, so they see every earlier
    /// write.
    pub coalesced_mmio: bool,
    /// Give the guest the host's supported CPUID (`KVM_GET_SUPPORTED_CPUID`, as
    /// `qemu -cpu host` does) instead of picoqemu's own CPU model, the one the interpreter
    /// presents (leaf 0: max leaf 1, "PicoQEMU x86"; leaf 1: family 5 model 2 stepping 1,
    /// TSC, CX8, CMOV). Off by default: the model makes CPUID the same on both backends and
    /// on every host, and asking KVM costs about 0.3 ms per process here, which made
    /// `picoqemu run` start slower than a bare KVM runner. Measured on our PVM hosts: leaf 0
    /// and every leaf's EAX/EBX follow the model, but leaf 1 ECX/EDX still report the host's
    /// feature bits (PVM fills them in), and FXSAVE, MOVBE (#UD) and RDTSCP (emulation
    /// failure) behave the same under both tables. On VMX/SVM hosts KVM's emulator gates a
    /// few instructions (MOVBE, FXSAVE, RDPID) on the guest's CPUID.
    pub host_cpuid: bool,
}

impl Default for KvmOptions {
    fn default() -> Self {
        KvmOptions { coalesced_pio: true, coalesced_mmio: true, host_cpuid: false }
    }
}

/// Counters of a [`KvmBackend`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvmStats {
    /// Calls to `run` and `step`.
    pub runs: u64,
    /// Returns of `KVM_RUN` to user space (every exit, including `EINTR`).
    pub exits: u64,
    /// Port-I/O exits (one per `KVM_EXIT_IO`, whatever its count).
    pub pio_exits: u64,
    /// MMIO exits.
    pub mmio_exits: u64,
    /// Writes replayed from the coalesced ring (they took no exit).
    pub coalesced_writes: u64,
    /// Single steps taken (including REP chunks).
    pub steps: u64,
    /// Instructions retired under single step (REP chunks that leave IP on the REP excluded).
    pub stepped_instructions: u64,
    /// Runs without an instruction budget (their instructions cannot be counted).
    pub free_runs: u64,
    /// External interrupts injected with `KVM_INTERRUPT`.
    pub interrupts: u64,
    /// Interrupt-window exits (`KVM_EXIT_IRQ_WINDOW_OPEN`).
    pub irq_window_exits: u64,
    /// Every exit by reason (`--stats`), counted where `KVM_RUN` returns.
    pub exit_reasons: ExitCounts,
}

/// Exits of a free run during which KVM copies the special registers into the sync-regs area
/// on every exit, as it always does for the general ones. After that many the run stops asking
/// for them (the copy is about 2 % of a port-I/O exit here: `pvm_get_segment` for six
/// segments) and fetches them once with `KVM_GET_SREGS` when it ends (about 5 µs), so short
/// runs pay nothing and exit-heavy runs save the copy on all but their first exits.
const FULL_SYNC_EXITS: u32 = 64;

/// What `KVM_RUN` returned, copied out of the borrowed `VcpuExit`. It holds no pointer into
/// `kvm_run`: the data of port I/O and MMIO reads is re-derived from a fresh `&mut kvm_run`
/// when it is handled ([`crate::iodata`]).
enum Exit {
    /// `len` is the `size * count` bytes kvm-ioctls sliced out for the exit.
    IoOut {
        port: u16,
        len: usize,
    },
    IoIn {
        port: u16,
        len: usize,
    },
    MmioRead,
    MmioWrite {
        addr: u64,
        data: [u8; 8],
        len: usize,
    },
    Hlt,
    Shutdown,
    Debug,
    IrqWindow,
    InternalError,
    Interrupted,
    Other(String),
}

impl Exit {
    /// The exit's kind, for messages.
    fn name(&self) -> &str {
        match self {
            Exit::IoOut { .. } => "KVM_EXIT_IO (out)",
            Exit::IoIn { .. } => "KVM_EXIT_IO (in)",
            Exit::MmioRead => "KVM_EXIT_MMIO (read)",
            Exit::MmioWrite { .. } => "KVM_EXIT_MMIO (write)",
            Exit::Hlt => "KVM_EXIT_HLT",
            Exit::Shutdown => "KVM_EXIT_SHUTDOWN",
            Exit::Debug => "KVM_EXIT_DEBUG",
            Exit::IrqWindow => "KVM_EXIT_IRQ_WINDOW_OPEN",
            Exit::InternalError => "KVM_EXIT_INTERNAL_ERROR",
            Exit::Interrupted => "EINTR",
            Exit::Other(m) => m,
        }
    }
}

/// A KVM VM with one vCPU running the real-mode guest of one [`Machine`].
#[derive(Debug)]
pub struct KvmBackend {
    /// The VM; it keeps the RAM of the `Machine` it was created for mapped, and names it.
    vm: Vm,
    /// Register state of the fresh vCPU: every field `CpuState` does not carry comes from here.
    tregs: kvm_regs,
    tsregs: kvm_sregs,
    /// Whether KVM_SET_GUEST_DEBUG single-step is on now.
    single_step: bool,
    /// CS base inside KVM as of the last `KVM_RUN` (the sync-regs area may hold a pending
    /// load instead); see [`KvmBackend::park_rip_for_guest_debug`].
    kvm_cs_base: u64,
    /// The last exit was port I/O or MMIO that KVM completes only on the next `KVM_RUN`.
    io_pending: bool,
    /// False while a long free run has switched off the per-exit copy of the special
    /// registers (see [`FULL_SYNC_EXITS`]): the sync-regs area's `sregs` are then stale.
    sregs_synced: bool,
    watchdog: Watchdog,
    stats: KvmStats,
    /// Linear addresses of the execution breakpoints (at most 4: debug registers DR0-DR3).
    breakpoints: Vec<u32>,
    /// Data watchpoints: a run with any single-steps and checks them (`backend/watch.rs`).
    watches: watch::Watches,
    /// Whether KVM has `KVM_GUESTDBG_USE_HW_BP` with `breakpoints` now (free runs only).
    hw_bp: bool,
    /// What the last single step did.
    last_step: StepInfo,
    /// The wall-clock deadline of the run in progress, and the hang check's state.
    clock: ticks::RunClock,
    /// A vector queued with `KVM_INTERRUPT` that may not have reached the guest yet.
    injecting: Option<u8>,
    /// A restored snapshot's acknowledged, undelivered interrupt, injected when the next run
    /// starts.
    pending_vector: Option<u8>,
    /// The last run or step ended with the CPU in the HLT state.
    halted: bool,
    /// A restored snapshot was halted: the next run starts in the HLT state.
    resume_halt: bool,
    /// Added to the stepped-instruction count in snapshots (the count a restored one had).
    instructions_base: u64,
    /// Bochs' magic breakpoint is on: runs are single-stepped (see `backend/debug.rs`).
    magic: bool,
}

impl KvmBackend {
    /// Checks that /dev/kvm can be opened, speaks API version 12 and has the capabilities
    /// the backend needs (user memory, sync regs). It creates no VM: creating and destroying
    /// one costs about 0.6 ms here, a sixth of `picoqemu run`'s whole start-up; a host that
    /// passes the probe but refuses `KVM_CREATE_VM` makes [`KvmBackend::new`] fail with
    /// [`KvmError::Unavailable`] instead.
    pub fn probe() -> Result<(), KvmError> {
        let kvm = kvm_ioctls::Kvm::new()
            .map_err(|e| KvmError::Unavailable(format!("cannot open /dev/kvm: {e}")))?;
        let v = kvm.get_api_version();
        if v != 12 {
            return Err(KvmError::Unavailable(format!("unexpected KVM API version {v}")));
        }
        crate::vm::check_capabilities(&kvm)
    }

    /// Creates a VM whose memory is `machine`'s RAM, with default [`KvmOptions`].
    pub fn new(machine: &Machine) -> Result<Self, KvmError> {
        Self::with_options(machine, KvmOptions::default())
    }

    /// Creates a VM whose memory is `machine`'s RAM (around its MMIO holes). The vCPU starts
    /// in real mode with `CpuState::default()`.
    pub fn with_options(machine: &Machine, options: KvmOptions) -> Result<Self, KvmError> {
        let holes = machine.bus().mmio_regions();
        let mut zones = machine.bus().coalescible_ranges();
        zones.retain(|z| match z.space {
            picoqemu_core::Space::Pio => options.coalesced_pio,
            picoqemu_core::Space::Mmio => options.coalesced_mmio,
        });
        let a20_wrap = machine.config().a20_wrap;
        let mut vm = Vm::new(machine.ram().handle(), &holes, a20_wrap, &zones, options.host_cpuid)?;
        let tregs = vm.vcpu.get_regs().map_err(KvmError::ioctl("KVM_GET_REGS"))?;
        let tsregs = vm.vcpu.get_sregs().map_err(KvmError::ioctl("KVM_GET_SREGS"))?;
        let sync = vm.vcpu.sync_regs_mut();
        sync.regs = tregs;
        sync.sregs = tsregs;
        let mut b = KvmBackend {
            vm,
            tregs,
            tsregs,
            single_step: false,
            kvm_cs_base: tsregs.cs.base,
            io_pending: false,
            sregs_synced: true,
            watchdog: Watchdog::default(),
            stats: KvmStats::default(),
            breakpoints: Vec::new(),
            watches: watch::Watches::default(),
            hw_bp: false,
            last_step: StepInfo::Instruction,
            clock: ticks::RunClock::default(),
            injecting: None,
            pending_vector: None,
            halted: false,
            resume_halt: false,
            instructions_base: 0,
            magic: false,
        };
        b.load(&CpuState::default());
        Ok(b)
    }

    /// Ends every run and step with [`StopReason::Interrupted`] once `flag` is set (Ctrl-C). A
    /// signal handler that sets it should also call [`crate::kick_current_thread`], so a vCPU
    /// between two `KVM_RUN`s does not enter the next one; a signal arriving inside `KVM_RUN`
    /// ends it with `EINTR` by itself.
    pub fn with_interrupt(mut self, flag: &'static std::sync::atomic::AtomicBool) -> Self {
        self.watchdog.set_interrupt(flag);
        self
    }

    /// Whether writes to the coalescible ports (0xE9, 0x3F8) are coalesced (the option, if the
    /// host supports it) once the guest has written to the port.
    pub fn coalesced_pio(&self) -> bool {
        self.vm.coalesces_pio()
    }

    /// The ports that have a coalesced zone registered so far, in the bus's order (0xE9
    /// before 0x3F8): empty
    /// until the guest writes to one of them.
    pub fn coalesced_zones(&self) -> Vec<u16> {
        self.vm.coalesced_zones()
    }

    /// The coalesced MMIO zone `(guest-physical base, length)` once the guest has written to
    /// the MMIO console's data register with coalescing on: `None` before that, without the
    /// console, with the option off, or when the host lacks coalesced MMIO.
    pub fn coalesced_mmio_zone(&self) -> Option<(u64, u64)> {
        self.vm.coalesced_mmio_zone()
    }

    /// Whether MMIO console writes will be coalesced once the guest writes there (the
    /// option, a machine with the console, and a host with coalesced MMIO).
    pub fn coalesced_mmio(&self) -> bool {
        self.vm.coalesces_mmio()
    }

    /// Detailed counters (exits by kind, steps, coalesced writes).
    pub fn kvm_stats(&self) -> KvmStats {
        self.stats
    }

    /// [`Backend::reset`]: see there.
    fn reset_vcpu(&mut self, machine: &mut Machine) -> Result<(), KvmError> {
        if let Err(r) = self.check_machine(machine) {
            return Err(KvmError::Memory(r.to_string()));
        }
        if self.io_pending {
            self.complete_pending(machine.bus_mut());
        }
        self.watchdog.disarm()?;
        self.set_single_step(false)?;
        let sync = self.vm.vcpu.sync_regs_mut();
        sync.events = kvm_vcpu_events {
            flags: KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING,
            ..Default::default()
        };
        let run = self.vm.vcpu.get_kvm_run();
        run.kvm_dirty_regs |= u64::from(KVM_SYNC_X86_EVENTS);
        run.request_interrupt_window = 0;
        self.last_step = StepInfo::Instruction;
        self.injecting = None;
        self.pending_vector = None;
        self.halted = false;
        self.resume_halt = false;
        self.load(&CpuState::default());
        Ok(())
    }

    /// Executes one single step (see [`StepEvent`] for what a step can be) and returns what
    /// it did; [`Backend::step`] is the same step without a deadline, reported as a
    /// [`StopReason`] plus [`Backend::last_step`]. `deadline` bounds the step; the watchdog
    /// stays armed between steps with the same deadline, so a session pays for arming once.
    /// Port writes the step makes reach `machine.bus()` before it returns.
    pub fn single_step(&mut self, machine: &mut Machine, deadline: Option<Instant>) -> StepEvent {
        self.stats.runs += 1;
        if let Err(r) = self.check_machine(machine) {
            return StepEvent::Stopped(r);
        }
        if self.watchdog.deadline() != deadline {
            let armed = match deadline {
                Some(d) => self.watchdog.arm(d),
                None => self.watchdog.disarm(),
            };
            if let Err(e) = armed {
                return StepEvent::Stopped(StopReason::HostError(e.to_string()));
            }
        }
        if let Err(e) = self.set_single_step(true) {
            return StepEvent::Stopped(StopReason::HostError(e.to_string()));
        }
        self.enter();
        let ev = self.step_inner(machine);
        self.leave(machine);
        ev
    }

    /// Ends a session started by [`KvmBackend::single_step`] calls: disarms the watchdog
    /// and leaves single-step mode (the next `run` without a budget would do it anyway).
    pub fn end_steps(&mut self) -> Result<(), KvmError> {
        self.watchdog.disarm()?;
        self.set_single_step(false)
    }

    /// Refuses a machine other than the one this VM was created for: its RAM must be the very
    /// mapping the VM holds (identity, not host address: a new machine whose RAM happens to be
    /// mapped where a dropped one's was is refused too, as the VM keeps that mapping alive).
    fn check_machine(&self, machine: &Machine) -> Result<(), StopReason> {
        if !self.vm.ram.is_ram_of(machine.ram()) {
            return Err(StopReason::HostError(format!(
                "this KVM VM was created for another machine (its RAM: {:#x} bytes at {:p}; this machine's: {:#x} bytes)",
                self.vm.ram.len(),
                self.vm.ram.host_address(),
                machine.ram().len()
            )));
        }
        Ok(())
    }

    /// Writes `state` into the sync-regs area and marks it dirty: KVM loads it on the next
    /// `KVM_RUN`, costing no extra ioctl.
    fn load(&mut self, state: &CpuState) {
        let (tregs, tsregs) = (self.tregs, self.tsregs);
        let sync = self.vm.vcpu.sync_regs_mut();
        crate::regs::write_state(state, &tregs, &tsregs, &mut sync.regs, &mut sync.sregs);
        self.vm.vcpu.get_kvm_run().kvm_dirty_regs |= u64::from(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS);
    }

    fn current(&mut self) -> CpuState {
        let sync = self.vm.vcpu.sync_regs_mut();
        crate::regs::read_state(&sync.regs, &sync.sregs)
    }

    /// Single-step mode on or off; off, the breakpoints (if any) are armed in KVM.
    fn set_single_step(&mut self, on: bool) -> Result<(), KvmError> {
        self.set_debug(on, !on && !self.breakpoints.is_empty())
    }

    /// Sets KVM's guest-debug control: single step and/or the hardware breakpoints.
    fn set_debug(&mut self, single: bool, hw_bp: bool) -> Result<(), KvmError> {
        if self.single_step == single && self.hw_bp == hw_bp {
            return Ok(());
        }
        if single && !self.single_step {
            self.park_rip_for_guest_debug()?;
        }
        let mut control = 0;
        if single {
            control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP;
        }
        if hw_bp {
            control |= KVM_GUESTDBG_ENABLE | kvm_bindings::KVM_GUESTDBG_USE_HW_BP;
        }
        let mut dbg = kvm_guest_debug { control, ..Default::default() };
        if hw_bp {
            dbg.arch = debug::debug_registers(&self.breakpoints);
        }
        self.vm.vcpu.set_guest_debug(&dbg).map_err(KvmError::ioctl("KVM_SET_GUEST_DEBUG"))?;
        self.single_step = single;
        self.hw_bp = hw_bp;
        Ok(())
    }

    /// Moves KVM's RIP to linear 0xFFFFFFF0 (the reset vector) just for the coming
    /// `KVM_SET_GUEST_DEBUG`; the sync-regs area keeps the real registers and is marked dirty,
    /// so `KVM_RUN` loads them back.
    ///
    /// `KVM_SET_GUEST_DEBUG` with single step records `singlestep_rip`, the linear RIP at that
    /// moment, and from then on KVM ORs TF into the vCPU's real RFLAGS whenever RFLAGS is
    /// written while the guest is at that address. Here that leaked TF into the FLAGS of a
    /// fault frame when the instruction at `singlestep_rip` faulted. On a fresh VM the
    /// recorded RIP is the reset vector, which a real-mode guest never executes; on a reused
    /// VM it was wherever the previous program stopped (often inside the next program's
    /// code). Parking RIP makes every session behave like the first one on a fresh VM. Cost:
    /// one `KVM_SET_REGS` per switch into single-step mode, not per step.
    fn park_rip_for_guest_debug(&mut self) -> Result<(), KvmError> {
        let mut parked = self.vm.vcpu.sync_regs_mut().regs;
        // KVM's CS base now: what the last KVM_RUN left, not a pending load.
        parked.rip = u64::from(0xFFFF_FFF0u32.wrapping_sub(self.kvm_cs_base as u32));
        self.vm.vcpu.set_regs(&parked).map_err(KvmError::ioctl("KVM_SET_REGS"))?;
        self.vm.vcpu.get_kvm_run().kvm_dirty_regs |= u64::from(KVM_SYNC_X86_REGS);
        Ok(())
    }

    fn immediate_exit_ptr(&mut self) -> *mut u8 {
        &mut self.vm.vcpu.get_kvm_run().immediate_exit
    }

    fn enter(&mut self) {
        let p = self.immediate_exit_ptr();
        self.watchdog.enter(p);
    }

    /// Ends a run or step: replays coalesced writes, leaves the watchdog section and flushes
    /// device output.
    fn leave(&mut self, machine: &mut Machine) {
        self.drain_coalesced(machine.bus_mut());
        self.watchdog.leave();
        machine.bus_mut().flush();
    }

    /// One `KVM_RUN`.
    fn kvm_run(&mut self) -> Exit {
        self.stats.exits += 1;
        self.io_pending = false;
        let exit = match self.vm.vcpu.run() {
            Ok(VcpuExit::IoOut(port, d)) => Exit::IoOut { port, len: d.len() },
            Ok(VcpuExit::IoIn(port, d)) => Exit::IoIn { port, len: d.len() },
            Ok(VcpuExit::MmioRead(..)) => Exit::MmioRead,
            Ok(VcpuExit::MmioWrite(addr, d)) => {
                let mut data = [0u8; 8];
                let len = d.len().min(8);
                data[..len].copy_from_slice(&d[..len]);
                Exit::MmioWrite { addr, data, len }
            }
            Ok(VcpuExit::Hlt) => Exit::Hlt,
            Ok(VcpuExit::Shutdown) => Exit::Shutdown,
            Ok(VcpuExit::Debug(_)) => Exit::Debug,
            Ok(VcpuExit::IrqWindowOpen) => Exit::IrqWindow,
            Ok(VcpuExit::InternalError) => Exit::InternalError,
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                Exit::Other(format!("KVM_EXIT_FAIL_ENTRY (hardware reason {reason:#x}, cpu {cpu})"))
            }
            Ok(other) => Exit::Other(format!("unexpected KVM exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR => Exit::Interrupted,
            Err(e) => Exit::Other(format!("KVM_RUN failed: {e}")),
        };
        count_exit(&mut self.stats.exit_reasons, &exit);
        // KVM stores the registers it runs with into the sync-regs area on every return (the
        // special ones only while `sregs_synced`).
        if self.sregs_synced {
            self.kvm_cs_base = self.vm.vcpu.sync_regs_mut().sregs.cs.base;
        }
        if matches!(exit, Exit::IoOut { .. } | Exit::IoIn { .. } | Exit::MmioRead | Exit::MmioWrite { .. }) {
            self.io_pending = true;
        }
        if !matches!(exit, Exit::Interrupted) {
            // The guest was entered: an injected vector is in KVM's events now, or delivered.
            self.injecting = None;
        }
        exit
    }

    /// Passes one I/O or MMIO exit to the bus. `Ok(Some(reason))` when the bus ends the run.
    fn handle_io(&mut self, bus: &mut IoBus, exit: &Exit) -> Result<Option<StopReason>, StopReason> {
        match *exit {
            Exit::IoOut { port, len } => {
                self.stats.pio_exits += 1;
                let run = self.vm.vcpu.get_kvm_run();
                let (width, buf) = iodata::pio(run, self.vm.run_size, len).map_err(StopReason::HostError)?;
                for chunk in buf.chunks_exact(width) {
                    if let IoAction::Stop(r) = bus.pio_write(port, chunk) {
                        return Ok(Some(r));
                    }
                }
                if self.vm.wants_zone(port) {
                    // First write to a coalescible port: handled above as an ordinary exit;
                    // later ones go to the ring (drained before the next exit is handled).
                    self.vm.coalesce_port(port).map_err(|e| StopReason::HostError(e.to_string()))?;
                }
                Ok(None)
            }
            Exit::IoIn { port, len } => {
                self.stats.pio_exits += 1;
                // KVM reads the area back on the next KVM_RUN.
                let run = self.vm.vcpu.get_kvm_run();
                let (width, buf) = iodata::pio(run, self.vm.run_size, len).map_err(StopReason::HostError)?;
                buf.fill(0);
                for chunk in buf.chunks_exact_mut(width) {
                    bus.pio_read(port, chunk);
                }
                Ok(None)
            }
            Exit::MmioRead => {
                self.stats.mmio_exits += 1;
                let (addr, buf) =
                    iodata::mmio_read(self.vm.vcpu.get_kvm_run()).map_err(StopReason::HostError)?;
                buf.fill(0);
                bus.mmio_read(addr, buf);
                Ok(None)
            }
            Exit::MmioWrite { addr, data, len } => {
                self.stats.mmio_exits += 1;
                if let IoAction::Stop(r) = bus.mmio_write(addr, &data[..len]) {
                    return Ok(Some(r));
                }
                if self.vm.wants_mmio_zone(addr, len) {
                    // First write to the console's data register: handled above as an ordinary
                    // exit; later ones go to the ring (drained before the next exit is handled).
                    self.vm.coalesce_mmio(addr, len).map_err(|e| StopReason::HostError(e.to_string()))?;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Replays writes KVM coalesced into its ring, in order, through the bus.
    fn drain_coalesced(&mut self, bus: &mut IoBus) {
        if !self.vm.ring_active() {
            return;
        }
        while let Ok(Some(e)) = self.vm.vcpu.coalesced_mmio_read() {
            self.stats.coalesced_writes += 1;
            let len = (e.len as usize).min(e.data.len());
            // SAFETY: `pio`/`pad` are two names for the same u32 of a plain C union.
            let pio = unsafe { e.__bindgen_anon_1.pio } != 0;
            // Only ranges the devices declared coalescible are in the ring; a write there
            // never stops the run (see `picoqemu_core::Claim::coalescible`).
            let _ = if pio {
                bus.pio_write(e.phys_addr as u16, &e.data[..len])
            } else {
                bus.mmio_write(e.phys_addr, &e.data[..len])
            };
        }
    }

    /// Lets KVM finish an I/O instruction whose exit we handled (it completes it on the next
    /// `KVM_RUN`) without running further: `KVM_RUN` with `immediate_exit` set. Needed before
    /// reading state after a stop on I/O (on VMX, RIP moves past an OUT only then) and before
    /// loading a new state (a pending IN would otherwise write AL into it).
    fn complete_pending(&mut self, bus: &mut IoBus) {
        let p = self.immediate_exit_ptr();
        for _ in 0..64 {
            if !self.io_pending {
                break;
            }
            self.vm.vcpu.set_kvm_immediate_exit(1);
            let exit = self.kvm_run();
            self.drain_coalesced(bus);
            match exit {
                Exit::IoIn { .. } | Exit::IoOut { .. } | Exit::MmioRead | Exit::MmioWrite { .. } => {
                    // A REP INS/OUTS continues: it needs its data; output after the stop is
                    // still what the guest did. The run is ending anyway.
                    let _ = self.handle_io(bus, &exit);
                }
                _ => break,
            }
        }
        self.watchdog.clear_immediate_exit(p);
    }

    /// The stop for `KVM_EXIT_INTERNAL_ERROR`.
    fn internal_error(&mut self, machine: &mut Machine) -> StopReason {
        let st = self.current();
        let (cs, ip) = (st.cs(), st.eip);
        let run = self.vm.vcpu.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, whose members `internal` and
        // `emulation_failure` overlay the same plain-data bytes.
        let (suberror, ndata, data) = unsafe {
            let i = run.__bindgen_anon_1.internal;
            (i.suberror, i.ndata, i.data)
        };
        if suberror != KVM_INTERNAL_ERROR_EMULATION {
            let n = (ndata as usize).min(data.len());
            return StopReason::HostError(format!(
                "KVM_EXIT_INTERNAL_ERROR suberror {suberror} at {cs:04x}:{ip:04x} (data {:x?})",
                &data[..n]
            ));
        }
        // SAFETY: as above; suberror EMULATION means `emulation_failure` is the layout.
        let ef = unsafe { run.__bindgen_anon_1.emulation_failure };
        // SAFETY: the insn_size/insn_bytes union has a single plain-data member.
        let raw = unsafe { ef.__bindgen_anon_1.__bindgen_anon_1 };
        let has_bytes =
            ndata >= 3 && ef.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0;
        let bytes = if has_bytes && raw.insn_size > 0 {
            let n = usize::from(raw.insn_size).min(raw.insn_bytes.len());
            exits::insn_bytes(&raw.insn_bytes[..n], ip as u16)
        } else {
            let (buf, n) =
                exits::fetch(machine.ram_mut().bytes(), st.seg(picoqemu_core::SegReg::Cs).base, ip as u16);
            exits::insn_bytes(&buf[..n], ip as u16)
        };
        StopReason::EmulationFailure { cs, ip, bytes }
    }

    /// Handles an exit that is not I/O and not a debug exit. `None` means "keep running".
    fn terminal(&mut self, machine: &mut Machine, exit: Exit) -> Option<StopReason> {
        match exit {
            Exit::Hlt => Some(StopReason::Halted),
            Exit::Shutdown => Some(StopReason::TripleFault),
            Exit::InternalError => Some(self.internal_error(machine)),
            Exit::Interrupted => {
                if self.watchdog.take_kick() {
                    Some(StopReason::Interrupted)
                } else if self.watchdog.fired() {
                    Some(StopReason::Timeout)
                } else {
                    // Some other signal: go on (keeping a watchdog expiry that races with it).
                    let p = self.immediate_exit_ptr();
                    self.watchdog.clear_immediate_exit(p);
                    None
                }
            }
            Exit::Other(m) => Some(StopReason::HostError(m)),
            Exit::Debug => Some(self.debug_exit()),
            Exit::IrqWindow => {
                self.stats.irq_window_exits += 1;
                None
            }
            Exit::IoOut { .. } | Exit::IoIn { .. } | Exit::MmioRead | Exit::MmioWrite { .. } => None,
        }
    }

    /// Runs without a budget until a stop. After [`FULL_SYNC_EXITS`] exits KVM stops copying
    /// the special registers on each exit; they are fetched again before anything reads them
    /// (a terminal exit, a stop requested by the bus, the end of the run).
    fn run_free(&mut self, machine: &mut Machine) -> StopReason {
        if let Some(r) = self.step_off_breakpoint(machine) {
            return r;
        }
        let mut exits = 0u32;
        let reason = loop {
            if exits == FULL_SYNC_EXITS {
                self.stop_sregs_sync();
            }
            exits = exits.saturating_add(1);
            if let Err(e) = self.offer_interrupt(machine) {
                break StopReason::HostError(e.to_string());
            }
            let exit = self.kvm_run();
            self.drain_coalesced(machine.bus_mut());
            match exit {
                Exit::IoOut { .. } | Exit::IoIn { .. } | Exit::MmioRead | Exit::MmioWrite { .. } => {
                    match self.handle_io(machine.bus_mut(), &exit) {
                        Ok(None) => {}
                        Ok(Some(r)) | Err(r) => break r,
                    }
                }
                Exit::Interrupted => match self.on_signal(machine) {
                    Ok(None) => {}
                    Ok(Some(r)) => break r,
                    Err(e) => break StopReason::HostError(e.to_string()),
                },
                Exit::Hlt => match self.after_hlt(machine) {
                    Ok(None) => {}
                    Ok(Some(r)) => {
                        self.halted = true;
                        break r;
                    }
                    Err(e) => break StopReason::HostError(e.to_string()),
                },
                other => {
                    // `terminal` may read the state (an emulation failure names CS:IP).
                    if let Err(e) = self.resync_sregs() {
                        break StopReason::HostError(e.to_string());
                    }
                    if let Some(r) = self.terminal(machine, other) {
                        break r;
                    }
                }
            }
        };
        match self.resync_sregs() {
            Ok(()) => reason,
            Err(e) => StopReason::HostError(e.to_string()),
        }
    }

    /// Switches KVM's per-exit copy of the special registers off: the sync-regs area's
    /// `sregs` go stale until [`KvmBackend::resync_sregs`].
    fn stop_sregs_sync(&mut self) {
        self.vm.vcpu.clear_sync_valid_reg(SyncReg::SystemRegister);
        self.sregs_synced = false;
    }

    /// Switches the per-exit copy of the special registers back on, fetching them with
    /// `KVM_GET_SREGS` into the sync-regs area if they are stale.
    fn resync_sregs(&mut self) -> Result<(), KvmError> {
        if self.sregs_synced {
            return Ok(());
        }
        let sregs = self.vm.vcpu.get_sregs().map_err(KvmError::ioctl("KVM_GET_SREGS"))?;
        self.vm.vcpu.sync_regs_mut().sregs = sregs;
        self.kvm_cs_base = sregs.cs.base;
        self.vm.vcpu.set_sync_valid_reg(SyncReg::SystemRegister);
        self.sregs_synced = true;
        Ok(())
    }

    /// Runs at most `budget` instructions by single step (`u64::MAX`: until a stop, for the
    /// magic breakpoint; then an instruction KVM cannot step, `vmcall`, ends the run).
    fn run_budget(&mut self, machine: &mut Machine, budget: u64) -> StopReason {
        let mut retired = 0u64;
        while retired < budget {
            let watched = if self.watches.is_empty() {
                None
            } else {
                let state = self.current();
                Some(self.watches.before_step(machine.ram_mut().bytes(), &state))
            };
            let magic = self.magic && self.at_magic_break(machine);
            let ev = self.step_inner(machine);
            if magic && ev == StepEvent::Retired {
                return self.magic_stop();
            }
            if budget == u64::MAX && ev == StepEvent::NoProgress {
                return self.cannot_run(machine);
            }
            match ev {
                StepEvent::Retired
                | StepEvent::Io
                | StepEvent::NoProgress
                | StepEvent::FaultDelivered { halted: false } => retired += 1,
                StepEvent::RepChunk => {}
                StepEvent::Halted | StepEvent::FaultDelivered { halted: true } => {
                    self.halted = true;
                    return StopReason::Halted;
                }
                StepEvent::Stopped(r) => return r,
            }
            if let Some(hit) = watched {
                if let Some(hit) = hit.or_else(|| self.watches.after_step(machine.ram_mut().bytes())) {
                    let state = self.current();
                    return watch::stop(&state, hit);
                }
            }
            if retired < budget {
                if let Some(r) = self.breakpoint_here() {
                    return r;
                }
            }
        }
        if budget == 1 {
            StopReason::StepDone
        } else {
            StopReason::BudgetExhausted
        }
    }

    /// CS:IP, FLAGS, SS:SP now and the six bytes below SS:SP — or, with `frame_of`, below
    /// that earlier snapshot's SS:SP: after a step the fault frame, if any, lies below the
    /// *pre-step* SP (the step itself moved SP past it).
    fn snap(&mut self, ram: &[u8], frame_of: Option<&PcSnap>) -> PcSnap {
        let sync = self.vm.vcpu.sync_regs_mut();
        let (regs, sregs) = (&sync.regs, &sync.sregs);
        let (ss_base, sp) = (sregs.ss.base as u32, regs.rsp as u16);
        let (fb, fsp) = frame_of.map_or((ss_base, sp), |p| (p.ss_base, p.sp));
        let mut frame = [0u8; 6];
        for (i, b) in frame.iter_mut().enumerate() {
            let a = fb as usize + usize::from(fsp.wrapping_sub(6).wrapping_add(i as u16));
            *b = ram.get(a).copied().unwrap_or(0);
        }
        PcSnap {
            cs: sregs.cs.selector,
            cs_base: sregs.cs.base as u32,
            eip: regs.rip as u32,
            eflags: regs.rflags as u32,
            ss_base,
            sp,
            frame,
        }
    }

    /// True when the byte before the post-step IP is a HLT that some exception vector's IVT
    /// entry points at (the handler's first instruction, executed in the fault step).
    fn handler_hlt(&mut self, ram: &[u8], post: &PcSnap) -> bool {
        let ip = (post.eip as u16).wrapping_sub(1);
        let at = post.cs_base as usize + usize::from(ip);
        if ram.get(at) != Some(&0xF4) {
            return false;
        }
        let ivt = self.vm.vcpu.sync_regs_mut().sregs.idt.base as usize;
        (0..32usize).any(|v| {
            let e = ivt + v * 4;
            match ram.get(e..e + 4) {
                Some(w) => {
                    u16::from_le_bytes([w[0], w[1]]) == ip && u16::from_le_bytes([w[2], w[3]]) == post.cs
                }
                None => false,
            }
        })
    }

    /// One single step with single-step mode already on and the watchdog entered.
    fn step_inner(&mut self, machine: &mut Machine) -> StepEvent {
        self.stats.steps += 1;
        let pre = self.snap(machine.ram_mut().bytes(), None);
        let pre_regs = self.vm.vcpu.sync_regs_mut().regs;
        let (bytes, n) = exits::fetch(machine.ram_mut().bytes(), pre.cs_base, pre.eip as u16);
        let insn = InsnKind::of(&bytes[..n], pre.eip as u16);
        let mut did_io = false;
        loop {
            let exit = self.kvm_run();
            self.drain_coalesced(machine.bus_mut());
            let completed = match exit {
                Exit::Debug => true,
                Exit::IoOut { .. } | Exit::IoIn { .. } | Exit::MmioRead | Exit::MmioWrite { .. } => {
                    match self.handle_io(machine.bus_mut(), &exit) {
                        Ok(None) => {}
                        Ok(Some(r)) | Err(r) => {
                            self.complete_pending(machine.bus_mut());
                            return StepEvent::Stopped(r);
                        }
                    }
                    // KVM finishes the instruction on the next KVM_RUN; stop right after that.
                    did_io = true;
                    self.vm.vcpu.set_kvm_immediate_exit(1);
                    false
                }
                Exit::Interrupted if did_io && !self.watchdog.fired() => {
                    let p = self.immediate_exit_ptr();
                    self.watchdog.clear_immediate_exit(p);
                    true
                }
                other => match self.terminal(machine, other) {
                    Some(StopReason::Halted) => return StepEvent::Halted,
                    Some(r) => return StepEvent::Stopped(r),
                    None => false,
                },
            };
            if completed {
                break;
            }
        }
        if did_io {
            let p = self.immediate_exit_ptr();
            self.watchdog.clear_immediate_exit(p);
        }
        let post = self.snap(machine.ram_mut().bytes(), Some(&pre));
        let hlt = self.handler_hlt(machine.ram_mut().bytes(), &post);
        let post_regs = self.vm.vcpu.sync_regs_mut().regs;
        let rf = u64::from(picoqemu_core::flags::RF);
        let unchanged = post_regs.rflags & !rf == pre_regs.rflags & !rf
            && kvm_regs { rflags: 0, ..post_regs } == kvm_regs { rflags: 0, ..pre_regs };
        let ev = classify(&pre, &insn, &post, did_io, hlt, unchanged);
        self.last_step = step_info(&ev);
        if ev != StepEvent::RepChunk {
            self.stats.stepped_instructions += 1;
            machine.retire(1);
        }
        if matches!(ev, StepEvent::Halted | StepEvent::FaultDelivered { halted: true }) {
            // A HLT ran inside this step and ended in a debug exit (a HLT exit returned above).
            if let Err(r) = self.consume_halt_request(&post) {
                return StepEvent::Stopped(r);
            }
        }
        ev
    }

    /// Consumes the halt request a HLT leaves in KVM when it is emulated under single step.
    ///
    /// In real mode KVM (PVM here, and VMX with invalid guest state) runs the guest in its
    /// emulation loop: the emulated HLT only sets `vcpu->arch.halt_request`, which the loop
    /// turns into `KVM_EXIT_HLT` after the instruction, but under single step the loop
    /// returns with `KVM_EXIT_DEBUG` first and the request stays set. Nothing user space can
    /// set clears it (not `KVM_SET_VCPU_EVENTS`, `KVM_SET_MP_STATE` or new registers), so it
    /// survives `reset` and fires after the next emulated instruction that does not end in a
    /// debug exit: a later single step over a faulting instruction (#DE, #UD, ...) returned
    /// `KVM_EXIT_HLT` with the fault not delivered, and a later free run stopped with
    /// `Halted` after its first instruction.
    ///
    /// The HLT that left it is the byte just before `post`'s IP (the classification saw it
    /// there): run it once more without single step, so KVM emulates the same HLT, finds the
    /// request and exits with `KVM_EXIT_HLT`, then put the post-step registers back. The guest
    /// cannot tell (HLT touches nothing but IP); the cost is one `KVM_RUN` and one
    /// `KVM_SET_GUEST_DEBUG` per HLT stepped over.
    fn consume_halt_request(&mut self, post: &PcSnap) -> Result<(), StopReason> {
        let sync = self.vm.vcpu.sync_regs_mut();
        let (regs, sregs) = (sync.regs, sync.sregs);
        sync.regs.rip = u64::from((post.eip as u16).wrapping_sub(1));
        self.vm.vcpu.get_kvm_run().kvm_dirty_regs |= u64::from(KVM_SYNC_X86_REGS);
        let result = match self.set_debug(false, false) {
            Err(e) => Err(StopReason::HostError(e.to_string())),
            Ok(()) => loop {
                match self.kvm_run() {
                    Exit::Hlt => break Ok(()),
                    Exit::Interrupted if self.watchdog.take_kick() => break Err(StopReason::Interrupted),
                    Exit::Interrupted if self.watchdog.fired() => break Err(StopReason::Timeout),
                    Exit::Interrupted => {
                        let p = self.immediate_exit_ptr();
                        self.watchdog.clear_immediate_exit(p);
                    }
                    other => {
                        self.io_pending = false;
                        break Err(StopReason::HostError(format!(
                            "re-running the HLT at {:04x}:{:04x} to clear KVM's halt request gave {} instead of a HLT exit",
                            post.cs,
                            (post.eip as u16).wrapping_sub(1),
                            other.name()
                        )));
                    }
                }
            },
        };
        let sync = self.vm.vcpu.sync_regs_mut();
        sync.regs = regs;
        sync.sregs = sregs;
        self.vm.vcpu.get_kvm_run().kvm_dirty_regs |= u64::from(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS);
        result
    }
}

impl Backend for KvmBackend {
    fn name(&self) -> &'static str {
        "kvm"
    }

    /// Loads `state` through sync regs (no ioctl; KVM applies it at the next `KVM_RUN`).
    fn set_state(&mut self, state: &CpuState) -> Result<(), BackendError> {
        if self.io_pending {
            // Only reachable if a caller drops a run between an exit and its completion.
            let mut bus = IoBus::capturing();
            self.complete_pending(&mut bus);
        }
        self.load(state);
        Ok(())
    }

    /// The state after the last exit (or as last loaded), from the sync-regs area.
    fn state(&mut self) -> Result<CpuState, BackendError> {
        Ok(self.current())
    }

    fn run(&mut self, machine: &mut Machine, limits: RunLimits) -> Result<StopReason, BackendError> {
        match self.run_machine(machine, limits) {
            StopReason::HostError(m) => Err(BackendError::new("kvm", m)),
            stop => Ok(stop),
        }
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            instructions: (self.stats.free_runs == 0).then_some(self.stats.stepped_instructions),
            exits: Some(self.stats.exits),
            exit_reasons: Some(self.stats.exit_reasons),
        }
    }

    /// One `KVM_SET_GUEST_DEBUG` single step with no deadline (nothing is known to hang KVM
    /// under single step: `vmcall` reports [`StepInfo::NoProgress`]; a kick still ends it).
    /// A REP may stop after a chunk ([`StepInfo::RepChunk`]), a fault runs the handler's
    /// first instruction too ([`StepInfo::FaultMerged`]): see [`Backend::last_step`].
    fn step(&mut self, machine: &mut Machine) -> Result<StopReason, BackendError> {
        let ev = self.single_step(machine, None);
        self.halted = matches!(ev, StepEvent::Halted | StepEvent::FaultDelivered { halted: true });
        match ev {
            StepEvent::Stopped(StopReason::HostError(m)) => Err(BackendError::new("kvm", m)),
            StepEvent::Stopped(r) => Ok(r),
            StepEvent::Halted | StepEvent::FaultDelivered { halted: true } => Ok(StopReason::Halted),
            StepEvent::Retired
            | StepEvent::Io
            | StepEvent::RepChunk
            | StepEvent::NoProgress
            | StepEvent::FaultDelivered { halted: false } => Ok(StopReason::StepDone),
        }
    }

    fn last_step(&self) -> StepInfo {
        self.last_step
    }

    /// Completes any pending I/O, clears pending events, the interrupt shadow and a requested
    /// interrupt window, turns single-step off, disarms the watchdog and loads
    /// `CpuState::default()` (about 20x cheaper than a new VM here). Breakpoints stay.
    fn reset(&mut self, machine: &mut Machine) -> Result<(), BackendError> {
        self.reset_vcpu(machine).map_err(BackendError::from)
    }

    /// Debug registers DR0-DR3 implement both kinds (see the crate docs): at most 4 in all.
    fn set_breakpoints(&mut self, breakpoints: &[Breakpoint]) -> Result<(), BackendError> {
        self.replace_breakpoints(breakpoints)
    }

    /// Any number of watchpoints of any kind; a run with some single-steps (about 150,000
    /// instructions per second here) and checks each instruction's operands and the watched
    /// bytes (`backend/watch.rs`), as KVM here raises no data breakpoints.
    fn set_watchpoints(&mut self, watchpoints: &[Watchpoint]) -> Result<(), BackendError> {
        self.watches.set(watchpoints);
        Ok(())
    }

    fn kicker(&self) -> Option<Arc<dyn Kick>> {
        self.watchdog.kicker().ok().map(|k| Arc::new(k) as Arc<dyn Kick>)
    }

    // Snapshots (`--save-state` / `--load-state`; see `backend/snapshot.rs`).

    fn cpu_snapshot(&mut self) -> Result<CpuSnapshot, BackendError> {
        self.snapshot_cpu().map_err(BackendError::from)
    }

    fn restore_cpu_snapshot(&mut self, snapshot: &CpuSnapshot) -> Result<(), BackendError> {
        if self.io_pending {
            let mut bus = IoBus::capturing();
            self.complete_pending(&mut bus);
        }
        self.restore_snapshot(snapshot).map_err(BackendError::from)
    }

    // Inspection (`--magic-break`).

    /// KVM cannot trap one opcode, so with the magic breakpoint on every run is
    /// single-stepped (about 150,000 instructions/s here against about 1.6 million free, and
    /// no interrupt injection, as in any budgeted run) and the bytes at CS:IP are looked at
    /// before each step: exact for generated and self-modifying code. `step` ignores it.
    fn set_magic_break(&mut self, on: bool) -> Result<(), BackendError> {
        self.magic = on;
        Ok(())
    }
}

/// Counts `exit` under its reason (one increment, no allocation).
#[inline]
fn count_exit(counts: &mut ExitCounts, exit: &Exit) {
    let n = match exit {
        Exit::IoOut { .. } | Exit::IoIn { .. } => &mut counts.io,
        Exit::MmioRead | Exit::MmioWrite { .. } => &mut counts.mmio,
        Exit::Hlt => &mut counts.hlt,
        Exit::Debug => &mut counts.debug,
        Exit::IrqWindow => &mut counts.irq_window,
        Exit::Interrupted => &mut counts.signal,
        Exit::Shutdown => &mut counts.shutdown,
        Exit::InternalError => &mut counts.internal_error,
        Exit::Other(_) => &mut counts.other,
    };
    *n += 1;
}

/// The core's view of a classified step.
fn step_info(ev: &StepEvent) -> StepInfo {
    match ev {
        StepEvent::RepChunk => StepInfo::RepChunk,
        StepEvent::Io => StepInfo::Io,
        StepEvent::FaultDelivered { halted } => StepInfo::FaultMerged { halted: *halted },
        StepEvent::NoProgress => StepInfo::NoProgress,
        StepEvent::Retired | StepEvent::Halted | StepEvent::Stopped(_) => StepInfo::Instruction,
    }
}

impl KvmBackend {
    /// [`Backend::run`] with host failures as [`StopReason::HostError`].
    fn run_machine(&mut self, machine: &mut Machine, limits: RunLimits) -> StopReason {
        self.stats.runs += 1;
        if let Err(r) = self.check_machine(machine) {
            return r;
        }
        if limits.max_instructions == Some(0) {
            return StopReason::BudgetExhausted;
        }
        // Watchpoints and the magic breakpoint need every instruction seen: such runs are
        // single-stepped.
        let free = limits.max_instructions.is_none() && self.watches.is_empty() && !self.magic;
        self.clock = ticks::RunClock::new(limits.timeout.and_then(|t| Instant::now().checked_add(t)));
        let armed = self.arm_next(machine, free);
        if let Err(e) = armed.and_then(|_| self.set_single_step(!free)) {
            return StopReason::HostError(e.to_string());
        }
        self.enter();
        self.halted = false;
        let resumed = match self.inject_restored() {
            Ok(()) => self.resume_halted(machine, free),
            Err(e) => Some(StopReason::HostError(e.to_string())),
        };
        let reason = match (resumed, limits.max_instructions) {
            (Some(r), _) => r,
            (None, Some(n)) => self.run_budget(machine, n),
            (None, None) if !free => self.run_budget(machine, u64::MAX),
            (None, None) => {
                self.stats.free_runs += 1;
                self.run_free(machine)
            }
        };
        if self.io_pending {
            self.complete_pending(machine.bus_mut());
        }
        self.leave(machine);
        let disarmed = self.watchdog.disarm();
        self.vm.vcpu.set_kvm_immediate_exit(0);
        // Single steps do not offer interrupts: no window exit may interrupt them.
        self.vm.vcpu.get_kvm_run().request_interrupt_window = 0;
        match disarmed {
            Ok(()) => reason,
            Err(e) => StopReason::HostError(e.to_string()),
        }
    }
}
