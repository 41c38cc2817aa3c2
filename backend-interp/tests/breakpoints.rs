//! Execution breakpoints on the interpreter: they stop before the instruction wherever it
//! runs (inside a cached, optimised block; inside a loop the compiled tier runs; at a fault
//! handler's first instruction; at the run's first instruction), a run resumed from a
//! breakpoint goes on, a REP stops once per execution however many chunks it runs in,
//! removal works, and `reset` keeps breakpoints.
mod common;

use common::*;
use iced_x86::code_asm::*;
use picoqemu_core::{Backend, Breakpoint, BreakpointKind, CpuState, RunLimits, StopReason};
use picoqemu_interp::JitMode;

fn sw(linear: u16) -> Breakpoint {
    Breakpoint { linear: linear as u32, kind: BreakpointKind::Software }
}

fn hw(linear: u16) -> Breakpoint {
    Breakpoint { linear: linear as u32, kind: BreakpointKind::Hardware }
}

/// 50 passes of `inc ax; add bx, 2; inc si; dec cx; jnz top`; returns the code and the
/// addresses of `add bx, 2` and `inc si`.
fn counting_loop() -> (Vec<u8>, u16, u16) {
    let (code, l) = asm(CODE, |a| {
        let mut top = a.create_label();
        let mut add = a.create_label();
        let mut inc = a.create_label();
        a.mov(cx, 50u32)?;
        a.set_label(&mut top)?;
        a.inc(ax)?;
        a.set_label(&mut add)?;
        a.add(bx, 2u32)?;
        a.set_label(&mut inc)?;
        a.inc(si)?;
        a.dec(cx)?;
        a.jnz(top)?;
        a.hlt()?;
        Ok(vec![add, inc])
    });
    (code, l[0], l[1])
}

/// Checks the loop's registers at a stop before `inc si`: `done` passes are complete and the
/// current pass ran `inc ax; add bx, 2`.
fn at_inc_si(st: &CpuState, done: u32) {
    assert_eq!(st.gpr[6] & 0xFFFF, done, "SI: passes done");
    assert_eq!(st.gpr[0] & 0xFFFF, done + 1, "AX");
    assert_eq!(st.gpr[3] & 0xFFFF, 2 * (done + 1), "BX");
    assert_eq!(st.gpr[1] & 0xFFFF, 50 - done, "CX");
}

#[test]
fn stops_inside_a_cached_block_every_pass_until_removed() {
    for mode in [JitMode::Off, JitMode::Hot] {
        let (code, add, inc) = counting_loop();
        let mut g = Guest::new(mode, &code, &[], 0x2);
        // Cache (and optimise) the loop block first.
        assert_eq!(g.run(RunLimits::instructions(16)), StopReason::BudgetExhausted);
        assert!(g.be.cached_pages() > 0);
        g.be.set_breakpoints(&[sw(inc), hw(0x7000)]).expect("breakpoints");
        assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: inc as u32 });
        let st = g.state();
        assert_eq!(st.eip, inc as u32);
        // 16 instructions = the MOV and 3 passes, then `inc ax; add bx, 2` of the 4th.
        at_inc_si(&st, 3);
        let n = g.instructions();
        assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: inc as u32 }, "{mode:?}");
        at_inc_si(&g.state(), 4);
        assert_eq!(g.instructions(), n + 5, "exactly one pass between two stops");
        // Replace the set: the old breakpoint is gone, the new one stops.
        g.be.set_breakpoints(&[hw(add)]).expect("breakpoints");
        assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: add as u32 });
        assert_eq!(g.state().gpr[6] & 0xFFFF, 5);
        g.be.set_breakpoints(&[]).expect("remove");
        assert_eq!(g.go(), StopReason::Halted);
        let st = g.state();
        assert_eq!((st.gpr[0] & 0xFFFF, st.gpr[1] & 0xFFFF, st.gpr[3] & 0xFFFF), (50, 0, 100));
        assert_eq!(g.instructions(), 1 + 50 * 5 + 1);
    }
}

#[test]
fn stops_inside_a_compiled_loop() {
    let (code, _, inc) = counting_loop();
    let mut g = Guest::new(JitMode::Eager, &code, &[], 0x2);
    assert_eq!(g.run(RunLimits::instructions(26)), StopReason::BudgetExhausted);
    let tier = tier_available();
    let before = g.be.jit_stats();
    if tier {
        assert!(before.compiled >= 1 && before.runs >= 1, "the loop ran compiled: {before:?}");
    }
    g.be.set_breakpoints(&[sw(inc)]).expect("breakpoints");
    assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: inc as u32 });
    at_inc_si(&g.state(), 5);
    assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: inc as u32 });
    at_inc_si(&g.state(), 6);
    assert_eq!(g.be.jit_stats().runs, before.runs, "no compiled code on a page with a breakpoint");
    g.be.set_breakpoints(&[]).expect("remove");
    assert_eq!(g.go(), StopReason::Halted);
    let st = g.state();
    assert_eq!((st.gpr[0] & 0xFFFF, st.gpr[6] & 0xFFFF, st.gpr[1] & 0xFFFF), (50, 50, 0));
    assert_eq!(g.instructions(), 1 + 50 * 5 + 1);
    if tier {
        assert!(g.be.jit_stats().runs > before.runs, "compiled again once the breakpoint is gone");
    }
}

#[test]
fn stops_at_a_fault_handlers_first_instruction() {
    // div bl with BL = 0: #DE, whose handler (vector 0 -> 0000:0600) sets DX and halts.
    let (code, l) = asm(CODE, |a| {
        let mut div = a.create_label();
        a.mov(bl, 0u32)?;
        a.set_label(&mut div)?;
        a.div(bl)?;
        a.hlt()?;
        Ok(vec![div])
    });
    let mut g = Guest::new(JitMode::Hot, &code, &[], 0x2);
    g.m.ram_mut().write(0, &[0x00, 0x06, 0x00, 0x00]).expect("ivt 0");
    g.m.ram_mut().write(0x600, &[0xBA, 0x07, 0x00, 0xF4]).expect("handler: mov dx, 7; hlt");
    g.be.set_breakpoints(&[hw(0x600)]).expect("breakpoints");
    assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: 0x600 });
    let st = g.state();
    assert_eq!(st.gpr[2], 0, "the handler has not run");
    assert_eq!(st.gpr[4], STACK_TOP as u32 - 6);
    assert_eq!(g.frame().0, l[0], "the pushed IP is the faulting DIV");
    assert_eq!(g.go(), StopReason::Halted);
    assert_eq!(g.state().gpr[2], 7);
}

#[test]
fn stops_before_the_first_instruction_and_resumes_from_it() {
    let (code, _) = asm(CODE, |a| {
        a.inc(dx)?;
        a.hlt()?;
        Ok(vec![])
    });
    let mut g = Guest::new(JitMode::Off, &code, &[], 0x2);
    g.be.set_breakpoints(&[sw(CODE)]).expect("breakpoints");
    assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: CODE as u32 });
    assert_eq!(g.instructions(), 0);
    assert_eq!(g.go(), StopReason::Halted, "resuming runs the instruction at the breakpoint");
    assert_eq!(g.state().gpr[2], 1);
}

#[test]
fn a_rep_stops_once_per_execution_in_any_chunks() {
    // Two executions of `rep lodsb` (40 iterations each) with a breakpoint on it.
    let (code, l) = asm(CODE, |a| {
        let mut rep = a.create_label();
        a.mov(cx, 40u32)?;
        a.set_label(&mut rep)?;
        a.rep().lodsb()?;
        a.inc(dx)?;
        a.mov(cx, 40u32)?;
        a.cmp(dx, 2u32)?;
        a.jne(rep)?;
        a.hlt()?;
        Ok(vec![rep])
    });
    for chunk in [1u64, 7, 1_000_000] {
        let mut g = Guest::new(JitMode::Off, &code, &[], 0x2);
        g.be.set_breakpoints(&[sw(l[0])]).expect("breakpoints");
        let mut hits = Vec::new();
        loop {
            match g.run(RunLimits::instructions(chunk)) {
                StopReason::Breakpoint { ip, .. } => hits.push((ip, g.state().gpr[1] & 0xFFFF)),
                StopReason::BudgetExhausted | StopReason::StepDone => {}
                StopReason::Halted => break,
                s => panic!("unexpected stop {s:?}"),
            }
        }
        assert_eq!(hits, vec![(l[0] as u32, 40), (l[0] as u32, 40)], "chunks of {chunk}");
        assert_eq!(g.state().gpr[6] & 0xFFFF, 80, "SI after both REPs");
    }
}

#[test]
fn reset_gives_power_on_state_and_keeps_breakpoints() {
    let (code, _) = asm(CODE, |a| {
        a.mov(ax, 0x1234u32)?;
        a.sti()?;
        a.hlt()?;
        Ok(vec![])
    });
    let mut g = Guest::new(JitMode::Off, &code, &[], 0x2);
    g.be.set_breakpoints(&[sw(0)]).expect("breakpoints");
    assert_eq!(g.run(RunLimits::instructions(2)), StopReason::BudgetExhausted);
    let n = g.instructions();
    g.be.reset(&mut g.m).expect("reset");
    assert_eq!(g.state(), CpuState::default());
    assert_eq!(g.instructions(), n, "counters are since creation");
    // Power-on CS:IP is 0000:0000, where the breakpoint still is.
    assert_eq!(g.go(), StopReason::Breakpoint { cs: 0, ip: 0 });
}
