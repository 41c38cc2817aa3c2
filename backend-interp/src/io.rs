//! Port I/O: IN and OUT in every form (imm8 port or DX, byte/word/dword), routed to the
//! machine's bus. A bus stop (the debug-exit port) ends the run after the instruction.
//! INS/OUTS live with the other string instructions in `string.rs`.
use crate::cpu::{EAX, EDX};
use crate::op::{Flow, Op};
use crate::operand::Ctx;

/// IN acc, imm8 (`DX = false`, port in `op.imm`) / IN acc, DX.
pub fn in_<const W: u8, const DX: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let port = if DX { cx.c.r16(EDX) as u16 } else { op.imm as u16 };
    let v = cx.pio_in(port, W);
    cx.c.set_reg::<W>(EAX, v);
    Flow::Next
}

/// OUT imm8, acc / OUT DX, acc.
pub fn out<const W: u8, const DX: bool>(cx: &mut Ctx, op: &Op) -> Flow {
    let port = if DX { cx.c.r16(EDX) as u16 } else { op.imm as u16 };
    let v = cx.c.reg::<W>(EAX);
    cx.pio_out(port, W, v);
    Flow::Next
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use picoqemu_core::StopReason;

    #[test]
    fn serial_out_and_unclaimed_in() {
        // mov dx, 0x3f8 ; mov al, 'A' ; out dx, al ; in al, 0x60 ; in ax, dx... ; hlt
        let code = [0xBA, 0xF8, 0x03, 0xB0, 0x41, 0xEE, 0xE4, 0x60, 0xF4];
        let mut t = T::new(&code);
        let s = t.run();
        assert_eq!(s.st.gpr[0] & 0xFF, 0xFF);
        assert_eq!(t.m.bus().uart.out.captured(), b"A");
    }

    #[test]
    fn debug_exit_stops_after_the_out() {
        // mov al, 0x10 ; out 0xf4, al ; hlt
        let mut t = T::new(&[0xB0, 0x10, 0xE6, 0xF4, 0xF4]);
        let s = t.run();
        assert_eq!(s.stop, StopReason::DebugExit(0x10));
        assert_eq!(s.st.eip, 0x104);
    }

    #[test]
    fn rep_outsb_to_debugcon() {
        // mov dx, 0xe9 ; mov cx, 3 ; rep outsb ; hlt
        let mut t = T::new(&[0xBA, 0xE9, 0x00, 0xB9, 0x03, 0x00, 0xF3, 0x6E, 0xF4]);
        t.cpu.gpr[6] = 0x300;
        t.poke(0x300, b"abc");
        t.run();
        assert_eq!(t.m.bus().debugcon.out.captured(), b"abc");
    }
}
