//! Real-mode interrupt and exception delivery through the IVT (at `idt_base`, bounded by
//! `idt_limit`), fault escalation (double fault, triple fault), and the INT n / INT3 / INT1 /
//! INTO / IRET instructions.
//!
//! Delivery reads the 4-byte IVT entry, pushes FLAGS, CS and IP (16-bit each), clears IF, TF,
//! AC and RF, and jumps. An entry past the IDT limit raises #GP; a push past the stack
//! segment raises #SS. A contributory fault (#DE, #TS, #NP, #SS, #GP) raised while delivering
//! a contributory fault becomes #DF; any fault while delivering #DF shuts the CPU down.
use picoqemu_core::flags::{AC, IF, RF, TF};

use crate::cpu::CS;
use crate::op::{Flow, Op};
use crate::operand::Ctx;

pub const DE: u8 = 0;
pub const DB: u8 = 1;
pub const BP: u8 = 3;
pub const OF: u8 = 4;
pub const BR: u8 = 5;
pub const UD: u8 = 6;
pub const NM: u8 = 7;
pub const DF: u8 = 8;
pub const SSF: u8 = 12;
pub const GP: u8 = 13;

fn contributory(v: u8) -> bool {
    matches!(v, 0 | 10..=13)
}

/// One delivery attempt; on failure nothing architectural has changed (except possibly
/// stack bytes below SP) and the vector of the new fault is returned.
fn try_deliver(cx: &mut Ctx, vector: u8, ret_ip: u32) -> Result<(), u8> {
    let off = vector as u32 * 4;
    if off + 3 > cx.c.idt_limit as u32 {
        return Err(GP);
    }
    let ent = cx.c.idt_base.wrapping_add(off);
    let new_ip = cx.rd::<2>(ent);
    let new_cs = cx.rd::<2>(ent.wrapping_add(2));
    let sp0 = cx.c.regs[4];
    let fl = cx.c.flags.get();
    let cs = cx.c.segs[CS as usize].selector as u32;
    if !(cx.push::<2>(fl) && cx.push::<2>(cs) && cx.push::<2>(ret_ip)) {
        cx.c.regs[4] = sp0;
        return Err(SSF);
    }
    cx.c.flags.bits &= !(IF | TF | AC | RF);
    cx.c.load_seg(CS, new_cs as u16);
    cx.c.eip = new_ip;
    Ok(())
}

/// Delivers `vector` with `ret_ip` as the pushed IP, escalating faults that happen during
/// delivery. Returns [`Flow::Jump`], or [`Flow::TripleFault`].
pub fn raise(cx: &mut Ctx, vector: u8, ret_ip: u32) -> Flow {
    let mut v = vector;
    let mut ip = ret_ip;
    cx.delivered_int += 1;
    loop {
        match try_deliver(cx, v, ip) {
            Ok(()) => return Flow::Jump,
            Err(f) => {
                if v == DF {
                    return Flow::TripleFault;
                }
                v = if contributory(v) && contributory(f) { DF } else { f };
                ip = cx.c.eip;
            }
        }
    }
}

/// The IP of the instruction after `op`.
#[inline(always)]
pub fn next_ip(cx: &Ctx, op: &Op) -> u32 {
    let n = cx.c.eip.wrapping_add(op.len as u32);
    if cx.c.eip <= 0xFFFF {
        n & 0xFFFF
    } else {
        n
    }
}

/// INT imm8 (vector in `op.imm`), INT3 and INT1 (ICEBP).
pub fn int_n(cx: &mut Ctx, op: &Op) -> Flow {
    let ip = next_ip(cx, op);
    raise(cx, op.imm as u8, ip)
}

/// INTO: INT 4 when OF is set.
pub fn into(cx: &mut Ctx, op: &Op) -> Flow {
    if cx.c.flags.of() {
        let ip = next_ip(cx, op);
        raise(cx, OF, ip)
    } else {
        Flow::Next
    }
}

/// Writable EFLAGS bits for POPF/IRET in real mode (386+: IOPL and NT too).
pub const POPF16_MASK: u32 = 0x7FD5;
/// POPFD/IRETD additionally write AC and ID.
pub const POPF32_MASK: u32 = 0x7FD5 | (1 << 18) | (1 << 21);

/// IRET (o16) and IRETD (o32).
pub fn iret(cx: &mut Ctx, op: &Op) -> Flow {
    let sp0 = cx.c.regs[4];
    let w = op.osz;
    let (ip, cs, fl) = match (cx.pop_w(w), cx.pop_w(w), cx.pop_w(w)) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => {
            cx.c.regs[4] = sp0;
            return Flow::Fault(SSF);
        }
    };
    let ip = if w == 2 { ip & 0xFFFF } else { ip };
    if ip > cx.c.segs[CS as usize].limit {
        cx.c.regs[4] = sp0;
        return Flow::Fault(GP);
    }
    let mask = if w == 2 { POPF16_MASK } else { POPF32_MASK };
    let old = cx.c.flags.get();
    cx.c.flags.set((old & !mask) | (fl & mask));
    cx.c.load_seg(CS, cs as u16);
    cx.c.eip = ip;
    if old & IF == 0 && fl & IF != 0 {
        cx.irq_window_changed();
    }
    Flow::Jump
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[test]
    fn int_pushes_next_ip_and_iret_returns() {
        // int 0x21 at 0:0100; handler at 1000:0000 does inc ax; iret
        let mut t = T::new(&[0xCD, 0x21, 0xF4]);
        t.poke(0x21 * 4, &[0x00, 0x00, 0x00, 0x10]);
        t.poke(0x10000, &[0x40, 0xCF]);
        t.cpu.gpr[4] = 0x1000;
        t.cpu.eflags = 0x202 | 1;
        let s = t.run();
        assert_eq!(s.stop, picoqemu_core::StopReason::Halted);
        assert_eq!(s.st.gpr[0], 1);
        assert_eq!(s.st.eip, 0x103);
        assert_eq!(s.st.gpr[4], 0x1000);
        assert_eq!(s.st.eflags & 0x203, 0x203);
    }

    #[test]
    fn divide_error_pushes_faulting_ip() {
        // 0100: 66 F6 F3 (o32 div bl with bl = 0: prefix included in the pushed IP)
        let mut t = T::new(&[0x66, 0xF6, 0xF3, 0xF4]);
        t.poke(0, &[0x00, 0x02, 0x00, 0x00]); // #DE handler at 0000:0200
        t.poke(0x200, &[0xF4]);
        t.cpu.gpr[4] = 0x1000;
        let s = t.run();
        assert_eq!(s.st.eip, 0x201);
        assert_eq!(t.peek16(0xFFA), 0x100); // pushed IP
        assert_eq!(t.peek16(0xFFC), 0); // pushed CS
    }

    #[test]
    fn ivt_entry_past_limit_escalates_to_triple_fault() {
        let mut t = T::new(&[0xCD, 0x80, 0xF4]);
        t.cpu.idt_limit = 0x10;
        t.cpu.gpr[4] = 0x1000;
        assert_eq!(t.run().stop, picoqemu_core::StopReason::TripleFault);
    }

    #[test]
    fn gp_from_int_past_limit_goes_to_vector_13() {
        let mut t = T::new(&[0xCD, 0x80, 0xF4]);
        t.cpu.idt_limit = 13 * 4 + 3;
        t.poke(13 * 4, &[0x00, 0x03, 0x00, 0x00]);
        t.poke(0x300, &[0xF4]);
        t.cpu.gpr[4] = 0x1000;
        let s = t.run();
        assert_eq!(s.st.eip, 0x301);
        assert_eq!(t.peek16(0xFFA), 0x100); // the INT's own address (a fault)
    }
}
