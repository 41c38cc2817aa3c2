//! System and miscellaneous instructions: HLT, NOP forms, flag bit instructions (CLC STC CMC
//! CLD STD CLI STI), CPUID, RDTSC, the real-mode 0F 01 group (LGDT LIDT SGDT SIDT SMSW LMSW
//! INVLPG), MOV to/from CR0/CR2/CR3/CR4, CLTS, INVD/WBINVD, and the x87 escape/WAIT rules.
//!
//! CPUID: max leaf 1, vendor "PicoQEMU x86", leaf 1 EAX = 0x521 (family 5 model 2 stepping
//! 1, the reset EDX), EDX = TSC | CX8 | CMOV (no FPU); leaves past 1 return leaf 1's data, as
//! Intel does. RDTSC returns the count of retired instructions (deterministic).
//!
//! x87: no coprocessor is present. With CR0.EM or CR0.TS set an ESC instruction raises #NM.
//! Otherwise it behaves as on a 386 with no 387 attached: the memory operand's address is
//! checked (a #GP/#SS if it is past the segment limit) and nothing is read or written, so
//! FNINIT/FNSTSW/FNSTCW leave memory (and AX for FNSTSW AX) unchanged and the classic FPU
//! probe finds no FPU. WAIT/FWAIT raises #NM when CR0.MP and CR0.TS are both set and
//! otherwise does nothing. Setting CR0.PE (protected mode) is out of scope: the run stops
//! with `Unsupported` at that instruction, with nothing changed.
use picoqemu_core::flags::{CF, DF, IF};

use crate::cpu::{cr0, EAX, EBX, ECX, EDX};
use crate::interrupt::{GP, NM, UD};
use crate::op::{Flow, Op};
use crate::operand::{lin, seg_fault, Ctx};

/// CPUID leaf 1 EDX: TSC (4), CX8 (8), CMOV (15).
pub const CPUID_FEATURES: u32 = (1 << 4) | (1 << 8) | (1 << 15);

pub fn hlt(_cx: &mut Ctx, _op: &Op) -> Flow {
    Flow::Halt
}

/// NOP and every form that architecturally does nothing here (multi-byte NOP, PAUSE, hint
/// NOPs, PREFETCH, INVLPG without paging, INVD/WBINVD without caches to model).
pub fn nop(_cx: &mut Ctx, _op: &Op) -> Flow {
    Flow::Next
}

/// `xchg bx, bx` with the magic breakpoint on (`Backend::set_magic_break`): exchanging BX
/// with itself changes nothing; the run stops with `Breakpoint` at the next instruction, as
/// Bochs stops after it.
pub fn magic_break(cx: &mut Ctx, op: &Op) -> Flow {
    let e = cx.c.eip.wrapping_add(u32::from(op.len));
    let ip = if cx.c.eip <= 0xFFFF { e & 0xFFFF } else { e };
    let cs = cx.c.segs[crate::cpu::CS as usize].selector;
    cx.request_stop(picoqemu_core::StopReason::Breakpoint { cs, ip });
    Flow::Next
}

/// An instruction the interpreter does not implement: stop with nothing executed.
pub fn unsupported(_cx: &mut Ctx, _op: &Op) -> Flow {
    Flow::Unsupported
}

/// An instruction longer than 15 bytes: #GP.
pub fn too_long(_cx: &mut Ctx, _op: &Op) -> Flow {
    Flow::Fault(GP)
}

pub const CLC: u8 = 0;
pub const STC: u8 = 1;
pub const CMC: u8 = 2;
pub const CLD: u8 = 3;
pub const STD: u8 = 4;
pub const CLI: u8 = 5;
pub const STI: u8 = 6;

/// CLC STC CMC CLD STD CLI STI.
pub fn flag_op<const K: u8>(cx: &mut Ctx, _op: &Op) -> Flow {
    if K == STI {
        if cx.c.flags.bits & IF == 0 {
            // External interrupts are recognised again after the next instruction.
            cx.c.flags.bits |= IF;
            cx.c.irq_shadow = true;
            cx.irq_window_changed();
        }
        return Flow::Next;
    }
    let f = &mut cx.c.flags;
    match K {
        CLC => f.set_some(CF, 0),
        STC => f.set_some(CF, CF),
        CMC => {
            let c = f.cf();
            f.set_some(CF, if c { 0 } else { CF })
        }
        CLD => f.bits &= !DF,
        STD => f.bits |= DF,
        _ => f.bits &= !IF,
    }
    Flow::Next
}

fn le(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*s)
}

pub fn cpuid(cx: &mut Ctx, _op: &Op) -> Flow {
    let leaf = cx.c.regs[EAX as usize];
    let (a, b, c, d) = if leaf == 0 {
        (1, le(b"Pico"), le(b" x86"), le(b"QEMU"))
    } else {
        (picoqemu_core::loader::RESET_EDX, 0, 0, CPUID_FEATURES)
    };
    cx.c.regs[EAX as usize] = a;
    cx.c.regs[EBX as usize] = b;
    cx.c.regs[ECX as usize] = c;
    cx.c.regs[EDX as usize] = d;
    Flow::Next
}

pub fn rdtsc(cx: &mut Ctx, _op: &Op) -> Flow {
    let t = cx.icount;
    cx.c.regs[EAX as usize] = t as u32;
    cx.c.regs[EDX as usize] = (t >> 32) as u32;
    Flow::Next
}

/// The descriptor-table registers of the 0F 01 group.
pub const GDTR: u8 = 0;
pub const IDTR: u8 = 1;

/// LGDT/LIDT m (a 16-bit operand size loads a 24-bit base).
pub fn lxdt<const T: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let off = cx.ea(op);
    let Some(l) = cx.seg_lin_n(op.seg, off, 6) else { return seg_fault(op.seg) };
    let limit = cx.rd::<2>(l) as u16;
    let mut base = cx.rd::<4>(l.wrapping_add(2));
    if op.osz == 2 {
        base &= 0x00FF_FFFF;
    }
    if T == GDTR {
        cx.c.gdt_base = base;
        cx.c.gdt_limit = limit;
    } else {
        cx.c.idt_base = base;
        cx.c.idt_limit = limit;
    }
    Flow::Next
}

/// SGDT/SIDT m (a 16-bit operand size stores the base's top byte as 0).
pub fn sxdt<const T: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let off = cx.ea(op);
    let Some(l) = cx.seg_lin_n(op.seg, off, 6) else { return seg_fault(op.seg) };
    let (base, limit) =
        if T == GDTR { (cx.c.gdt_base, cx.c.gdt_limit) } else { (cx.c.idt_base, cx.c.idt_limit) };
    let base = if op.osz == 2 { base & 0x00FF_FFFF } else { base };
    cx.wr::<2>(l, limit as u32);
    cx.wr::<4>(l.wrapping_add(2), base);
    Flow::Next
}

/// SMSW r/m: the low word of CR0 (a 32-bit register destination gets all of CR0).
pub fn smsw<const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    if MEM {
        let l = lin!(cx, op, 2);
        cx.wr::<2>(l, cx.c.cr0);
    } else {
        cx.c.set_reg_w(op.osz, op.m, cx.c.cr0);
    }
    Flow::Next
}

/// Applies a CR0 write; `None` means "protected mode requested" (unsupported).
fn write_cr0(cx: &mut Ctx, v: u32) -> Option<Flow> {
    if v & cr0::PE != 0 {
        return None;
    }
    if v & cr0::PG != 0 || (v & cr0::NW != 0 && v & cr0::CD == 0) {
        return Some(Flow::Fault(GP));
    }
    cx.c.cr0 = v | cr0::ET;
    Some(Flow::Next)
}

/// LMSW r/m16: loads PE MP EM TS (PE cannot be cleared; setting it is unsupported).
pub fn lmsw<const MEM: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = if MEM {
        let l = lin!(cx, op, 2);
        cx.rd::<2>(l)
    } else {
        cx.c.r16(op.m)
    };
    let new = (cx.c.cr0 & !0xE) | (v & 0xF);
    write_cr0(cx, new).unwrap_or(Flow::Unsupported)
}

/// MOV CRn (`op.r`), r32 (`op.m`).
pub fn mov_to_cr(cx: &mut Ctx, op: &Op) -> Flow {
    let v = cx.c.regs[op.m as usize];
    match op.r {
        0 => write_cr0(cx, v).unwrap_or(Flow::Unsupported),
        2 => {
            cx.c.cr2 = v;
            Flow::Next
        }
        3 => {
            cx.c.cr3 = v;
            Flow::Next
        }
        4 => {
            cx.c.cr4 = v;
            Flow::Next
        }
        _ => Flow::Fault(UD),
    }
}

/// MOV r32 (`op.m`), CRn (`op.r`).
pub fn mov_from_cr(cx: &mut Ctx, op: &Op) -> Flow {
    let v = match op.r {
        0 => cx.c.cr0,
        2 => cx.c.cr2,
        3 => cx.c.cr3,
        4 => cx.c.cr4,
        _ => return Flow::Fault(UD),
    };
    cx.c.regs[op.m as usize] = v;
    Flow::Next
}

/// CLTS: clears CR0.TS.
pub fn clts(cx: &mut Ctx, _op: &Op) -> Flow {
    cx.c.cr0 &= !cr0::TS;
    Flow::Next
}

/// An x87 ESC instruction (no coprocessor). `op.aux` = 1 when it has a memory operand of
/// `op.imm` bytes.
pub fn esc(cx: &mut Ctx, op: &Op) -> Flow {
    if cx.c.cr0 & (cr0::EM | cr0::TS) != 0 {
        return Flow::Fault(NM);
    }
    if op.aux == 1 {
        let off = cx.ea(op);
        if cx.seg_lin_n(op.seg, off, op.imm.max(1)).is_none() {
            return seg_fault(op.seg);
        }
    }
    Flow::Next
}

/// WAIT/FWAIT.
pub fn wait(cx: &mut Ctx, _op: &Op) -> Flow {
    if cx.c.cr0 & (cr0::MP | cr0::TS) == (cr0::MP | cr0::TS) {
        Flow::Fault(NM)
    } else {
        Flow::Next
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use picoqemu_core::StopReason;

    #[test]
    fn cpuid_vendor_and_features() {
        // xor eax,eax ; cpuid ; hlt
        let mut t = T::new(&[0x66, 0x31, 0xC0, 0x0F, 0xA2, 0xF4]);
        let s = t.run();
        let mut v = Vec::new();
        for r in [3, 2, 1] {
            v.extend_from_slice(&s.st.gpr[r].to_le_bytes());
        }
        assert_eq!(&v, b"PicoQEMU x86");
        assert_eq!(s.st.gpr[0], 1);
        // mov eax, 1 ; cpuid
        let mut t = T::new(&[0x66, 0xB8, 1, 0, 0, 0, 0x0F, 0xA2, 0xF4]);
        let s = t.run();
        assert_eq!(s.st.gpr[0], 0x521);
        assert_eq!(s.st.gpr[2], super::CPUID_FEATURES);
    }

    #[test]
    fn lidt_moves_the_ivt() {
        // lidt [0x300] ; int 0x20 ; hlt     IVT at 0x1000: vector 0x20 -> 0000:0600
        let mut t = T::new(&[0x0F, 0x01, 0x1E, 0x00, 0x03, 0xCD, 0x20, 0xF4]);
        t.poke(0x300, &[0xFF, 0x03, 0x00, 0x10, 0x00, 0x00]);
        t.poke(0x1000 + 0x80, &[0x00, 0x06, 0x00, 0x00]);
        t.poke(0x600, &[0xF4]);
        t.cpu.gpr[4] = 0x800;
        let s = t.run();
        assert_eq!(s.st.eip, 0x601);
        assert_eq!(s.st.idt_base, 0x1000);
    }

    #[test]
    fn setting_pe_is_unsupported_and_changes_nothing() {
        // mov eax, cr0 ; or al, 1 ; mov cr0, eax
        let mut t = T::new(&[0x0F, 0x20, 0xC0, 0x0C, 0x01, 0x0F, 0x22, 0xC0, 0xF4]);
        let s = t.run();
        assert!(matches!(s.stop, StopReason::Unsupported { ip: 0x105, .. }));
        assert_eq!(s.st.cr0 & 1, 0);
    }

    #[test]
    fn fpu_probe_finds_no_fpu() {
        // fninit ; fnstsw [0x300] ; hlt  with [0x300] = 0x5A5A
        let mut t = T::new(&[0xDB, 0xE3, 0xDD, 0x3E, 0x00, 0x03, 0xF4]);
        t.poke(0x300, &[0x5A, 0x5A]);
        t.cpu.cr0 &= !4;
        let s = t.run();
        assert_eq!(s.stop, StopReason::Halted);
        assert_eq!(t.peek16(0x300), 0x5A5A);
        // with CR0.EM set: #NM (vector 7)
        let mut t = T::new(&[0xDB, 0xE3, 0xF4]);
        t.cpu.cr0 |= 4;
        t.cpu.gpr[4] = 0x800;
        t.poke(7 * 4, &[0x00, 0x06, 0, 0]);
        t.poke(0x600, &[0xF4]);
        assert_eq!(t.run().st.eip, 0x601);
    }
}
