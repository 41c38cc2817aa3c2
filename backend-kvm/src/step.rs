//! Single-step classification: what one `KVM_SET_GUEST_DEBUG` single step did.
//!
//! KVM's single step on our hosts (PVM, real mode run by KVM's instruction emulator) is not
//! "one instruction per `KVM_RUN`" in every case (see the crate docs for the measured list).
//! [`crate::KvmBackend::step`] snapshots CS:IP, FLAGS, SS:SP, the six bytes below SP and the
//! decoded instruction before the step and classifies the result here, so the caller is
//! told honestly what happened instead of getting a loosened comparison.
use picoqemu_core::{flags, StopReason};

use crate::exits::InsnKind;

/// What one single step did. The vCPU state (`Backend::state`) is the state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEvent {
    /// One instruction retired; IP is at the next instruction (or a branch target, or the
    /// first instruction of an `int n`/`int3`/`into` handler, not yet executed).
    Retired,
    /// A REP string instruction ran a chunk of up to 1,024 iterations and IP is still on it,
    /// with RF (EFLAGS bit 16) set. Step again; the step that moves IP off the REP (the one
    /// that finds CX = 0 or the REPE/REPNE condition false) is reported as `Retired`.
    RepChunk,
    /// The instruction did port I/O or MMIO (already passed to the bus) and completed; on
    /// KVM this is the I/O exit itself, not a debug exit.
    Io,
    /// HLT retired: IP is past the HLT (in single-step KVM reports no HLT exit).
    Halted,
    /// The instruction faulted (#DE, #UD, #GP, ...): KVM delivered the exception through the
    /// IVT **and executed the handler's first instruction** in the same step. `halted` is
    /// true when that first instruction was a HLT. Detected from the fault frame the CPU
    /// pushed (IP and CS of the faulting instruction, FLAGS) or from a fall-through
    /// instruction landing elsewhere; a fault loop whose handler returns to the same
    /// faulting instruction with an identical frame is reported as `Retired`.
    FaultDelivered { halted: bool },
    /// Nothing happened: CS:IP is still on an instruction that is not a jump and no register
    /// changed. KVM re-enters the instruction without executing it; seen for `vmcall` under
    /// single step here (free-running, `vmcall` hangs `KVM_RUN` instead). Treat it as "KVM
    /// cannot run this instruction". A budgeted `run` counts such steps, so it still ends.
    NoProgress,
    /// The step ended the run: debug exit, emulation failure, triple fault, timeout or host
    /// error.
    Stopped(StopReason),
}

/// CS:IP and what surrounds it, before or after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcSnap {
    pub cs: u16,
    pub cs_base: u32,
    pub eip: u32,
    pub eflags: u32,
    pub ss_base: u32,
    pub sp: u16,
    /// The six bytes at SS:SP-6 (where a fault frame is pushed). In a post-step snapshot,
    /// the bytes at the *pre-step* SS:SP-6, where the step's fault frame would be.
    pub frame: [u8; 6],
}

impl PcSnap {
    /// The frame a fault at this CS:IP pushes: IP, CS, FLAGS (16 bits each).
    pub fn fault_frame(&self) -> [u8; 6] {
        let ip = (self.eip as u16).to_le_bytes();
        let cs = self.cs.to_le_bytes();
        let fl = (self.eflags as u16).to_le_bytes();
        [ip[0], ip[1], cs[0], cs[1], fl[0], fl[1]]
    }
}

/// Classifies a completed step. `handler_hlt` says whether the instruction just before the
/// post-step IP is a HLT that is an exception handler's entry point; `unchanged` whether
/// every register (EFLAGS without RF) is what it was before the step.
pub fn classify(
    pre: &PcSnap,
    insn: &InsnKind,
    post: &PcSnap,
    did_io: bool,
    handler_hlt: bool,
    unchanged: bool,
) -> StepEvent {
    let same_pc = post.cs_base == pre.cs_base && post.eip == pre.eip;
    let next_ip = (pre.eip as u16).wrapping_add(insn.len);
    let fell_through = post.cs_base == pre.cs_base && post.eip as u16 == next_ip;
    if insn.hlt && fell_through {
        return StepEvent::Halted;
    }
    if insn.rep_string && same_pc && post.eflags & flags::RF != 0 {
        return StepEvent::RepChunk;
    }
    let frame_pushed = pre.frame != pre.fault_frame() && post.frame == pre.fault_frame();
    let landed_elsewhere = insn.falls_through && !fell_through && !same_pc;
    if frame_pushed && !fell_through || landed_elsewhere {
        return StepEvent::FaultDelivered { halted: handler_hlt };
    }
    if did_io {
        StepEvent::Io
    } else if same_pc && unchanged && !insn.jump {
        StepEvent::NoProgress
    } else {
        StepEvent::Retired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(eip: u32, eflags: u32, frame: [u8; 6]) -> PcSnap {
        PcSnap { cs: 0, cs_base: 0, eip, eflags, ss_base: 0, sp: 0x7000, frame }
    }

    const NOP: InsnKind =
        InsnKind { len: 1, hlt: false, rep_string: false, falls_through: true, jump: false };
    const HLT: InsnKind =
        InsnKind { len: 1, hlt: true, rep_string: false, falls_through: false, jump: false };
    const REP: InsnKind = InsnKind { len: 2, hlt: false, rep_string: true, falls_through: true, jump: false };
    const JMP: InsnKind =
        InsnKind { len: 2, hlt: false, rep_string: false, falls_through: false, jump: true };
    const VMCALL: InsnKind =
        InsnKind { len: 3, hlt: false, rep_string: false, falls_through: false, jump: false };

    #[test]
    fn plain_steps() {
        let pre = snap(0x100, 2, [0; 6]);
        assert_eq!(classify(&pre, &NOP, &snap(0x101, 2, [0; 6]), false, false, false), StepEvent::Retired);
        assert_eq!(classify(&pre, &NOP, &snap(0x101, 2, [0; 6]), true, false, false), StepEvent::Io);
        assert_eq!(classify(&pre, &HLT, &snap(0x101, 2, [0; 6]), false, false, false), StepEvent::Halted);
        // jmp $ stays put and is an ordinary instruction; a vmcall that did nothing is not.
        assert_eq!(classify(&pre, &JMP, &snap(0x100, 2, [0; 6]), false, false, true), StepEvent::Retired);
        assert_eq!(
            classify(&pre, &VMCALL, &snap(0x100, 2, [0; 6]), false, false, true),
            StepEvent::NoProgress
        );
        assert_eq!(classify(&pre, &VMCALL, &snap(0x100, 2, [0; 6]), false, false, false), StepEvent::Retired);
    }

    #[test]
    fn rep_chunks_until_ip_leaves() {
        let pre = snap(0x100, 2, [0; 6]);
        let mid = snap(0x100, 2 | flags::RF, [0; 6]);
        assert_eq!(classify(&pre, &REP, &mid, false, false, false), StepEvent::RepChunk);
        assert_eq!(classify(&mid, &REP, &snap(0x102, 2, [0; 6]), false, false, false), StepEvent::Retired);
    }

    #[test]
    fn faults_are_recognised() {
        let pre = snap(0x100, 0x46, [0; 6]);
        let frame = pre.fault_frame();
        assert_eq!(frame, [0x00, 0x01, 0, 0, 0x46, 0]);
        // Delivered to a handler at 0x500 whose first instruction was executed.
        let post = PcSnap { eip: 0x501, eflags: 2, sp: 0x7000 - 6, frame, ..pre };
        assert_eq!(
            classify(&pre, &JMP, &post, false, false, false),
            StepEvent::FaultDelivered { halted: false }
        );
        assert_eq!(
            classify(&pre, &JMP, &post, false, true, false),
            StepEvent::FaultDelivered { halted: true }
        );
        // A fall-through instruction that lands elsewhere faulted even without a new frame.
        let post2 = PcSnap { frame: [0; 6], ..post };
        assert_eq!(
            classify(&pre, &NOP, &post2, false, false, false),
            StepEvent::FaultDelivered { halted: false }
        );
    }
}
