//! Control of a KVM run from outside: kicks (another thread, or before the run), execution
//! breakpoints (debug registers, stop before the instruction), external interrupts injected
//! with `KVM_INTERRUPT` (directly, through an interrupt window, and not at all with IF=0),
//! and the hang check that stops a free run spinning on `vmcall` without any timeout.
mod common;

use std::time::Duration;

use iced_x86::code_asm::{ax, word_ptr};
use picoqemu_core::{Backend, Breakpoint, BreakpointKind, Gpr, Machine, RunLimits, StepInfo, StopReason};
use picoqemu_kvm::KvmBackend;

const SAFETY: Duration = Duration::from_secs(60);

#[test]
fn a_kick_before_the_run_interrupts_the_next_run_once() {
    if !common::kvm_available("a_kick_before_the_run_interrupts_the_next_run_once") {
        return;
    }
    let (mut m, mut b, _) = common::setup(&[0x40, 0x40, 0xF4]); // inc ax, inc ax, hlt
    let kick = b.kicker().expect("kicker");
    kick.kick();
    assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Interrupted);
    assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted, "one kick, one run");
    assert_eq!(b.state().unwrap().reg(Gpr::Eax) & 0xFFFF, 2);
}

#[test]
fn a_kick_from_another_thread_stops_a_spinning_guest() {
    if !common::kvm_available("a_kick_from_another_thread_stops_a_spinning_guest") {
        return;
    }
    let (mut m, mut b, _) = common::setup(&[0xEB, 0xFE]); // jmp $
    let kick = b.kicker().expect("kicker");
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        kick.kick();
    });
    // Without the kick the run would end at the safety timeout, failing the test.
    assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Interrupted);
    t.join().unwrap();
    assert_eq!(b.state().unwrap().eip, 0x7C00);
}

#[test]
fn vmcall_without_a_timeout_stops_as_an_instruction_kvm_cannot_run() {
    if !common::kvm_available("vmcall_without_a_timeout_stops_as_an_instruction_kvm_cannot_run") {
        return;
    }
    let (mut m, mut b, _) = common::setup(&[0x0F, 0x01, 0xC1, 0xF4]); // vmcall, hlt
                                                                      // Safety net only: if the hang check failed, the kick ends the run and the test fails.
    let kick = b.kicker().expect("kicker");
    let t = std::thread::spawn(move || {
        std::thread::sleep(SAFETY);
        kick.kick();
    });
    let r = b.run(&mut m, RunLimits::UNBOUNDED).unwrap();
    match r {
        StopReason::EmulationFailure { cs, ip, bytes } => {
            assert_eq!((cs, ip), (0, 0x7C00));
            assert_eq!(bytes.as_slice(), &[0x0F, 0x01, 0xC1]);
        }
        // Where KVM completes vmcall (#UD through the zeroed IVT, or a host that runs it).
        other => assert!(!matches!(other, StopReason::Interrupted), "the hang check missed: {other:?}"),
    }
    drop(t); // detached: it kicks a backend that no longer runs
}

/// `inc ax` x3 then `hlt` at 0x7C00; breakpoint at the third `inc`.
fn bp_guest() -> (Machine, KvmBackend) {
    let (m, b, _) = common::setup(&[0x40, 0x40, 0x40, 0xF4]);
    (m, b)
}

#[test]
fn breakpoints_stop_before_the_instruction_and_resume() {
    if !common::kvm_available("breakpoints_stop_before_the_instruction_and_resume") {
        return;
    }
    for kind in [BreakpointKind::Hardware, BreakpointKind::Software] {
        let (mut m, mut b) = bp_guest();
        b.set_breakpoints(&[Breakpoint { linear: 0x7C02, kind }]).unwrap();
        let r = b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap();
        assert_eq!(r, StopReason::Breakpoint { cs: 0, ip: 0x7C02 }, "{kind:?}");
        assert_eq!(b.state().unwrap().reg(Gpr::Eax) & 0xFFFF, 2, "the instruction has not run");
        assert_eq!(m.ram().read_u8(0x7C02).unwrap(), 0x40, "no INT3 byte in guest memory");
        // Resuming from the breakpoint executes it.
        assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted);
        assert_eq!(b.state().unwrap().reg(Gpr::Eax) & 0xFFFF, 3);

        // A budgeted (single-step) run stops there too.
        let (mut m, mut b) = bp_guest();
        b.set_breakpoints(&[Breakpoint { linear: 0x7C02, kind }]).unwrap();
        let r = b.run(&mut m, RunLimits::instructions(10)).unwrap();
        assert_eq!(r, StopReason::Breakpoint { cs: 0, ip: 0x7C02 });
        assert_eq!(b.run(&mut m, RunLimits::instructions(10)).unwrap(), StopReason::Halted);
        // Cleared: no stop.
        let (mut m, mut b) = bp_guest();
        b.set_breakpoints(&[Breakpoint { linear: 0x7C02, kind }]).unwrap();
        b.set_breakpoints(&[]).unwrap();
        assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted);
    }
}

#[test]
fn more_than_four_breakpoints_are_refused_and_the_old_set_kept() {
    if !common::kvm_available("more_than_four_breakpoints_are_refused_and_the_old_set_kept") {
        return;
    }
    let (mut m, mut b) = bp_guest();
    let bp = |linear| Breakpoint { linear, kind: BreakpointKind::Software };
    b.set_breakpoints(&[bp(0x7C01)]).unwrap();
    let five: Vec<_> = (0..5).map(|i| bp(0x7000 + i)).collect();
    let e = b.set_breakpoints(&five).unwrap_err().to_string();
    assert!(e.contains("at most 4"), "{e}");
    // Duplicates count once.
    b.set_breakpoints(&[bp(0x7C01), bp(0x7C01), bp(0x7C01), bp(0x7C01), bp(0x7C01)]).unwrap();
    assert_eq!(
        b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(),
        StopReason::Breakpoint { cs: 0, ip: 0x7C01 }
    );
}

/// IVT[0x20] -> 0000:0600 (`inc word [0x500] / iret`); code at 0x7C00 from `body`, then
/// `l: hlt / jmp l`.
fn irq_machine(body: &[u8]) -> (Machine, KvmBackend) {
    let (mut m, b, _) = common::setup(&[]);
    let handler = common::assemble(0x600, |a| {
        a.inc(word_ptr(0x500)).unwrap();
        a.iret().unwrap();
    });
    m.ram_mut().write(0x600, &handler).unwrap();
    m.ram_mut().write(0x20 * 4, &[0x00, 0x06, 0x00, 0x00]).unwrap();
    let mut code = body.to_vec();
    code.extend_from_slice(&[0xF4, 0xEB, 0xFD]); // l: hlt / jmp l
    m.ram_mut().write(0x7C00, &code).unwrap();
    (m, b)
}

fn counter(m: &Machine) -> u16 {
    let r = m.ram().read_vec(0x500, 2).unwrap();
    u16::from_le_bytes([r[0], r[1]])
}

#[test]
fn interrupts_are_injected_and_wake_a_halted_guest() {
    if !common::kvm_available("interrupts_are_injected_and_wake_a_halted_guest") {
        return;
    }
    let (mut m, mut b) = irq_machine(&[0xFB]); // sti
    assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted, "nothing can wake it");
    assert_eq!(counter(&m), 0);
    for n in 1..=3 {
        assert!(m.raise_interrupt(0x20));
        assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted);
        assert_eq!(counter(&m), n);
        assert!(!m.interrupt_pending());
        let s = b.state().unwrap();
        assert_eq!(
            (s.eip, s.reg(Gpr::Esp)),
            (0x7C02, 0x7000),
            "back on the hlt after the jmp, stack balanced"
        );
    }
    // Two at once: both delivered in one run.
    assert!(m.raise_interrupt(0x20) && m.raise_interrupt(0x20));
    assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted);
    assert_eq!(counter(&m), 5);
    assert!(b.kvm_stats().interrupts >= 5);
}

#[test]
fn a_request_waits_for_the_interrupt_window() {
    if !common::kvm_available("a_request_waits_for_the_interrupt_window") {
        return;
    }
    // cli / mov ax, [0x500] / out 0x80, al / mov [0x502], ax / sti / 5000 x loop $ /
    // mov ax, [0x500] / mov [0x504], ax / hlt: the request waits while IF=0 ([0x502] = 0)
    // and is taken through an interrupt-window exit while the loop runs ([0x504] = 1), not
    // at the HLT. (PVM emulates real mode in batches of up to 1,024 instructions and opens
    // the window only between batches; VMX/SVM right after STI's shadow.)
    let body = common::assemble(0x7C00, |a| {
        let mut l = a.create_label();
        a.cli().unwrap();
        a.mov(ax, word_ptr(0x500)).unwrap();
        a.out(0x80, iced_x86::code_asm::al).unwrap();
        a.mov(word_ptr(0x502), ax).unwrap();
        a.sti().unwrap();
        a.mov(iced_x86::code_asm::cx, 5000u32).unwrap();
        a.set_label(&mut l).unwrap();
        a.loop_(l).unwrap();
        a.mov(ax, word_ptr(0x500)).unwrap();
        a.mov(word_ptr(0x504), ax).unwrap();
    });
    let (mut m, mut b) = irq_machine(&body);
    assert!(m.raise_interrupt(0x20));
    assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted);
    assert_eq!(counter(&m), 1);
    assert_eq!(m.ram().read_vec(0x502, 2).unwrap(), [0, 0], "not delivered while IF=0");
    assert_eq!(m.ram().read_vec(0x504, 2).unwrap(), [1, 0], "delivered at the window, before the HLT");
    assert!(b.kvm_stats().irq_window_exits >= 1);
}

#[test]
fn hlt_with_interrupts_off_leaves_the_request_pending() {
    if !common::kvm_available("hlt_with_interrupts_off_leaves_the_request_pending") {
        return;
    }
    let (mut m, mut b) = irq_machine(&[0xFA]); // cli
    assert!(m.raise_interrupt(0x20));
    assert_eq!(b.run(&mut m, RunLimits::timeout(SAFETY)).unwrap(), StopReason::Halted);
    assert_eq!(counter(&m), 0);
    assert!(m.interrupt_pending(), "not acknowledged");
    // The window that run asked for does not disturb later single steps (which do not
    // inject): `sti / inc ax / inc ax` in a budget of 3 with the request still pending.
    m.ram_mut().write(0x7C00, &[0xFB, 0x40, 0x40, 0xF4]).unwrap();
    let mut s = picoqemu_core::CpuState { eip: 0x7C00, ..Default::default() };
    s.set_reg(Gpr::Esp, 0x7000);
    b.set_state(&s).unwrap();
    let limits = RunLimits { max_instructions: Some(3), timeout: Some(SAFETY) };
    assert_eq!(b.run(&mut m, limits).unwrap(), StopReason::BudgetExhausted);
    assert_eq!(b.state().unwrap().eip, 0x7C03);
}

#[test]
fn step_reports_its_kind_through_the_trait() {
    if !common::kvm_available("step_reports_its_kind_through_the_trait") {
        return;
    }
    // out 0x80, al / inc ax / hlt
    let (mut m, mut b, _) = common::setup(&[0xE6, 0x80, 0x40, 0xF4]);
    assert_eq!(b.step(&mut m).unwrap(), StopReason::StepDone);
    assert_eq!(b.last_step(), StepInfo::Io);
    assert_eq!(b.step(&mut m).unwrap(), StopReason::StepDone);
    assert_eq!(b.last_step(), StepInfo::Instruction);
    assert_eq!(b.step(&mut m).unwrap(), StopReason::Halted);
    assert_eq!(b.state().unwrap().eip, 0x7C04);
    b.reset(&mut m).unwrap();
    assert_eq!(b.state().unwrap(), picoqemu_core::CpuState::default());
}
