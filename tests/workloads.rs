//! The compiled-C workloads (`benches/workloads/`, issue 12) pass their own checks on the
//! interpreter in every compiled-tier mode and (their quick variants) on KVM, and both CPUs
//! end in the same state and RAM.
use std::time::Duration;

use picoqemu::workloads::{self, Size};
use picoqemu_core::{
    load_image, Backend, CpuState, ImageKind, IoBus, Machine, MachineConfig, RunLimits, StopReason,
};
use picoqemu_interp::{InterpBackend, JitMode};

mod common;

fn image(name: &str, size: Size) -> Vec<u8> {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("workloads");
    workloads::build(name, size, &dir).unwrap_or_else(|e| panic!("{e}"))
}

fn run(name: &str, cpu: &mut dyn Backend, machine: &mut Machine, start: &CpuState) -> CpuState {
    cpu.set_state(start).unwrap();
    // A time limit, not an instruction budget: KVM would single-step a budgeted run.
    let stop = cpu.run(machine, RunLimits::timeout(Duration::from_secs(120))).unwrap();
    let state = cpu.state().unwrap();
    assert_eq!(stop, StopReason::DebugExit(0), "{name} on {}: a self-check failed\n{state}", cpu.name());
    state
}

fn fresh(image: &[u8]) -> (Machine, CpuState) {
    let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
    let start = load_image(&mut machine, image, ImageKind::Raw).unwrap();
    (machine, start)
}

#[test]
fn every_workload_passes_on_the_interpreter_in_every_tier() {
    for name in workloads::NAMES {
        let img = image(name, Size::Full);
        let mut states = Vec::new();
        for jit in [JitMode::Off, JitMode::Hot, JitMode::Eager] {
            let (mut machine, start) = fresh(&img);
            let mut cpu = InterpBackend::new().with_jit(jit);
            states.push(run(name, &mut cpu, &mut machine, &start));
        }
        assert!(states.windows(2).all(|w| w[0] == w[1]), "{name}: the tiers end in different states");
    }
}

#[test]
fn every_workload_passes_on_kvm_like_on_the_interpreter() {
    if !common::kvm_usable("every_workload_passes_on_kvm_like_on_the_interpreter") {
        return;
    }
    // The quick variant: KVM's instruction emulator runs about 1.6 million instructions/s here.
    for name in workloads::NAMES {
        let img = image(name, Size::Small);
        let (mut m1, start) = fresh(&img);
        let interp = run(name, &mut InterpBackend::new(), &mut m1, &start);
        let (mut m2, start) = fresh(&img);
        let mut kvm = picoqemu_kvm::KvmBackend::new(&m2).unwrap();
        let on_kvm = run(name, &mut kvm, &mut m2, &start);
        assert_eq!(interp.diff(&on_kvm), vec![], "{name}: final state differs");
        assert!(m1.ram().content_eq(m2.ram()), "{name}: RAM differs");
    }
}

#[test]
fn an_unknown_workload_is_a_clear_error() {
    let e =
        workloads::build("nope", Size::Full, std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap_err();
    assert!(e.to_string().contains("no workload named \"nope\""), "{e}");
}
