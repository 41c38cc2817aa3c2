//! `compute`: the 10-instruction register/memory loop of `picoqemu::guests::compute_loop`
//! for a known dynamic instruction count; criterion's element rate is MIPS (Melem/s).
//! `interp` is the default interpreter (its compiled-block tier runs the loop as host code),
//! `interp-nojit` the interpreter tier alone.
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use picoqemu::guests::{compute_instruction_count, compute_loop};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::baseline::RawConfig;
use picoqemu_kvm::KvmBackend;

use crate::common::{self, boot_machine, kvm_usable, raw_run, raw_vm, run_to_halt};

/// Loop iterations on the interpreter (10 instructions each).
const INTERP_ITERATIONS: u32 = 1_000_000;
/// Loop iterations on KVM (about 1-2 MIPS here: 100k instructions take 50-100 ms).
const KVM_ITERATIONS: u32 = 10_000;

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compute");

    let image = compute_loop(INTERP_ITERATIONS).expect("guest");
    let insns = compute_instruction_count(INTERP_ITERATIONS);
    common::check_interp_count(&image, insns);
    let (mut m, start) = boot_machine(&image);
    let mut interp = InterpBackend::new();
    // One run before measuring, so the check holds even when a filter skips the benchmark.
    run_to_halt(&mut interp, &mut m, &start);
    assert!(
        interp.jit_stats().compiled >= 1 || interp.jit_mode() == JitMode::Off,
        "the loop was not compiled"
    );
    g.throughput(Throughput::Elements(insns));
    g.bench_function("interp", |b| b.iter(|| run_to_halt(black_box(&mut interp), &mut m, &start)));
    // The interpreter tier alone (no compiled code), for the ratio the compiled tier buys.
    let mut plain = InterpBackend::new().with_jit(JitMode::Off);
    g.bench_function("interp-nojit", |b| b.iter(|| run_to_halt(black_box(&mut plain), &mut m, &start)));

    if kvm_usable() {
        let image = compute_loop(KVM_ITERATIONS).expect("guest");
        g.throughput(Throughput::Elements(compute_instruction_count(KVM_ITERATIONS)));
        g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(1));
        let (mut m, start) = boot_machine(&image);
        let mut kvm = KvmBackend::new(&m).expect("KVM backend");
        run_to_halt(&mut kvm, &mut m, &start);
        assert_eq!(kvm.kvm_stats().exits, 1, "the compute loop must take exactly one exit (HLT)");
        g.bench_function("kvm", |b| b.iter(|| run_to_halt(&mut kvm, &mut m, &start)));

        let mut raw = raw_vm(&image, RawConfig::default());
        assert_eq!(raw_run(&mut raw).exits, 1);
        g.bench_function("kvm-raw", |b| b.iter(|| raw_run(&mut raw)));
    }
    g.finish();
}
