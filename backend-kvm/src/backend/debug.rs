//! Execution breakpoints on KVM: the debug registers DR0-DR3 through `KVM_SET_GUEST_DEBUG`
//! with `KVM_GUESTDBG_USE_HW_BP`, for both [`BreakpointKind`]s (see the crate docs: at most
//! four in all, so guest memory never holds an INT3 byte).
//!
//! KVM checks code breakpoints before it executes (or emulates) an instruction and exits with
//! `KVM_EXIT_DEBUG`, exception 1 and the matching B0-B3 bit in DR6, so the stop comes *before*
//! the instruction. A run that starts on a breakpoint first steps over it with the breakpoints
//! off (as a debugger's "continue" does). Single-step runs (instruction budgets, `step`) do
//! not arm them in KVM; a budgeted run checks CS base + IP after each instruction instead.
use kvm_bindings::kvm_guest_debug_arch;
use picoqemu_core::{BackendError, Breakpoint, BreakpointKind, Machine, StopReason};

use super::KvmBackend;
use crate::step::StepEvent;

/// Bochs' magic breakpoint, `xchg bx, bx`.
pub const MAGIC_BREAK: [u8; 2] = [0x87, 0xDB];

/// Debug registers for execution breakpoints.
pub const MAX_BREAKPOINTS: usize = 4;

/// DR0-DR3 = `linear`, DR7 enabling each (L and G bits; R/W 00 = execute, LEN 00).
pub fn debug_registers(linear: &[u32]) -> kvm_guest_debug_arch {
    let mut arch = kvm_guest_debug_arch::default();
    for (i, &a) in linear.iter().take(MAX_BREAKPOINTS).enumerate() {
        arch.debugreg[i] = u64::from(a);
        arch.debugreg[7] |= 0b11 << (2 * i);
    }
    arch
}

/// The distinct addresses of `bps`, or an error naming the limit.
pub fn breakpoint_addresses(bps: &[Breakpoint]) -> Result<Vec<u32>, String> {
    let mut linear: Vec<u32> = bps.iter().map(|b| b.linear).collect();
    linear.sort_unstable();
    linear.dedup();
    if linear.len() > MAX_BREAKPOINTS {
        let software = bps.iter().filter(|b| b.kind == BreakpointKind::Software).count();
        return Err(format!(
            "{} breakpoints requested ({software} software), but KVM here implements both kinds with the \
             debug registers DR0-DR3: at most {MAX_BREAKPOINTS} (use --backend interp for more)",
            linear.len()
        ));
    }
    Ok(linear)
}

impl KvmBackend {
    /// [`picoqemu_core::Backend::set_breakpoints`]: keeps the previous set on error.
    pub(super) fn replace_breakpoints(&mut self, bps: &[Breakpoint]) -> Result<(), BackendError> {
        let linear = breakpoint_addresses(bps).map_err(|m| BackendError::new("kvm", m))?;
        self.breakpoints = linear;
        // Re-issue KVM_SET_GUEST_DEBUG at the next run with the new registers.
        if self.hw_bp {
            let single = self.single_step;
            self.set_debug(single, false).map_err(BackendError::from)?;
        }
        Ok(())
    }

    /// Linear address of CS:IP in the sync-regs area (special registers must be synced).
    fn pc_linear(&mut self) -> u32 {
        let sync = self.vm.vcpu.sync_regs_mut();
        (sync.sregs.cs.base as u32).wrapping_add(sync.regs.rip as u32 & 0xFFFF)
    }

    /// `Breakpoint` when CS:IP is on one of the breakpoints.
    pub(super) fn breakpoint_here(&mut self) -> Option<StopReason> {
        if self.breakpoints.is_empty() {
            return None;
        }
        let pc = self.pc_linear();
        self.breakpoints.contains(&pc).then(|| self.breakpoint_stop())
    }

    fn breakpoint_stop(&mut self) -> StopReason {
        let sync = self.vm.vcpu.sync_regs_mut();
        StopReason::Breakpoint { cs: sync.sregs.cs.selector, ip: sync.regs.rip as u32 }
    }

    /// The stop for a `KVM_EXIT_DEBUG` of a free run: a breakpoint (exception 1 with one of
    /// DR6's B0-B3 bits), anything else is a host error.
    pub(super) fn debug_exit(&mut self) -> StopReason {
        let run = self.vm.vcpu.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_DEBUG, so `debug` is the active union member.
        let arch = unsafe { run.__bindgen_anon_1.debug.arch };
        if self.hw_bp && arch.exception == 1 && arch.dr6 & 0xF != 0 {
            return self.breakpoint_stop();
        }
        StopReason::HostError(format!(
            "unexpected KVM_EXIT_DEBUG (exception {}, DR6 {:#x}, pc {:#x})",
            arch.exception, arch.dr6, arch.pc
        ))
    }

    /// At the start of a free run on a breakpoint: executes that instruction by single step
    /// (a REP completely), then arms the breakpoints. `Some` when that ended the run (also
    /// when the next instruction is a breakpoint again).
    pub(super) fn step_off_breakpoint(&mut self, machine: &mut Machine) -> Option<StopReason> {
        if self.breakpoints.is_empty() {
            return None;
        }
        let start = self.pc_linear();
        if !self.breakpoints.contains(&start) {
            return None;
        }
        if let Err(e) = self.set_debug(true, false) {
            return Some(StopReason::HostError(e.to_string()));
        }
        loop {
            match self.step_inner(machine) {
                StepEvent::RepChunk => continue,
                StepEvent::Stopped(r) => return Some(r),
                StepEvent::Halted | StepEvent::FaultDelivered { halted: true } => {
                    return Some(StopReason::Halted)
                }
                StepEvent::NoProgress => {
                    return Some(self.cannot_run(machine));
                }
                StepEvent::Retired | StepEvent::Io | StepEvent::FaultDelivered { halted: false } => break,
            }
        }
        if let Err(e) = self.set_debug(false, true) {
            return Some(StopReason::HostError(e.to_string()));
        }
        self.breakpoint_here()
    }

    /// True when the instruction at CS:IP is Bochs' magic breakpoint `xchg bx, bx` (87 DB).
    pub(super) fn at_magic_break(&mut self, machine: &mut Machine) -> bool {
        let sync = self.vm.vcpu.sync_regs_mut();
        let (cs_base, ip) = (sync.sregs.cs.base as u32, sync.regs.rip as u16);
        let (bytes, n) = crate::exits::fetch(machine.ram_mut().bytes(), cs_base, ip);
        bytes[..n].starts_with(&MAGIC_BREAK)
    }

    /// The stop after a magic breakpoint: `Breakpoint` at the instruction after it.
    pub(super) fn magic_stop(&mut self) -> StopReason {
        self.breakpoint_stop()
    }
}
