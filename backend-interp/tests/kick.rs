//! The interpreter's kick handle: a kick from another thread stops an endless loop at an
//! instruction boundary with consistent state, whether the loop is interpreted or compiled;
//! a kick while no run is active interrupts the next run only.
mod common;

use std::sync::{Arc, Barrier};

use common::*;
use iced_x86::code_asm::*;
use picoqemu_core::{Backend, RunLimits, StopReason};
use picoqemu_interp::JitMode;

/// `top: inc eax; jmp top`.
fn endless() -> Vec<u8> {
    asm(CODE, |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.inc(eax)?;
        a.jmp(top)?;
        Ok(vec![])
    })
    .0
}

#[test]
fn a_kick_from_another_thread_stops_an_endless_loop() {
    for mode in [JitMode::Off, JitMode::Hot] {
        let mut g = Guest::new(mode, &endless(), &[], 0x2);
        let kick = g.be.kicker().expect("the interpreter can be kicked");
        let ready = Arc::new(Barrier::new(2));
        let t = {
            let ready = ready.clone();
            std::thread::spawn(move || {
                ready.wait();
                kick.kick();
            })
        };
        ready.wait();
        // The budget only turns a broken kick into a failure instead of a hang.
        let stop = g.run(RunLimits::instructions(4_000_000_000));
        t.join().expect("kicker thread");
        assert_eq!(stop, StopReason::Interrupted, "{mode:?}");
        // At an instruction boundary: EAX counts the INCs retired.
        let n = g.instructions();
        let st = g.state();
        assert_eq!(st.gpr[0] as u64, n.div_ceil(2), "{mode:?}: {n} instructions");
        let at = if n.is_multiple_of(2) { CODE } else { CODE + 2 };
        assert_eq!(st.eip, at as u32, "{mode:?}: {n} instructions");
        // One kick interrupts one run.
        assert_eq!(g.run(RunLimits::instructions(1000)), StopReason::BudgetExhausted);
        assert_eq!(g.instructions(), n + 1000);
    }
}

#[test]
fn a_kick_between_runs_interrupts_the_next_run_only() {
    let mut g = Guest::new(JitMode::Off, &endless(), &[], 0x2);
    let kick = g.be.kicker().expect("kicker");
    kick.kick();
    kick.kick();
    assert_eq!(g.run(RunLimits::instructions(10)), StopReason::Interrupted);
    assert_eq!(g.instructions(), 0, "nothing ran");
    assert_eq!(g.state().eip, CODE as u32);
    assert_eq!(g.run(RunLimits::instructions(10)), StopReason::BudgetExhausted);
    assert_eq!(g.instructions(), 10);
}
