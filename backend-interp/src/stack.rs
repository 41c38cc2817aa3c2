//! Stack instructions: PUSH/POP of registers, memory, immediates and segment registers,
//! PUSHA(D)/POPA(D), PUSHF(D)/POPF(D), ENTER (with nesting levels) and LEAVE.
//!
//! Real mode uses a 16-bit stack: SP wraps inside SS, and a push or pop that would straddle
//! the segment limit raises #SS with SP unchanged. PUSH SP pushes the old SP (286+). A
//! 32-bit PUSH of a segment register moves SP by 4 and writes only the low word (as current
//! Intel cores do).
use picoqemu_core::flags::{IF, RF, VM};

use crate::cpu::{EBP, ESP, SS};
use crate::interrupt::{POPF16_MASK, POPF32_MASK, SSF};
use crate::op::{Flow, Op};
use crate::operand::{lin, seg_fault, Ctx};

const STACK_FAULT: Flow = Flow::Fault(SSF);

/// PUSH reg (`op.m`).
pub fn push_r<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = cx.c.reg::<W>(op.m);
    if cx.push::<W>(v) {
        Flow::Next
    } else {
        STACK_FAULT
    }
}

/// PUSH imm (pre-extended in `op.imm`).
pub fn push_i<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    if cx.push::<W>(op.imm) {
        Flow::Next
    } else {
        STACK_FAULT
    }
}

/// PUSH r/m (memory).
pub fn push_m<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let l = lin!(cx, op, W);
    let v = cx.rd::<W>(l);
    if cx.push::<W>(v) {
        Flow::Next
    } else {
        STACK_FAULT
    }
}

/// PUSH sreg (`op.m`).
pub fn push_s<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let v = cx.c.segs[op.m as usize].selector as u32;
    let sp = cx.c.regs[ESP as usize].wrapping_sub(W as u32) & 0xFFFF;
    match cx.seg_lin::<W>(SS, sp) {
        Some(l) => {
            cx.wr::<2>(l, v);
            cx.c.set_r16(ESP, sp);
            Flow::Next
        }
        None => STACK_FAULT,
    }
}

/// POP reg (`op.m`).
pub fn pop_r<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    match cx.pop::<W>() {
        Some(v) => {
            cx.c.set_reg::<W>(op.m, v);
            Flow::Next
        }
        None => STACK_FAULT,
    }
}

/// POP r/m (memory): SP is incremented before the address is computed.
pub fn pop_m<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let sp0 = cx.c.regs[ESP as usize];
    let Some(v) = cx.pop::<W>() else { return STACK_FAULT };
    match cx.mem_lin::<W>(op) {
        Some(l) => {
            cx.wr::<W>(l, v);
            Flow::Next
        }
        None => {
            cx.c.regs[ESP as usize] = sp0;
            seg_fault(op.seg)
        }
    }
}

/// POP sreg (`op.m`); POP SS holds off debug traps for one instruction.
pub fn pop_s<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    match cx.pop::<W>() {
        Some(v) => {
            cx.c.load_seg(op.m, v as u16);
            if op.m == SS {
                cx.c.inhibit = true;
                cx.c.irq_shadow = true;
                cx.irq_window_changed();
            }
            Flow::Next
        }
        None => STACK_FAULT,
    }
}

/// PUSHA / PUSHAD.
pub fn pusha<const W: u8>(cx: &mut Ctx, _op: &Op) -> Flow {
    let sp0 = cx.c.regs[ESP as usize];
    let tmp = cx.c.reg::<W>(ESP);
    for i in 0..8u8 {
        let v = if i == ESP { tmp } else { cx.c.reg::<W>(i) };
        if !cx.push::<W>(v) {
            cx.c.regs[ESP as usize] = sp0;
            return STACK_FAULT;
        }
    }
    Flow::Next
}

/// POPA / POPAD (the stored SP is skipped).
pub fn popa<const W: u8>(cx: &mut Ctx, _op: &Op) -> Flow {
    let saved = cx.c.regs;
    for i in (0..8u8).rev() {
        match cx.pop::<W>() {
            Some(v) if i != ESP => cx.c.set_reg::<W>(i, v),
            Some(_) => {}
            None => {
                cx.c.regs = saved;
                return STACK_FAULT;
            }
        }
    }
    Flow::Next
}

/// PUSHF / PUSHFD (VM and RF read as 0 in the pushed image).
pub fn pushf<const W: u8>(cx: &mut Ctx, _op: &Op) -> Flow {
    let v = cx.c.flags.get() & !(VM | RF);
    if cx.push::<W>(v) {
        Flow::Next
    } else {
        STACK_FAULT
    }
}

/// POPF / POPFD: real mode on a 386+ writes IOPL and NT too (and AC, ID for POPFD).
pub fn popf<const W: u8>(cx: &mut Ctx, _op: &Op) -> Flow {
    let Some(v) = cx.pop::<W>() else { return STACK_FAULT };
    let mask = if W == 2 { POPF16_MASK } else { POPF32_MASK };
    let old = cx.c.flags.get();
    cx.c.flags.set((old & !mask) | (v & mask));
    if old & IF == 0 && v & IF != 0 {
        cx.irq_window_changed();
    }
    Flow::Next
}

/// ENTER imm16 (`op.imm`), imm8 (`op.imm2`, nesting level mod 32), operand size `W`.
pub fn enter<const W: u8>(cx: &mut Ctx, op: &Op) -> Flow {
    let saved = cx.c.regs;
    let level = op.imm2 & 31;
    let bp = cx.c.reg::<W>(EBP);
    if !cx.push::<W>(bp) {
        return STACK_FAULT;
    }
    let frame = cx.c.regs[ESP as usize] & 0xFFFF;
    if level > 0 {
        let mut bpw = cx.c.regs[EBP as usize] & 0xFFFF;
        for _ in 1..level {
            bpw = bpw.wrapping_sub(W as u32) & 0xFFFF;
            let Some(l) = cx.seg_lin::<W>(SS, bpw) else {
                cx.c.regs = saved;
                return STACK_FAULT;
            };
            let v = cx.rd::<W>(l);
            if !cx.push::<W>(v) {
                cx.c.regs = saved;
                return STACK_FAULT;
            }
        }
        if !cx.push::<W>(frame) {
            cx.c.regs = saved;
            return STACK_FAULT;
        }
    }
    let new_sp = cx.c.regs[ESP as usize].wrapping_sub(op.imm) & 0xFFFF;
    cx.c.set_r16(EBP, frame);
    cx.c.set_r16(ESP, new_sp);
    Flow::Next
}

/// LEAVE: SP = BP, then pop BP (`W` bytes).
pub fn leave<const W: u8>(cx: &mut Ctx, _op: &Op) -> Flow {
    let sp0 = cx.c.regs[ESP as usize];
    let bp = cx.c.regs[EBP as usize];
    cx.c.set_r16(ESP, bp);
    match cx.pop::<W>() {
        Some(v) => {
            cx.c.set_reg::<W>(EBP, v);
            Flow::Next
        }
        None => {
            cx.c.regs[ESP as usize] = sp0;
            STACK_FAULT
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[test]
    fn push_pop_and_push_sp() {
        // push sp ; pop ax ; push 0x1234 ; pop bx ; hlt
        let mut t = T::new(&[0x54, 0x58, 0x68, 0x34, 0x12, 0x5B, 0xF4]);
        t.cpu.gpr[4] = 0x800;
        let s = t.run();
        assert_eq!(s.st.gpr[0], 0x800);
        assert_eq!(s.st.gpr[3], 0x1234);
        assert_eq!(s.st.gpr[4], 0x800);
    }

    #[test]
    fn pusha_popa_round_trip() {
        // pusha ; xor ax,ax ; xor di,di ; popa ; hlt
        let mut t = T::new(&[0x60, 0x31, 0xC0, 0x31, 0xFF, 0x61, 0xF4]);
        t.cpu.gpr = [1, 2, 3, 4, 0x800, 6, 7, 8];
        let s = t.run();
        assert_eq!(s.st.gpr, [1, 2, 3, 4, 0x800, 6, 7, 8]);
        assert_eq!(t.peek16(0x800 - 10), 0x800); // stored SP
    }

    #[test]
    fn enter_with_nesting_and_leave() {
        // enter 4, 2 ; leave ; hlt
        let mut t = T::new(&[0xC8, 0x04, 0x00, 0x02, 0xC9, 0xF4]);
        t.cpu.gpr[4] = 0x800;
        t.cpu.gpr[5] = 0x900;
        t.poke(0x8FE, &[0xCD, 0xAB]);
        let mut t2 = T::new(&[0xC8, 0x04, 0x00, 0x02, 0xF4]);
        t2.cpu = t.cpu;
        t2.poke(0x8FE, &[0xCD, 0xAB]);
        let s2 = t2.run();
        assert_eq!(s2.st.gpr[5], 0x7FE); // BP = frame temp
        assert_eq!(s2.st.gpr[4], 0x7FA - 4);
        assert_eq!(t2.peek16(0x7FE), 0x900); // old BP
        assert_eq!(t2.peek16(0x7FC), 0xABCD); // copied [BP-2]
        assert_eq!(t2.peek16(0x7FA), 0x7FE); // frame pointer
        let s = t.run();
        assert_eq!(s.st.gpr[4], 0x800);
        assert_eq!(s.st.gpr[5], 0x900);
    }

    #[test]
    fn popf_keeps_bit1_and_writes_iopl() {
        // push 0x3FFF ; popf ; hlt
        let mut t = T::new(&[0x68, 0xFF, 0x3F, 0x9D, 0xF4]);
        t.cpu.gpr[4] = 0x800;
        let s = t.run();
        // TF set by POPF: a #DB would follow the HLT, but HLT stops the run first.
        assert_eq!(s.st.eflags & 0xFFFF, 0x3FD7);
    }
}
