//! GDB's i386 register layout (`gdbstub_arch::x86`'s `X86CoreRegs`) from and to a
//! [`CpuState`], and [`RealMode`], the architecture GDB is told about: the i386 registers with
//! the `i8086` architecture name, so GDB disassembles 16-bit code without being told.
//!
//! EIP is the CPU's EIP (IP in real mode), not a linear address; CS, SS, DS, ES, FS and GS are
//! the selectors. Writing a selector loads the segment the real-mode way (base = selector *
//! 16). There is no FPU or SSE unit: those registers read as zero and writes are ignored.
use gdbstub::arch::Arch;
use gdbstub_arch::x86::reg::id::X86CoreRegId;
use gdbstub_arch::x86::reg::X86CoreRegs;
use picoqemu_core::{CpuState, Gpr, SegReg};

/// The i386 register file (as `gdbstub_arch::x86::X86_SSE`) under the name `i8086`.
pub enum RealMode {}

impl Arch for RealMode {
    type Usize = u32;
    type Registers = X86CoreRegs;
    type RegId = X86CoreRegId;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(
            r#"<target version="1.0"><architecture>i8086</architecture><feature name="org.gnu.gdb.i386.sse"></feature></target>"#,
        )
    }
}

/// The registers GDB sees for `s`.
pub fn to_gdb(s: &CpuState, r: &mut X86CoreRegs) {
    *r = X86CoreRegs::default();
    r.eax = s.reg(Gpr::Eax);
    r.ecx = s.reg(Gpr::Ecx);
    r.edx = s.reg(Gpr::Edx);
    r.ebx = s.reg(Gpr::Ebx);
    r.esp = s.reg(Gpr::Esp);
    r.ebp = s.reg(Gpr::Ebp);
    r.esi = s.reg(Gpr::Esi);
    r.edi = s.reg(Gpr::Edi);
    r.eip = s.eip;
    r.eflags = s.eflags;
    let sel = |g: SegReg| u32::from(s.seg(g).selector);
    r.segments.cs = sel(SegReg::Cs);
    r.segments.ss = sel(SegReg::Ss);
    r.segments.ds = sel(SegReg::Ds);
    r.segments.es = sel(SegReg::Es);
    r.segments.fs = sel(SegReg::Fs);
    r.segments.gs = sel(SegReg::Gs);
}

/// `s` with GDB's registers `r` written into it (selectors that changed are reloaded).
pub fn from_gdb(s: &CpuState, r: &X86CoreRegs) -> CpuState {
    let mut n = *s;
    for (g, v) in [
        (Gpr::Eax, r.eax),
        (Gpr::Ecx, r.ecx),
        (Gpr::Edx, r.edx),
        (Gpr::Ebx, r.ebx),
        (Gpr::Esp, r.esp),
        (Gpr::Ebp, r.ebp),
        (Gpr::Esi, r.esi),
        (Gpr::Edi, r.edi),
    ] {
        n.set_reg(g, v);
    }
    n.eip = r.eip;
    // Reserved bit 1 stays set; VM, VIF, VIP, the reserved bits and those above ID cannot be set.
    n.eflags = (r.eflags & 0x0025_7FD5) | 0x2;
    for (g, v) in [
        (SegReg::Cs, r.segments.cs),
        (SegReg::Ss, r.segments.ss),
        (SegReg::Ds, r.segments.ds),
        (SegReg::Es, r.segments.es),
        (SegReg::Fs, r.segments.fs),
        (SegReg::Gs, r.segments.gs),
    ] {
        if u32::from(s.seg(g).selector) != v {
            n.set_seg(g, v as u16);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_segment_reload() {
        let mut s = CpuState::default();
        s.set_reg(Gpr::Ebx, 0x1234_5678);
        s.eip = 0x7C05;
        s.set_seg(SegReg::Ds, 0xB800);
        let mut r = X86CoreRegs::default();
        to_gdb(&s, &mut r);
        assert_eq!((r.ebx, r.eip, r.segments.ds), (0x1234_5678, 0x7C05, 0xB800));
        assert_eq!(from_gdb(&s, &r), s);
        r.segments.es = 0x07C0;
        r.eflags = 0xFFFF_FFFF;
        let n = from_gdb(&s, &r);
        assert_eq!((n.seg(SegReg::Es).base, n.seg(SegReg::Es).selector), (0x7C00, 0x07C0));
        assert_eq!(n.eflags & 0x2, 0x2);
        assert_eq!(n.eflags & (1 << 17), 0, "VM cannot be set");
    }
}
