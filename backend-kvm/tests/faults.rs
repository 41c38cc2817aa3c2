//! Guests that KVM cannot finish normally: an endless loop and `vmcall` (bounded by the
//! watchdog), an instruction KVM's emulator lacks (`daa`), and a triple fault.
mod common;

use std::time::Duration;

use iced_x86::code_asm::{al, cr0, eax, word_ptr};
use picoqemu_core::{Backend, CpuState, Gpr, RunLimits, StopReason};

#[test]
fn endless_loop_times_out_and_vm_is_reusable() {
    if !common::kvm_available("endless_loop_times_out_and_vm_is_reusable") {
        return;
    }
    // jmp $
    let (mut m, mut b, _) = common::setup(&[0xEB, 0xFE]);
    let r = b.run(&mut m, RunLimits::timeout(Duration::from_secs(1))).expect("run");
    assert_eq!(r, StopReason::Timeout);
    assert_eq!(b.state().unwrap().eip, 0x7C00);
    // The same VM runs the next program: hlt at 0x7C10.
    m.ram_mut().write(0x7C10, &[0xF4]).unwrap();
    let s = CpuState { eip: 0x7C10, ..Default::default() };
    b.set_state(&s).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"), StopReason::Halted);
    assert_eq!(b.state().unwrap().eip, 0x7C11);
    // And a run without any limit after a timed one is not hit by a stale watchdog.
    b.set_state(&s).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::UNBOUNDED).expect("run"), StopReason::Halted);
}

#[test]
fn vmcall_is_bounded_by_the_watchdog() {
    if !common::kvm_available("vmcall_is_bounded_by_the_watchdog") {
        return;
    }
    // vmcall ; hlt
    let (mut m, mut b, _) = common::setup(&[0x0F, 0x01, 0xC1, 0xF4]);
    let r = b.run(&mut m, RunLimits::timeout(Duration::from_secs(1))).expect("run");
    match r {
        StopReason::Timeout => {}
        StopReason::EmulationFailure { cs, ip, bytes } => {
            assert_eq!((cs, ip, bytes.as_slice()), (0, 0x7C00, &[0x0F, 0x01, 0xC1][..]))
        }
        other => panic!("vmcall ended with {other}"),
    }
}

#[test]
fn daa_is_an_emulation_failure_naming_the_instruction() {
    if !common::kvm_available("daa_is_an_emulation_failure_naming_the_instruction") {
        return;
    }
    let code = common::assemble(0x7C00, |a| {
        a.mov(al, 0x15).unwrap();
        a.add(al, 0x27).unwrap();
        a.daa().unwrap();
        a.hlt().unwrap();
    });
    let (_m, mut b, r) = common::run_code(&code);
    match r {
        StopReason::EmulationFailure { cs, ip, bytes } => {
            assert_eq!((cs, ip), (0, 0x7C04));
            assert_eq!(bytes.as_slice(), &[0x27]);
            assert_eq!(b.state().unwrap().reg(Gpr::Eax) & 0xFF, 0x3C, "the instructions before ran");
        }
        // On VMX/SVM hosts real mode runs natively and DAA just works.
        StopReason::Halted => eprintln!("note: this host's KVM executes DAA"),
        other => panic!("unexpected stop {other}"),
    }
}

#[test]
fn triple_fault_is_reported() {
    if !common::kvm_available("triple_fault_is_reported") {
        return;
    }
    // Protected mode with an empty IDT: the #UD of ud2 cannot be delivered (#GP), nor can
    // that (#DF), so the CPU shuts down.
    //   lidt [0x7E00]        ; limit 0, base 0
    //   lgdt [0x7E08]        ; a GDT with a flat code segment at selector 8
    //   mov eax, cr0 ; or al, 1 ; mov cr0, eax
    //   jmp 8:pm
    // pm: ud2
    let code = common::assemble(0x7C00, |a| {
        let mut pm = a.create_label();
        a.lidt(word_ptr(0x7E00)).unwrap();
        a.lgdt(word_ptr(0x7E08)).unwrap();
        a.mov(eax, cr0).unwrap();
        a.or(al, 1).unwrap();
        a.mov(cr0, eax).unwrap();
        a.jmp(pm).unwrap();
        a.set_label(&mut pm).unwrap();
        a.ud2().unwrap();
    });
    let (mut m, mut b, _) = common::setup(&code);
    // IDTR image: limit 0, base 0. GDTR image at 0x7E08: limit 0x17, base 0x7E10.
    m.ram_mut().write(0x7E00, &[0, 0, 0, 0, 0, 0]).unwrap();
    m.ram_mut().write(0x7E08, &[0x17, 0, 0x10, 0x7E, 0, 0]).unwrap();
    // Null descriptor; code: base 0, limit 0xFFFF, present, code exec/read, 16-bit.
    m.ram_mut().write(0x7E10, &[0; 8]).unwrap();
    m.ram_mut().write(0x7E18, &[0xFF, 0xFF, 0, 0, 0, 0x9A, 0, 0]).unwrap();
    let r = b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run");
    assert_eq!(r, StopReason::TripleFault, "state:\n{}", b.state().unwrap());
    // The VM is reusable after a shutdown.
    b.reset(&mut m).unwrap();
    m.ram_mut().write(0x7C00, &[0x40, 0xF4]).unwrap(); // inc ax ; hlt
    b.set_state(&CpuState { eip: 0x7C00, ..Default::default() }).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"), StopReason::Halted);
    assert_eq!(b.state().unwrap().reg(Gpr::Eax), 1);
}

#[test]
fn vm_is_reusable_after_guest_faults() {
    if !common::kvm_available("vm_is_reusable_after_guest_faults") {
        return;
    }
    // daa at 0x7C00 (emulation failure on PVM), then the same VM runs `inc ax ; hlt`.
    let (mut m, mut b, start) = common::setup(&[0x27, 0xF4]);
    let first = b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run");
    assert!(matches!(first, StopReason::EmulationFailure { .. } | StopReason::Halted), "{first}");
    for _ in 0..2 {
        b.reset(&mut m).unwrap();
        m.ram_mut().write(0x7C00, &[0x40, 0xF4]).unwrap();
        b.set_state(&start).unwrap();
        assert_eq!(
            b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"),
            StopReason::Halted
        );
        let s = b.state().unwrap();
        assert_eq!((s.eip, s.reg(Gpr::Eax)), (0x7C02, 1));
        m.ram_mut().write(0x7C00, &[0x27, 0xF4]).unwrap();
        b.set_state(&start).unwrap();
        let again = b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run");
        assert_eq!(again, first);
    }
}

#[test]
fn budget_with_timeout_on_an_endless_loop_times_out() {
    if !common::kvm_available("budget_with_timeout_on_an_endless_loop_times_out") {
        return;
    }
    let (mut m, mut b, _) = common::setup(&[0xEB, 0xFE]);
    let limits = RunLimits { max_instructions: Some(u64::MAX), timeout: Some(Duration::from_millis(300)) };
    assert_eq!(b.run(&mut m, limits).expect("run"), StopReason::Timeout);
    assert!(b.kvm_stats().stepped_instructions > 0);
}

#[test]
fn backend_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<picoqemu_kvm::KvmBackend>();
    if !common::kvm_available("backend_can_move_between_threads") {
        return;
    }
    // Created here, run with a timeout there (the watchdog re-targets its signal), and back.
    let (mut m, mut b, start) = common::setup(&[0xEB, 0xFE]);
    assert_eq!(
        b.run(&mut m, RunLimits::timeout(Duration::from_millis(200))).expect("run"),
        StopReason::Timeout
    );
    let mut b = std::thread::spawn(move || {
        let mut b = b;
        let mut m2 = common::machine();
        // A run on another machine is refused before anything happens.
        assert!(b.run(&mut m2, RunLimits::UNBOUNDED).is_err());
        b
    })
    .join()
    .unwrap();
    assert_eq!(
        b.run(&mut m, RunLimits::timeout(Duration::from_millis(200))).expect("run"),
        StopReason::Timeout
    );
    b.set_state(&start).unwrap();
    assert_eq!(
        b.run(&mut m, RunLimits::timeout(Duration::from_millis(200))).expect("run"),
        StopReason::Timeout
    );
}
