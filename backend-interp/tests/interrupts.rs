//! External interrupts on the interpreter (requests raised with `Machine::raise_interrupt`):
//! IF=0 holds a request, IF=1 takes it at the next instruction boundary, the STI / MOV SS
//! shadows hold it off for exactly one instruction, POPF and IRET open the window, HLT with
//! IF=1 wakes only for a request, the pushed frame and the handler's IRET resume the program;
//! and the machine's virtual clock follows the instruction count exactly, whatever the tier
//! and the run boundaries.
mod common;

use common::*;
use iced_x86::code_asm::*;
use picoqemu_core::{Backend, RunLimits, StopReason};
use picoqemu_interp::JitMode;

/// The handler: `mov bx, ax; inc di; iret` (BX records AX at delivery, DI counts deliveries).
fn handler() -> Vec<u8> {
    asm(HANDLER, |a| {
        a.mov(bx, ax)?;
        a.inc(di)?;
        a.iret()?;
        Ok(vec![])
    })
    .0
}

#[test]
fn if0_holds_the_request_and_if1_takes_it_at_run_entry() {
    let (code, _) = asm(CODE, |a| {
        a.inc(ax)?;
        a.inc(ax)?;
        a.hlt()?;
        a.inc(ax)?;
        a.hlt()?;
        Ok(vec![])
    });
    let mut g = Guest::new(JitMode::Off, &code, &handler(), 0x2);
    assert!(g.m.raise_interrupt(VECTOR));
    assert_eq!(g.go(), StopReason::Halted);
    assert_eq!(g.state().gpr[7], 0, "IF=0: not delivered");
    assert!(g.m.interrupt_pending(), "the request still waits");
    // IF=1 now: taken before the next instruction, returning to it.
    let mut st = g.state();
    st.eflags |= IF;
    g.be.set_state(&st).expect("state");
    assert_eq!(g.go(), StopReason::Halted);
    let st = g.state();
    assert_eq!((st.gpr[7], st.gpr[3], st.gpr[0]), (1, 2, 3), "delivered once, at AX = 2");
    assert!(!g.m.interrupt_pending());
    assert_eq!(g.frame(), (CODE + 3, 0, 0x202), "pushed IP, CS, FLAGS");
    assert_eq!(st.gpr[4], STACK_TOP as u32, "IRET popped the frame");
    assert_ne!(st.eflags & IF, 0, "IRET restored IF");
}

#[test]
fn sti_shadow_delays_delivery_by_one_instruction() {
    let (code, l) = asm(CODE, |a| {
        let mut second = a.create_label();
        a.sti()?;
        a.inc(ax)?;
        a.set_label(&mut second)?;
        a.inc(ax)?;
        a.inc(ax)?;
        a.cli()?;
        a.hlt()?;
        Ok(vec![second])
    });
    for mode in [JitMode::Off, JitMode::Eager] {
        let mut g = Guest::new(mode, &code, &handler(), 0x2);
        g.m.raise_interrupt(VECTOR);
        assert_eq!(g.go(), StopReason::Halted);
        let st = g.state();
        assert_eq!((st.gpr[7], st.gpr[3], st.gpr[0]), (1, 1, 3), "taken after the first INC");
        assert_eq!(g.frame(), (l[0], 0, 0x202));
    }
}

#[test]
fn mov_ss_shadow_holds_across_a_run_boundary() {
    let (code, l) = asm(CODE, |a| {
        let mut second = a.create_label();
        a.mov(ss, ax)?;
        a.inc(ax)?;
        a.set_label(&mut second)?;
        a.inc(ax)?;
        a.cli()?;
        a.hlt()?;
        Ok(vec![second])
    });
    let mut g = Guest::new(JitMode::Off, &code, &handler(), 0x202);
    assert_eq!(g.be.step(&mut g.m).expect("step"), StopReason::StepDone);
    g.m.raise_interrupt(VECTOR);
    assert_eq!(g.go(), StopReason::Halted);
    let st = g.state();
    assert_eq!((st.gpr[7], st.gpr[3]), (1, 1), "taken after the instruction following MOV SS");
    assert_eq!(g.frame().0, l[0]);
}

#[test]
fn popf_that_sets_if_opens_the_window_at_once() {
    let (code, l) = asm(CODE, |a| {
        let mut after = a.create_label();
        a.push(0x0202u32)?;
        a.popf()?;
        a.set_label(&mut after)?;
        a.inc(ax)?;
        a.cli()?;
        a.hlt()?;
        Ok(vec![after])
    });
    let mut g = Guest::new(JitMode::Off, &code, &handler(), 0x2);
    g.m.raise_interrupt(VECTOR);
    assert_eq!(g.go(), StopReason::Halted);
    let st = g.state();
    assert_eq!((st.gpr[7], st.gpr[3], st.gpr[0]), (1, 0, 1), "taken right after POPF");
    assert_eq!(g.frame().0, l[0]);
}

#[test]
fn hlt_with_if1_wakes_only_for_a_request() {
    let (code, l) = asm(CODE, |a| {
        let mut after = a.create_label();
        a.sti()?;
        a.hlt()?;
        a.set_label(&mut after)?;
        a.inc(cx)?;
        a.sti()?;
        a.hlt()?;
        a.inc(cx)?;
        a.cli()?;
        a.hlt()?;
        Ok(vec![after])
    });
    let mut g = Guest::new(JitMode::Off, &code, &handler(), 0x2);
    // Nothing can wake it: the run stops Halted after the HLT.
    assert_eq!(g.go(), StopReason::Halted);
    assert_eq!((g.state().eip, g.state().gpr[7]), (l[0] as u32, 0));
    // A request: taken at entry (IF=1), the handler returns after that HLT.
    g.m.raise_interrupt(VECTOR);
    assert_eq!(g.go(), StopReason::Halted);
    let st = g.state();
    assert_eq!((st.gpr[7], st.gpr[1]), (1, 1));
    assert_eq!(g.frame().0, l[0]);
    // Two requests: both taken at entry (the first handler's IRET sets IF again), then
    // the program runs to its end.
    g.m.raise_interrupt(VECTOR);
    g.m.raise_interrupt(VECTOR);
    assert_eq!(g.go(), StopReason::Halted);
    let st = g.state();
    assert_eq!((st.gpr[7], st.gpr[1]), (3, 2), "both requests taken, the program finished");
}

#[test]
fn sti_hlt_wakes_and_returns_after_the_hlt() {
    let (code, l) = asm(CODE, |a| {
        let mut after = a.create_label();
        a.sti()?;
        a.hlt()?;
        a.set_label(&mut after)?;
        a.inc(cx)?;
        a.cli()?;
        a.hlt()?;
        Ok(vec![after])
    });
    for mode in [JitMode::Off, JitMode::Eager] {
        let mut g = Guest::new(mode, &code, &handler(), 0x2);
        g.m.raise_interrupt(VECTOR);
        assert_eq!(g.go(), StopReason::Halted);
        let st = g.state();
        assert_eq!((st.gpr[7], st.gpr[1]), (1, 1), "HLT in the STI shadow woke for the request");
        assert_eq!(g.frame(), (l[0], 0, 0x202), "pushed IP is the instruction after HLT");
        assert_eq!(g.instructions(), 2 + 3 + 3, "sti, hlt; handler; inc, cli, hlt");
    }
}

#[test]
fn a_single_step_delivers_then_runs_the_handlers_first_instruction() {
    let (code, _) = asm(CODE, |a| {
        a.inc(ax)?;
        a.hlt()?;
        Ok(vec![])
    });
    let mut g = Guest::new(JitMode::Off, &code, &handler(), 0x202);
    g.m.raise_interrupt(VECTOR);
    assert_eq!(g.be.step(&mut g.m).expect("step"), StopReason::StepDone);
    let st = g.state();
    assert_eq!(st.eip, HANDLER as u32 + 2, "delivered, then `mov bx, ax` ran");
    assert_eq!(st.eflags & IF, 0);
    assert_eq!(g.instructions(), 1);
}

/// A loop with port I/O (an OUT to the POST port per pass) and a REP.
fn busy_program() -> Vec<u8> {
    asm(CODE, |a| {
        let mut top = a.create_label();
        a.mov(cx, 300u32)?;
        a.set_label(&mut top)?;
        a.add(ax, cx)?;
        a.out(0x80, al)?;
        a.xor(bx, ax)?;
        a.dec(cx)?;
        a.jnz(top)?;
        a.mov(cx, 100u32)?;
        a.rep().lodsb()?;
        a.hlt()?;
        Ok(vec![])
    })
    .0
}

#[test]
fn virtual_time_is_the_instruction_count_whatever_the_tier_and_chunks() {
    let mut results = Vec::new();
    for mode in [JitMode::Off, JitMode::Hot, JitMode::Eager] {
        for chunk in [None, Some(1), Some(13)] {
            let mut g = Guest::new(mode, &busy_program(), &[], 0x2);
            loop {
                let limits = chunk.map_or(RunLimits::instructions(1_000_000), RunLimits::instructions);
                match g.run(limits) {
                    StopReason::Halted => break,
                    StopReason::BudgetExhausted | StopReason::StepDone => {
                        assert_eq!(g.m.clock().now_ns(), g.instructions() * 10, "exact at every stop");
                    }
                    s => panic!("unexpected stop {s:?}"),
                }
            }
            let n = g.instructions();
            assert_eq!(g.m.clock().now_ns(), n * 10, "{mode:?} {chunk:?}");
            results.push((n, g.state(), g.m.bus().post_code()));
        }
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "same count and state everywhere");
    assert_eq!(results[0].0, 1 + 300 * 5 + 1 + 100 + 1);
}
