//! Inspection on the interpreter: the magic breakpoint (`xchg bx, bx` stops after it only
//! when switched on, with and without the compiled tier, on code cached before, and after
//! switching it off again) and the history of blocks run.
mod common;

use common::*;
use iced_x86::code_asm::*;
use picoqemu_core::{Backend, HistoryEntry, StopReason};
use picoqemu_interp::JitMode;

/// `mov ax, 1; xchg bx, bx; inc ax; hlt`; returns the code and the address after the xchg.
fn magic_guest() -> (Vec<u8>, u16) {
    let (code, l) = asm(CODE, |a| {
        let mut after = a.create_label();
        a.mov(ax, 1u32)?;
        a.xchg(bx, bx)?;
        a.set_label(&mut after)?;
        a.inc(ax)?;
        a.hlt()?;
        Ok(vec![after])
    });
    (code, l[0])
}

#[test]
fn magic_break_stops_after_xchg_bx_bx_only_when_on() {
    for mode in [JitMode::Off, JitMode::Eager] {
        let (code, after) = magic_guest();
        let mut g = Guest::new(mode, &code, &[0xF4], 0x2);
        assert_eq!(g.go(), StopReason::Halted, "off: an ordinary instruction");
        assert_eq!(g.state().gpr[0] & 0xFFFF, 2);
        let mut g = Guest::new(mode, &code, &[0xF4], 0x2);
        g.be.set_magic_break(true).unwrap();
        assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: u32::from(after) });
        assert_eq!(g.state().gpr[0] & 0xFFFF, 1, "stopped before inc ax");
        g.be.set_magic_break(false).unwrap();
        assert_eq!(g.go(), StopReason::Halted, "resumes");
        assert_eq!(g.state().gpr[0] & 0xFFFF, 2);
    }
}

#[test]
fn magic_break_switched_on_after_the_code_was_cached() {
    let (code, after) = magic_guest();
    let mut g = Guest::new(JitMode::Off, &code, &[0xF4], 0x2);
    assert_eq!(g.go(), StopReason::Halted);
    let start =
        picoqemu_core::CpuState { eip: u32::from(CODE), gpr: [0, 0, 0, 0, 0x8000, 0, 0, 0], ..g.state() };
    g.be.set_state(&start).unwrap();
    g.be.set_magic_break(true).unwrap();
    assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: u32::from(after) });
}

#[test]
fn history_lists_the_blocks_run() {
    // A block `mov ax, 1; jmp next`, then `next: inc ax; hlt`.
    let (code, l) = asm(CODE, |a| {
        let mut next = a.create_label();
        a.mov(ax, 1u32)?;
        a.jmp(next)?;
        a.nop()?;
        a.set_label(&mut next)?;
        a.inc(ax)?;
        a.hlt()?;
        Ok(vec![next])
    });
    let mut g = Guest::new(JitMode::Off, &code, &[0xF4], 0x2);
    assert!(g.be.history().is_empty());
    assert_eq!(g.go(), StopReason::Halted);
    let h = g.be.history().entries;
    assert_eq!(
        h,
        [
            HistoryEntry { cs: 0, ip: u32::from(CODE), bytes: 5, compiled: 0 },
            HistoryEntry { cs: 0, ip: u32::from(l[0]), bytes: 2, compiled: 0 },
        ],
        "mov ax, 1 (3 bytes) + jmp short (2); inc ax (1) + hlt (1)"
    );
    g.be.reset(&mut g.m).unwrap();
    assert!(g.be.history().is_empty(), "reset forgets the history");
}
