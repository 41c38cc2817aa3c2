//! Shared helpers of the KVM integration tests: skip-or-fail when KVM is missing, machines,
//! and assembling small 16-bit guests with iced-x86's `CodeAssembler`.
#![allow(dead_code)]

use iced_x86::code_asm::CodeAssembler;
use picoqemu_core::{Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_kvm::KvmBackend;

/// True when KVM is usable. Otherwise prints why and returns false, or panics when
/// `PICOQEMU_REQUIRE_KVM=1`.
pub fn kvm_available(test: &str) -> bool {
    match KvmBackend::probe() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("PICOQEMU_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: KVM is required (PICOQEMU_REQUIRE_KVM=1) but unusable: {e}");
            }
            eprintln!("SKIP: {test}: {e}");
            false
        }
    }
}

pub fn machine() -> Machine {
    Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine")
}

/// Assembles 16-bit code at `origin`.
pub fn assemble(origin: u64, build: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("assembler");
    build(&mut a);
    a.assemble(origin).expect("assemble")
}

/// A machine with `code` at 0000:7C00, SP = 0x7000, and a backend for it.
pub fn setup(code: &[u8]) -> (Machine, KvmBackend, CpuState) {
    let mut m = machine();
    m.ram_mut().write(0x7C00, code).expect("load");
    let mut s = CpuState { eip: 0x7C00, ..Default::default() };

    s.set_reg(picoqemu_core::Gpr::Esp, 0x7000);
    let mut b = KvmBackend::new(&m).expect("kvm backend");
    b.set_state(&s).expect("set_state");
    (m, b, s)
}

/// Runs `code` at 0000:7C00 until it stops (10 s safety timeout).
pub fn run_code(code: &[u8]) -> (Machine, KvmBackend, StopReason) {
    let (mut m, mut b, _) = setup(code);
    let r = b.run(&mut m, RunLimits::timeout(std::time::Duration::from_secs(10))).expect("run");
    (m, b, r)
}
