//! The KVM side of machine snapshots: [`KvmBackend::snapshot_cpu`] reads the registers
//! (sync regs: hidden segment bases and limits included), the interrupt shadow and injected
//! events (`KVM_GET_VCPU_EVENTS`) and the HLT state this backend tracks;
//! [`KvmBackend::restore_snapshot`] loads them (sync regs, the events through the sync-regs
//! area, a pending vector with `KVM_INTERRUPT`), and [`KvmBackend::resume_halted`] makes the
//! next run start in the HLT state.
//!
//! Without an in-kernel interrupt controller KVM does not report an interrupt queued with
//! `KVM_INTERRUPT` that never reached the guest (a run that ended with `EINTR` right after
//! the injection): the backend remembers such an injection, and a snapshot then is refused
//! rather than losing the interrupt.
use kvm_bindings::{
    kvm_vcpu_events, KVM_SYNC_X86_EVENTS, KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW,
};
use picoqemu_core::{CpuSnapshot, InterruptShadow, Machine, StopReason};

use super::KvmBackend;
use crate::KvmError;

/// `interrupt.shadow` bits of `kvm_vcpu_events`.
const SHADOW_MOV_SS: u8 = 0x01;
const SHADOW_STI: u8 = 0x02;

impl KvmBackend {
    /// The vCPU's events: from the sync-regs area when a load waits there, else from KVM.
    fn events(&mut self) -> Result<kvm_vcpu_events, KvmError> {
        if self.vm.vcpu.get_kvm_run().kvm_dirty_regs & u64::from(KVM_SYNC_X86_EVENTS) != 0 {
            return Ok(self.vm.vcpu.sync_regs_mut().events);
        }
        self.vm.vcpu.get_vcpu_events().map_err(KvmError::ioctl("KVM_GET_VCPU_EVENTS"))
    }

    /// [`picoqemu_core::Backend::cpu_snapshot`].
    pub(super) fn snapshot_cpu(&mut self) -> Result<CpuSnapshot, KvmError> {
        let refuse = |what: &str| {
            Err(KvmError::Snapshot(format!(
                "cannot snapshot the vCPU now: {what}; run on and save at the next stop"
            )))
        };
        if self.injecting.is_some() {
            return refuse("an interrupt injected with KVM_INTERRUPT has not reached the guest yet");
        }
        let ev = self.events()?;
        if ev.exception.injected != 0 || ev.exception.pending != 0 {
            return refuse(&format!("exception {} is being delivered", ev.exception.nr));
        }
        if ev.nmi.injected != 0 || ev.nmi.pending != 0 {
            return refuse("an NMI is pending");
        }
        let pending_interrupt = match (ev.interrupt.injected, ev.interrupt.soft) {
            (0, _) => self.pending_vector,
            (_, 0) => Some(ev.interrupt.nr),
            _ => return refuse(&format!("software interrupt {} is being delivered", ev.interrupt.nr)),
        };
        let shadow = if ev.interrupt.shadow & SHADOW_MOV_SS != 0 {
            InterruptShadow::MovSs
        } else if ev.interrupt.shadow & SHADOW_STI != 0 {
            InterruptShadow::Sti
        } else {
            InterruptShadow::None
        };
        let counted = self.stats.free_runs == 0;
        Ok(CpuSnapshot {
            state: self.current(),
            shadow,
            halted: self.halted || self.resume_halt,
            pending_interrupt,
            instructions: self.instructions_base.wrapping_add(if counted {
                self.stats.stepped_instructions
            } else {
                0
            }),
        })
    }

    /// [`picoqemu_core::Backend::restore_cpu_snapshot`].
    pub(super) fn restore_snapshot(&mut self, snap: &CpuSnapshot) -> Result<(), KvmError> {
        self.load(&snap.state);
        let shadow = match snap.shadow {
            InterruptShadow::None => 0,
            InterruptShadow::Sti => SHADOW_STI,
            InterruptShadow::MovSs => SHADOW_MOV_SS,
        };
        let mut events = kvm_vcpu_events {
            flags: KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING,
            ..Default::default()
        };
        events.interrupt.shadow = shadow;
        self.vm.vcpu.sync_regs_mut().events = events;
        let run = self.vm.vcpu.get_kvm_run();
        run.kvm_dirty_regs |= u64::from(KVM_SYNC_X86_EVENTS);
        run.request_interrupt_window = 0;
        self.injecting = None;
        self.pending_vector = snap.pending_interrupt;
        self.halted = false;
        self.resume_halt = snap.halted;
        self.instructions_base = snap.instructions.wrapping_sub(self.stats.stepped_instructions);
        Ok(())
    }

    /// At the start of a run: a restored pending vector goes in with `KVM_INTERRUPT`
    /// (delivered at the next entry whatever IF says: the other CPU had acknowledged it).
    pub(super) fn inject_restored(&mut self) -> Result<(), KvmError> {
        if let Some(v) = self.pending_vector.take() {
            self.inject(v)?;
        }
        Ok(())
    }

    /// At the start of a run restored halted: the CPU waits as after a HLT. A budgeted run
    /// (single steps, which take no interrupts) stops `Halted` at once, as at any HLT.
    pub(super) fn resume_halted(&mut self, machine: &mut Machine, free: bool) -> Option<StopReason> {
        if !std::mem::take(&mut self.resume_halt) {
            return None;
        }
        if !free {
            self.halted = true;
            return Some(StopReason::Halted);
        }
        match self.after_hlt(machine) {
            Ok(None) => None,
            Ok(Some(r)) => {
                self.halted = true;
                Some(r)
            }
            Err(e) => Some(StopReason::HostError(e.to_string())),
        }
    }
}
