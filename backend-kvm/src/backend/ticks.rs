//! The timer of a run: its deadline, the 100 ms ticks of free runs, and the hang check.
//!
//! A free run arms the watchdog at the earliest of its deadline, the next device event (real
//! time) and a tick 100 ms away. On each tick the run loop services device time, then looks
//! at the vCPU: if CS:IP is on an instruction KVM here never completes (`vmcall`: `KVM_RUN`
//! spins without returning, `kvm-on-our-hosts.md` §4) and no register changed over
//! [`HANG_TICKS`] ticks, the run stops with `EmulationFailure` naming CS:IP and the bytes, so
//! no run hangs on that quirk even without a timeout. A `jmp $` is not stopped: the
//! instruction must be on the list. Cost: one `timer_settime` per tick and per run.
use std::time::{Duration, Instant};

use kvm_bindings::kvm_regs;
use picoqemu_core::{Machine, StopReason};

use super::KvmBackend;
use crate::exits;
use crate::KvmError;

/// Period of the hang check in free runs.
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks with the vCPU unchanged on a hanging instruction before the run stops.
pub const HANG_TICKS: u32 = 3;

/// Deadline and hang-check state of the run in progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunClock {
    pub deadline: Option<Instant>,
    /// CS base and registers at the last tick that found CS:IP on a hanging instruction, and
    /// how many ticks in a row found them so.
    stuck: Option<(u64, kvm_regs, u32)>,
}

impl RunClock {
    pub fn new(deadline: Option<Instant>) -> Self {
        RunClock { deadline, stuck: None }
    }
}

impl KvmBackend {
    /// Arms the watchdog for the next instant the run must look at the vCPU.
    pub(super) fn arm_next(&mut self, machine: &Machine, free: bool) -> Result<(), KvmError> {
        let mut at = self.clock.deadline;
        if free {
            let tick = Instant::now() + TICK;
            let event = machine.event_deadline().unwrap_or(tick);
            let next = tick.min(event);
            at = Some(at.map_or(next, |d| d.min(next)));
        }
        match at {
            Some(t) => self.watchdog.arm(t),
            None => self.watchdog.disarm(),
        }
    }

    /// `KVM_RUN` of a free run returned `EINTR`: a kick, the deadline, a tick or another
    /// signal. `Some` ends the run.
    pub(super) fn on_signal(&mut self, machine: &mut Machine) -> Result<Option<StopReason>, KvmError> {
        if self.watchdog.take_kick() {
            return Ok(Some(StopReason::Interrupted));
        }
        if self.watchdog.fired() {
            if self.clock.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Some(StopReason::Timeout));
            }
            self.service_time(machine);
            if let Some(r) = self.check_hang(machine)? {
                return Ok(Some(r));
            }
            self.arm_next(machine, true)?;
        }
        let p = self.immediate_exit_ptr();
        self.watchdog.clear_immediate_exit(p);
        Ok(None)
    }

    /// Device time at a tick. Real time: services the events that fell due. Virtual time:
    /// KVM cannot count the instructions of a free run, so a guest that waits for a device
    /// event without HLT would never see it; the tick moves time to the next event (the
    /// only place KVM's virtual time follows the host's: see the crate docs).
    fn service_time(&mut self, machine: &mut Machine) {
        let n = machine.instructions_until_event().unwrap_or(0);
        machine.retire(n);
    }

    /// The hang check of one tick.
    fn check_hang(&mut self, machine: &mut Machine) -> Result<Option<StopReason>, KvmError> {
        let regs = self.vm.vcpu.sync_regs_mut().regs;
        let cs = if self.sregs_synced {
            self.vm.vcpu.sync_regs_mut().sregs.cs
        } else {
            self.vm.vcpu.get_sregs().map_err(KvmError::ioctl("KVM_GET_SREGS"))?.cs
        };
        let ip = regs.rip as u16;
        let (bytes, n) = exits::fetch(machine.ram_mut().bytes(), cs.base as u32, ip);
        if !exits::hangs_kvm(&bytes[..n], ip) {
            self.clock.stuck = None;
            return Ok(None);
        }
        let count = match self.clock.stuck {
            Some((base, r, c)) if base == cs.base && r == regs => c + 1,
            _ => 1,
        };
        self.clock.stuck = Some((cs.base, regs, count));
        if count < HANG_TICKS {
            return Ok(None);
        }
        let insn = exits::insn_bytes(&bytes[..n], ip);
        Ok(Some(StopReason::EmulationFailure { cs: cs.selector, ip: regs.rip as u32, bytes: insn }))
    }

    /// The stop for an instruction KVM made no progress on (single step over `vmcall`).
    pub(super) fn cannot_run(&mut self, machine: &mut Machine) -> StopReason {
        let sync = self.vm.vcpu.sync_regs_mut();
        let (cs, rip) = (sync.sregs.cs, sync.regs.rip);
        let (bytes, n) = exits::fetch(machine.ram_mut().bytes(), cs.base as u32, rip as u16);
        StopReason::EmulationFailure {
            cs: cs.selector,
            ip: rip as u32,
            bytes: exits::insn_bytes(&bytes[..n], rip as u16),
        }
    }
}
