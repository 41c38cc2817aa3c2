//! Free runs with many exits: after 64 exits the backend stops KVM's per-exit copy of the
//! special registers and fetches them once when the run ends. The state a long run leaves
//! (segments changed after the switch, CS from a far jump), an emulation failure after the
//! switch, and single steps after such a run must all be exact.
mod common;

use std::time::Duration;

use iced_x86::code_asm::{al, ax, cx, ds, es, CodeAssembler};
use picoqemu_core::{Backend, CpuState, Gpr, RunLimits, SegReg, StopReason};
use picoqemu_kvm::StepEvent;

/// `mov cx, n / l: out 0x80, al / loop l`: n port-I/O exits.
fn outs(a: &mut CodeAssembler, n: u32) {
    let mut l = a.create_label();
    a.mov(cx, n).unwrap();
    a.set_label(&mut l).unwrap();
    a.out(0x80, al).unwrap();
    a.loop_(l).unwrap();
}

/// At 0000:7C00: 100 OUTs, then `jmp 1234:0010`. At 1234:0010: `mov ax, 0x2000 / mov ds, ax /
/// mov es, ax`, 100 more OUTs, then `last` (bytes), then `hlt`.
fn load_guest(m: &mut picoqemu_core::Machine, last: &[u8]) {
    let first = common::assemble(0x7C00, |a| {
        outs(a, 100);
        a.db(&[0xEA, 0x10, 0x00, 0x34, 0x12]).unwrap(); // jmp 1234:0010
    });
    let mut second = common::assemble(0x10, |a| {
        a.mov(ax, 0x2000u32).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(es, ax).unwrap();
        outs(a, 100);
    });
    second.extend_from_slice(last);
    second.push(0xF4); // hlt
    m.ram_mut().write(0x7C00, &first).unwrap();
    m.ram_mut().write(0x12340 + 0x10, &second).unwrap();
}

#[test]
fn state_after_a_long_free_run_is_exact() {
    if !common::kvm_available("state_after_a_long_free_run_is_exact") {
        return;
    }
    let (mut m, mut b, start) = common::setup(&[0xF4]);
    load_guest(&mut m, &[]);
    b.set_state(&start).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(20))).expect("run"), StopReason::Halted);
    assert_eq!(b.kvm_stats().pio_exits, 200);
    let s = b.state().unwrap();
    assert_eq!((s.seg(SegReg::Cs).selector, s.seg(SegReg::Cs).base), (0x1234, 0x12340));
    assert_eq!((s.seg(SegReg::Ds).selector, s.seg(SegReg::Ds).base), (0x2000, 0x20000));
    assert_eq!(s.seg(SegReg::Es).selector, 0x2000);
    assert_eq!(s.seg(SegReg::Ss).selector, 0, "SS untouched");
    let halt_ip = s.eip;
    assert_eq!(m.ram_mut().bytes()[0x12340 + halt_ip as usize - 1], 0xF4, "IP is just past the HLT");

    // Single steps right after the long run (switching single step on parks RIP using the
    // CS base KVM holds): a new program at 0000:7C00 steps normally.
    let mut s2 = CpuState { eip: 0x7C00, ..Default::default() };
    s2.set_reg(Gpr::Esp, 0x7000);
    m.ram_mut().write(0x7C00, &[0x40, 0x40, 0xF4]).unwrap(); // inc ax / inc ax / hlt
    b.set_state(&s2).unwrap();
    assert_eq!(b.step(&mut m, None), StepEvent::Retired);
    assert_eq!(b.step(&mut m, None), StepEvent::Retired);
    assert_eq!(b.step(&mut m, None), StepEvent::Halted);
    let s = b.state().unwrap();
    assert_eq!((s.seg(SegReg::Cs).selector, s.eip, s.reg(Gpr::Eax) & 0xFFFF), (0, 0x7C03, 2));
    b.end_steps().unwrap();

    // And a second long free run on the same VM.
    load_guest(&mut m, &[]);
    b.set_state(&start).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(20))).expect("run"), StopReason::Halted);
    assert_eq!(b.state().unwrap().seg(SegReg::Cs).selector, 0x1234);
}

#[test]
fn emulation_failure_after_a_long_run_names_the_right_cs_ip() {
    if !common::kvm_available("emulation_failure_after_a_long_run_names_the_right_cs_ip") {
        return;
    }
    let (mut m, mut b, start) = common::setup(&[0xF4]);
    load_guest(&mut m, &[0x27]); // daa: KVM's emulator lacks it
    b.set_state(&start).unwrap();
    match b.run(&mut m, RunLimits::timeout(Duration::from_secs(20))).expect("run") {
        StopReason::EmulationFailure { cs, ip, .. } => {
            let daa_ip = b.state().unwrap().eip;
            assert_eq!(cs, 0x1234);
            assert_eq!(ip, daa_ip);
            assert_eq!(m.ram_mut().bytes()[0x12340 + ip as usize], 0x27);
        }
        other => panic!("expected an emulation failure, got {other:?}"),
    }
}

#[test]
fn a_debug_exit_after_a_long_run_leaves_exact_state() {
    if !common::kvm_available("a_debug_exit_after_a_long_run_leaves_exact_state") {
        return;
    }
    let (mut m, mut b, start) = common::setup(&[0xF4]);
    load_guest(&mut m, &[0xB0, 0x07, 0xE6, 0xF4]); // mov al, 7 / out 0xF4, al
    b.set_state(&start).unwrap();
    assert_eq!(
        b.run(&mut m, RunLimits::timeout(Duration::from_secs(20))).expect("run"),
        StopReason::DebugExit(7)
    );
    let s = b.state().unwrap();
    assert_eq!((s.seg(SegReg::Cs).selector, s.seg(SegReg::Ds).selector), (0x1234, 0x2000));
    assert_eq!(m.ram_mut().bytes()[0x12340 + s.eip as usize], 0xF4, "IP is on the HLT after the OUT");
}
