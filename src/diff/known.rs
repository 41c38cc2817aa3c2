//! Known, explained differences between KVM's instruction emulator on our hosts and the
//! interpreter (the interpreter follows the silicon; see `docs/known-differences.md` for each
//! one's evidence and test). A divergence is *known* only when a rule below recognises the
//! exact instruction and the exact shape of the difference; everything else stays an
//! unexplained divergence.
use iced_x86::{Mnemonic, OpKind};
use picoqemu_core::{flags, CpuState, Gpr, SegReg, StopReason};

use super::compare::Comparison;
use super::disasm;
use super::lockstep::Divergence;
use super::trace::TfRepModel;

/// One documented difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Short id used in reports and in `docs/known-differences.md`.
    pub id: &'static str,
    pub summary: &'static str,
}

/// `INT n` with n >= 0x80 never completes under KVM here.
pub const INT_HIGH_VECTOR: Known =
    Known { id: "kvm-int-high-vector", summary: "KVM hangs on INT n with n >= 0x80 in real mode" };
/// REP INS/OUTS whose offset range wraps past FFFF: KVM raises #GP up front.
pub const REP_IO_WRAP: Known = Known {
    id: "kvm-rep-io-wrap",
    summary:
        "KVM raises #GP for a REP INS/OUTS whose SI/DI range wraps past offset FFFF (a CPU wraps the offset)",
};
/// A fault inside REPE/REPNE CMPS/SCAS after KVM's emulator restarted the instruction (it
/// returns to the guest whenever the count reaches a multiple of 1,024).
pub const REP_COMPARE_RESTART: Known = Known {
    id: "kvm-rep-compare-restart",
    summary: "a fault in REPE/REPNE CMPS/SCAS after the count passed a multiple of 1024: KVM restarted the instruction there and restores the FLAGS of that restart, not of the instruction's start",
};
/// AAM/AAD: KVM sets SF/ZF/PF from the 16-bit AX instead of AL.
pub const AAM_AAD_FLAGS: Known = Known {
    id: "kvm-aam-aad-flags",
    summary: "AAM/AAD: KVM computes SF and ZF from the 16-bit AX instead of AL",
};

/// The guest's own TF: KVM's emulator traps per 1024-iteration REP chunk (plus once on leaving
/// the REP) instead of after every iteration, and not at all after an OUT.
pub const GUEST_TF_TRAPS: Known = Known {
    id: "kvm-guest-tf-traps",
    summary: "guest TF: KVM delivers #DB per 1024-iteration REP chunk (plus one on leaving), not per iteration, and none after OUT",
};

/// All known differences.
pub const ALL: [Known; 5] =
    [INT_HIGH_VECTOR, REP_IO_WRAP, REP_COMPARE_RESTART, AAM_AAD_FLAGS, GUEST_TF_TRAPS];

/// How far below the final SP stale #DB frames may differ (a few frames of three words).
const STALE_STACK: u32 = 0x40;

/// Recognises a whole-run divergence that is [`GUEST_TF_TRAPS`] (it cannot be located in
/// lockstep: KVM swallows the guest's own #DB while it single-steps). It matches only when
/// registers, devices and stop reason are identical, the candidate's trace had instructions of
/// the modelled kinds under the guest's TF with an exactly modelled trap count
/// ([`TfRepModel`]), exactly one differing range lies outside the dead stack just below the
/// final SS:SP (where the last, stale #DB frames were pushed) and is one 16-bit word — the
/// guest's #DB counter — and that word differs by exactly the number of traps KVM's emulator
/// is predicted to deliver fewer (or more).
pub fn classify_whole_run(
    c: &Comparison,
    model: &TfRepModel,
    reference_ram: &[u8],
    candidate_ram: &[u8],
) -> Option<Known> {
    if model.steps == 0 || !model.exact || model.delta == 0 {
        return None;
    }
    if !c.regs.is_empty() || !c.devices.is_empty() || c.stop_differs || c.mem_bytes > 2 + STALE_STACK as u64 {
        return None;
    }
    let st = &c.right.state;
    let top = st.seg(SegReg::Ss).base.wrapping_add(st.reg(Gpr::Esp) & 0xFFFF);
    let stale = top.saturating_sub(STALE_STACK)..top;
    let mut counter = c.mem.iter().filter(|r| !(stale.contains(&r.start) && r.start + r.len <= top));
    let (Some(r), None) = (counter.next(), counter.next()) else {
        return None;
    };
    if r.len > 2 || c.mem.len() == super::compare::MAX_RANGES {
        return None;
    }
    let word = |ram: &[u8], a: u32| -> Option<u16> {
        let a = a as usize;
        ram.get(a..a + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let delta = model.delta as u16;
    let explained = |a: u32| match (word(reference_ram, a), word(candidate_ram, a)) {
        (Some(k), Some(i)) => i.wrapping_sub(k) == delta,
        _ => false,
    };
    let ok = explained(r.start) || (r.len == 1 && explained(r.start.wrapping_sub(1)));
    ok.then_some(GUEST_TF_TRAPS)
}

fn only_fields(c: &Comparison, allowed: &[&str]) -> bool {
    c.regs.iter().all(|d| allowed.contains(&d.field.as_str()))
}

/// Recognises a lockstep divergence (reference = KVM on the left, interpreter on the right).
pub fn classify_divergence(d: &Divergence) -> Option<Known> {
    let instr = disasm::decode(d.bytes.as_slice(), d.ip);
    let c = &d.comparison;
    let pre = &d.pre;
    let (k, i) = (&c.left.state, &c.right.state);
    match instr.mnemonic() {
        Mnemonic::Aam | Mnemonic::Aad => {
            // KVM: SF/ZF from AX (16 bits); the CPU: from AL.
            let ax = i.reg(Gpr::Eax) & 0xFFFF;
            let sf16 = if ax & 0x8000 != 0 { flags::SF } else { 0 };
            let zf16 = if ax == 0 { flags::ZF } else { 0 };
            let mask = flags::SF | flags::ZF;
            let differ = (k.eflags ^ i.eflags) & !c.masked_flags;
            let ok = only_fields(c, &["eflags"])
                && c.mem_bytes == 0
                && differ != 0
                && differ & !mask == 0
                && k.eflags & mask == sf16 | zf16;
            ok.then_some(AAM_AAD_FLAGS)
        }
        Mnemonic::Insb
        | Mnemonic::Insw
        | Mnemonic::Insd
        | Mnemonic::Outsb
        | Mnemonic::Outsw
        | Mnemonic::Outsd
            if instr.has_rep_prefix() =>
        {
            let size = instr.memory_size().size() as u32;
            let count = pre.reg(Gpr::Ecx) & 0xFFFF;
            let ptr = if matches!(instr.mnemonic(), Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd) {
                pre.reg(Gpr::Edi) & 0xFFFF
            } else {
                pre.reg(Gpr::Esi) & 0xFFFF
            };
            let span = count.saturating_mul(size);
            let wraps = if pre.eflags & flags::DF == 0 { ptr + span > 0x1_0000 } else { span > ptr + size };
            // KVM delivered #GP before any iteration: its CX is unchanged.
            let kvm_untouched = k.reg(Gpr::Ecx) & 0xFFFF == count || k.cs() != pre.cs() || k.eip != i.eip;
            (count != 0 && wraps && kvm_untouched).then_some(REP_IO_WRAP)
        }
        Mnemonic::Cmpsb
        | Mnemonic::Cmpsw
        | Mnemonic::Cmpsd
        | Mnemonic::Scasb
        | Mnemonic::Scasw
        | Mnemonic::Scasd
            if instr.has_rep_prefix() || instr.has_repne_prefix() =>
        {
            // Both delivered the same fault after the same iterations (everything but FLAGS
            // equal, memory only in the pushed frame); the interpreter's FLAGS are those from
            // before the instruction, KVM's those the interpreter had where KVM restarted the
            // instruction, at a count that is a multiple of 1024.
            let (count, flags_there) = d.rep_restart?;
            let ss = pre.seg(SegReg::Ss).base;
            let sp = pre.reg(Gpr::Esp) & 0xFFFF;
            let frame = (ss + (sp.wrapping_sub(6) & 0xFFFF))..(ss + sp);
            let mem_in_frame = c.mem.iter().all(|r| frame.contains(&r.start) && r.start + r.len <= frame.end);
            let faulted = i.cs() != pre.cs() || i.eip != pre.eip.wrapping_add(instr.len() as u32);
            let ok = only_fields(c, &["eflags"])
                && c.regs.len() == 1
                && mem_in_frame
                && faulted
                && count % 1024 == 0
                && i.eflags & flags::STATUS == pre.eflags & flags::STATUS
                && k.eflags & flags::STATUS == flags_there & flags::STATUS;
            ok.then_some(REP_COMPARE_RESTART)
        }
        _ => None,
    }
}

/// Recognises a reference (KVM) stop that is a known difference: KVM stuck on `INT n`,
/// n >= 0x80 (a timeout with CS:IP on the INT, or no progress under single-step).
pub fn classify_reference_stop(stop: &StopReason, state: &CpuState, ram: &[u8]) -> Option<Known> {
    let (cs, ip) = match stop {
        StopReason::Timeout => (state.cs(), state.eip),
        StopReason::EmulationFailure { cs, ip, .. } => (*cs, *ip),
        _ => return None,
    };
    let lin = ((cs as u32) << 4).wrapping_add(ip & 0xFFFF);
    let bytes = disasm::fetch(ram, lin);
    let instr = disasm::decode(bytes.as_slice(), ip);
    let high_int = instr.mnemonic() == Mnemonic::Int
        && instr.op0_kind() == OpKind::Immediate8
        && instr.immediate8() >= 0x80;
    high_int.then_some(INT_HIGH_VECTOR)
}
