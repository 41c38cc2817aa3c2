//! CPUID is the same on both backends: KVM gives the guest picoqemu's CPU model (the one the
//! interpreter implements) unless `KvmOptions::host_cpuid` asks for the host's. Also checks
//! what KVM's emulator does with instructions it gates on guest CPUID under the model. KVM
//! tests skip with a printed reason when /dev/kvm is unusable, unless `PICOQEMU_REQUIRE_KVM=1`.
use std::time::Duration;

use iced_x86::code_asm::{eax, ebx, ecx, edx, CodeAssembler};
use picoqemu_core::{Backend, CpuState, Gpr, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::{KvmBackend, KvmOptions};

mod common;
use common::kvm_usable;

/// `mov eax, leaf / xor ebx, ebx / xor ecx, ecx / xor edx, edx / cpuid / hlt` at 0x7C00.
fn cpuid_guest(leaf: u32) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("assembler");
    a.mov(eax, leaf).unwrap();
    a.xor(ebx, ebx).unwrap();
    a.xor(ecx, ecx).unwrap();
    a.xor(edx, edx).unwrap();
    a.cpuid().unwrap();
    a.hlt().unwrap();
    a.assemble(0x7C00).expect("assemble")
}

/// Runs `code` at 0000:7C00 on `b`; returns EAX, EBX, ECX, EDX.
fn run(b: &mut dyn Backend, m: &mut Machine, code: &[u8]) -> [u32; 4] {
    m.ram_mut().write(0x7C00, code).expect("load");
    b.set_state(&CpuState { eip: 0x7C00, ..Default::default() }).expect("set_state");
    assert_eq!(
        b.run(m, RunLimits::timeout(Duration::from_secs(10))).expect("run"),
        StopReason::Halted,
        "{}",
        b.name()
    );
    let s = b.state().expect("state");
    [s.reg(Gpr::Eax), s.reg(Gpr::Ebx), s.reg(Gpr::Ecx), s.reg(Gpr::Edx)]
}

fn machine() -> Machine {
    Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine")
}

#[test]
fn cpuid_leaves_0_and_1_are_the_same_on_both_backends() {
    let mut m = machine();
    let mut interp = InterpBackend::new();
    let leaf0 = run(&mut interp, &mut m, &cpuid_guest(0));
    let vendor: Vec<u8> = [leaf0[1], leaf0[3], leaf0[2]].iter().flat_map(|r| r.to_le_bytes()).collect();
    assert_eq!((leaf0[0], vendor.as_slice()), (1, b"PicoQEMU x86".as_slice()), "the interpreter's model");
    let leaf1 = run(&mut interp, &mut m, &cpuid_guest(1));
    if !kvm_usable("cpuid_leaves_0_and_1_are_the_same_on_both_backends") {
        return;
    }
    let mut kvm = KvmBackend::new(&m).expect("KVM backend");
    assert_eq!(run(&mut kvm, &mut m, &cpuid_guest(0)), leaf0, "leaf 0 on KVM");
    // Every other leaf gives leaf 1's values on both (KVM: leaves above the maximum answer
    // with the highest basic leaf, as on Intel). On our PVM hosts KVM reports the host's
    // feature bits in leaf 1 ECX/EDX whatever the table says (measured), so only EAX/EBX
    // (signature, brand/APIC ID) are compared exactly, and EDX must contain the model's
    // features (TSC, CX8, CMOV).
    for leaf in [1u32, 2, 7, 0x4000_0000, 0x8000_0000, 0x8000_0001] {
        let i = run(&mut interp, &mut m, &cpuid_guest(leaf));
        let k = run(&mut kvm, &mut m, &cpuid_guest(leaf));
        assert_eq!((k[0], k[1]), (i[0], i[1]), "leaf {leaf:#x}: interp {i:08x?}, KVM {k:08x?}");
        assert_eq!(k[3] & leaf1[3], leaf1[3], "leaf {leaf:#x}: KVM EDX {:#x}", k[3]);
    }
    assert_eq!(leaf1[0], picoqemu_core::loader::RESET_EDX, "family 5, model 2, stepping 1");

    // With host_cpuid the guest sees the host's vendor instead (whatever it is, not ours).
    let options = KvmOptions { host_cpuid: true, ..KvmOptions::default() };
    let mut host = KvmBackend::with_options(&m, options).expect("KVM backend");
    let h = run(&mut host, &mut m, &cpuid_guest(0));
    assert_ne!([h[1], h[3], h[2]], [leaf0[1], leaf0[3], leaf0[2]], "host vendor: {h:x?}");
    assert!(h[0] >= 1, "the host has leaf 1: {h:x?}");
}
