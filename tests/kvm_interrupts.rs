//! External interrupts on both CPUs: the same guest (an IVT entry for vector 0x20, `sti`, a
//! `hlt` loop; the handler counts in memory) given the same requests through
//! `Machine::raise_interrupt` ends in the same state and memory on KVM (`KVM_INTERRUPT`) and
//! on the interpreter (delivery at an instruction boundary).
use std::time::Duration;

use picoqemu_core::{Backend, CpuState, Gpr, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::KvmBackend;

mod common;

/// IVT[0x20] -> 0000:0600: `inc word [0x500] / iret`; at 0x7C00: `sti / l: hlt / jmp l`.
fn machine() -> Machine {
    let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
    m.ram_mut().write(0x600, &[0xFF, 0x06, 0x00, 0x05, 0xCF]).unwrap(); // inc word [0x500] / iret
    m.ram_mut().write(0x20 * 4, &[0x00, 0x06, 0x00, 0x00]).unwrap();
    m.ram_mut().write(0x7C00, &[0xFB, 0xF4, 0xEB, 0xFD]).unwrap();
    m
}

/// Runs the guest, then three rounds of "raise one request, run"; the state and the
/// counter after each run.
fn rounds(b: &mut dyn Backend, m: &mut Machine) -> Vec<(StopReason, CpuState, Vec<u8>, bool)> {
    let mut start = CpuState { eip: 0x7C00, ..Default::default() };
    start.set_reg(Gpr::Esp, 0x7000);
    b.set_state(&start).unwrap();
    let mut out = Vec::new();
    for round in 0..4 {
        if round > 0 {
            assert!(m.raise_interrupt(0x20));
        }
        let stop = b.run(m, RunLimits::timeout(Duration::from_secs(20))).expect("run");
        out.push((stop, b.state().unwrap(), m.ram().read_vec(0x500, 2).unwrap(), m.interrupt_pending()));
    }
    out
}

#[test]
fn interrupts_give_the_same_state_on_both_cpus() {
    if !common::kvm_usable("interrupts_give_the_same_state_on_both_cpus") {
        return;
    }
    let mut mk = machine();
    let mut kvm = KvmBackend::new(&mk).expect("kvm");
    let k = rounds(&mut kvm, &mut mk);
    let mut mi = machine();
    let mut interp = InterpBackend::new();
    let i = rounds(&mut interp, &mut mi);
    assert_eq!(k.last().unwrap().2, [3, 0], "KVM delivered all three");
    assert_eq!(k, i);
}
