//! External interrupts on KVM without an in-kernel interrupt controller: the machine's INTR
//! queue ([`Machine::interrupt_pending`]) is offered to the vCPU before every `KVM_RUN` of a
//! free run. When KVM says the vCPU can take one now (`ready_for_interrupt_injection`, IF=1,
//! and no register load pending that could change IF), the INTA cycle runs
//! ([`Machine::acknowledge_interrupt`]) and the vector goes in with `KVM_INTERRUPT`;
//! otherwise the run asks for an interrupt-window exit (`request_interrupt_window`) and offers
//! it again after `KVM_EXIT_IRQ_WINDOW_OPEN`. Device exits go through the same loop, so a
//! request raised by a port or MMIO access is offered before the guest runs on.
//!
//! HLT with IF=1 asks the machine to idle ([`Machine::idle`]): with a request pending (or,
//! in virtual time, after skipping to the next device event) the run goes on and delivers
//! it; in real time with an event scheduled the vCPU thread sleeps until it is due. When
//! nothing can wake the CPU the run stops with `Halted`, as does HLT with IF=0.
use std::time::Instant;

use kvm_bindings::{kvm_interrupt, KVMIO, KVM_SYNC_X86_REGS};
use picoqemu_core::{flags, Machine, StopReason};
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

use super::KvmBackend;
use crate::KvmError;

ioctl_iow_nr!(KVM_INTERRUPT, KVMIO, 0x86, kvm_interrupt);

impl KvmBackend {
    /// Before a `KVM_RUN` of a free run: injects the oldest pending request if the vCPU can
    /// take it now, or asks for an interrupt-window exit.
    pub(super) fn offer_interrupt(&mut self, machine: &mut Machine) -> Result<(), KvmError> {
        let run = self.vm.vcpu.get_kvm_run();
        if !machine.interrupt_pending() {
            run.request_interrupt_window = 0;
            return Ok(());
        }
        // The flags describe the vCPU as of the last exit: not valid while a new state waits.
        let loaded = run.kvm_dirty_regs & u64::from(KVM_SYNC_X86_REGS) == 0;
        if !(loaded && run.ready_for_interrupt_injection != 0 && run.if_flag != 0) {
            run.request_interrupt_window = 1;
            return Ok(());
        }
        run.request_interrupt_window = 0;
        let Some(vector) = machine.acknowledge_interrupt() else { return Ok(()) };
        self.inject(vector)
    }

    /// Queues `vector` with `KVM_INTERRUPT`; it counts as in flight until a `KVM_RUN` returns
    /// with anything but `EINTR` (see `snapshot.rs`).
    pub(super) fn inject(&mut self, vector: u8) -> Result<(), KvmError> {
        let irq = kvm_interrupt { irq: u32::from(vector) };
        // SAFETY: KVM_INTERRUPT reads one `kvm_interrupt` from the pointer, which is valid
        // for the call; the fd is this backend's live vCPU.
        let r = unsafe { ioctl_with_ref(&self.vm.vcpu, KVM_INTERRUPT(), &irq) };
        if r < 0 {
            return Err(KvmError::Ioctl { ioctl: "KVM_INTERRUPT", source: kvm_ioctls::Error::last() });
        }
        self.stats.interrupts += 1;
        self.injecting = Some(vector);
        Ok(())
    }

    /// A HLT exit of a free run: `None` to go on (an interrupt can be delivered now). With
    /// IF=1 the CPU stays halted while the machine idles: in virtual time from event to event
    /// until one raises a request, in real time sleeping until each event is due; a kick or
    /// the run's deadline ends the wait.
    pub(super) fn after_hlt(&mut self, machine: &mut Machine) -> Result<Option<StopReason>, KvmError> {
        if self.vm.vcpu.sync_regs_mut().regs.rflags & u64::from(flags::IF) == 0 {
            return Ok(Some(StopReason::Halted));
        }
        loop {
            if !machine.idle() {
                return Ok(Some(StopReason::Halted));
            }
            if machine.interrupt_pending() {
                return Ok(None);
            }
            if self.watchdog.take_kick() {
                return Ok(Some(StopReason::Interrupted));
            }
            let now = Instant::now();
            if self.clock.deadline.is_some_and(|d| now >= d) {
                return Ok(Some(StopReason::Timeout));
            }
            if let Some(event) = machine.event_deadline() {
                let until = self.clock.deadline.map_or(event, |d| d.min(event));
                sleep_until(now, until);
                machine.retire(0);
            }
        }
    }
}

/// Sleeps until `until`, or less: a signal (a kick, the watchdog) ends the sleep early with
/// `EINTR`, and the caller looks again.
fn sleep_until(now: Instant, until: Instant) {
    let left = until.saturating_duration_since(now);
    let ts = libc::timespec { tv_sec: left.as_secs() as libc::time_t, tv_nsec: left.subsec_nanos() as _ };
    // SAFETY: `ts` is valid for the call; no remainder is asked for.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}
