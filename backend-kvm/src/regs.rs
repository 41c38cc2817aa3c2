//! Conversions between picoqemu's [`CpuState`] and KVM's `kvm_regs`/`kvm_sregs`.
//!
//! Reading takes what a real-mode program can observe (GPRs, EIP, EFLAGS, the six segments
//! with their hidden base and limit, CR0, IDTR). Writing starts from a *template* (the sregs
//! KVM gave the fresh vCPU: GDTR, TR, LDTR, CR2-4, EFER, APIC base) so that every field the
//! `CpuState` does not carry is reset too, and gives each segment real-mode access rights:
//! present, S=1, DPL 0, 16-bit, type 0xB (code, execute/read, accessed) for CS and 0x3
//! (data, read/write, accessed) for the others, G set only for limits above 1 MiB.
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use picoqemu_core::{CpuState, Gpr, SegReg, Segment};

/// Reads the architectural state out of KVM's register structures.
pub fn read_state(regs: &kvm_regs, sregs: &kvm_sregs) -> CpuState {
    let mut s = CpuState::default();
    let g = [regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi];
    for (dst, v) in s.gpr.iter_mut().zip(g) {
        *dst = v as u32;
    }
    s.eip = regs.rip as u32;
    s.eflags = regs.rflags as u32;
    for r in SegReg::ALL {
        let k = seg_ref(sregs, r);
        s.segs[r as usize] = Segment { selector: k.selector, base: k.base as u32, limit: k.limit };
    }
    s.cr0 = sregs.cr0 as u32;
    s.idt_base = sregs.idt.base as u32;
    s.idt_limit = sregs.idt.limit;
    s
}

/// Writes `state` into `regs`/`sregs`, taking every other field from the templates.
pub fn write_state(
    state: &CpuState,
    tregs: &kvm_regs,
    tsregs: &kvm_sregs,
    regs: &mut kvm_regs,
    sregs: &mut kvm_sregs,
) {
    *regs = *tregs;
    *sregs = *tsregs;
    let v = |r: Gpr| u64::from(state.reg(r));
    regs.rax = v(Gpr::Eax);
    regs.rcx = v(Gpr::Ecx);
    regs.rdx = v(Gpr::Edx);
    regs.rbx = v(Gpr::Ebx);
    regs.rsp = v(Gpr::Esp);
    regs.rbp = v(Gpr::Ebp);
    regs.rsi = v(Gpr::Esi);
    regs.rdi = v(Gpr::Edi);
    regs.rip = u64::from(state.eip);
    regs.rflags = u64::from(state.eflags);
    for r in SegReg::ALL {
        *seg_mut(sregs, r) = real_mode_segment(state.seg(r), r == SegReg::Cs);
    }
    sregs.cr0 = u64::from(state.cr0);
    sregs.idt.base = u64::from(state.idt_base);
    sregs.idt.limit = state.idt_limit;
}

/// A KVM segment with real-mode access rights for `seg`.
fn real_mode_segment(seg: Segment, code: bool) -> kvm_segment {
    kvm_segment {
        base: u64::from(seg.base),
        limit: seg.limit,
        selector: seg.selector,
        type_: if code { 0xB } else { 0x3 },
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 0,
        g: u8::from(seg.limit > 0xF_FFFF),
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn seg_ref(s: &kvm_sregs, r: SegReg) -> &kvm_segment {
    match r {
        SegReg::Es => &s.es,
        SegReg::Cs => &s.cs,
        SegReg::Ss => &s.ss,
        SegReg::Ds => &s.ds,
        SegReg::Fs => &s.fs,
        SegReg::Gs => &s.gs,
    }
}

fn seg_mut(s: &mut kvm_sregs, r: SegReg) -> &mut kvm_segment {
    match r {
        SegReg::Es => &mut s.es,
        SegReg::Cs => &mut s.cs,
        SegReg::Ss => &mut s.ss,
        SegReg::Ds => &mut s.ds,
        SegReg::Fs => &mut s.fs,
        SegReg::Gs => &mut s.gs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoqemu_core::flags;

    fn sample() -> CpuState {
        let mut s = CpuState::default();
        for (i, r) in Gpr::ALL.into_iter().enumerate() {
            s.set_reg(r, 0x1111_1111 * (i as u32 + 1));
        }
        s.eip = 0x7C05;
        s.eflags = flags::FIXED | flags::CF | flags::IF;
        s.set_seg(SegReg::Cs, 0x07C0);
        s.set_seg(SegReg::Ds, 0xB800);
        s.segs[SegReg::Fs as usize] = Segment { selector: 0x10, base: 0x0010_0000, limit: 0xFFFF_FFFF };
        s.idt_base = 0x500;
        s.idt_limit = 0x7F;
        s
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let (mut r, mut sr) = (kvm_regs::default(), kvm_sregs::default());
        let tr = kvm_regs { r8: 99, ..Default::default() };
        let mut tsr = kvm_sregs::default();
        tsr.gdt.limit = 0xFFFF;
        tsr.efer = 0;
        let s = sample();
        write_state(&s, &tr, &tsr, &mut r, &mut sr);
        assert_eq!(read_state(&r, &sr), s);
        // Template fields survive, real-mode rights are set.
        assert_eq!((r.r8, sr.gdt.limit), (99, 0xFFFF));
        assert_eq!((sr.cs.type_, sr.ds.type_, sr.cs.present, sr.cs.s, sr.cs.db), (0xB, 3, 1, 1, 0));
        assert_eq!((sr.ds.base, sr.ds.limit, sr.ds.g), (0xB8000, 0xFFFF, 0));
        assert_eq!((sr.fs.limit, sr.fs.g), (0xFFFF_FFFF, 1));
    }

    #[test]
    fn read_truncates_to_32_bits() {
        let r = kvm_regs { rax: 0xDEAD_0000_1234_5678, rip: 0x1_0000_0010, ..Default::default() };
        let s = read_state(&r, &kvm_sregs::default());
        assert_eq!((s.reg(Gpr::Eax), s.eip), (0x1234_5678, 0x10));
    }
}
