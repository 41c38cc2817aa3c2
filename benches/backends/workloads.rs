//! `workloads`: the compiled-C programs of `benches/workloads` (issue 12), built from source
//! with gcc, each run to its self-check's debug exit. Criterion's element rate is MIPS
//! (Melem/s) on the interpreter's dynamic instruction count. `interp-off` is the interpreter
//! tier alone, `interp-hot`/`interp-eager` add the compiled tier; `kvm` runs the quick variant
//! (`Size::Small`, KVM's instruction emulator runs ~1.6 MIPS on hosts without VT-x).
//! Filter one with e.g. `cargo bench --bench backends -- workloads/sort`.
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use picoqemu::workloads::{self, Size};
use picoqemu_core::{load_image, Backend, CpuState, ImageKind, Machine, RunLimits, StopReason};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::KvmBackend;

use crate::common::{kvm_usable, machine_with};

fn image(name: &str, size: Size) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-workloads");
    workloads::build(name, size, &dir).unwrap_or_else(|e| panic!("building workload {name}: {e}"))
}

/// Reloads the image (its data is initialised again) and runs to the self-check's exit.
fn run_once(b: &mut dyn Backend, m: &mut Machine, image: &[u8], limits: RunLimits) -> CpuState {
    let start = load_image(m, image, ImageKind::Raw).expect("the workload loads");
    b.set_state(&start).expect("set_state");
    let stop = b.run(m, limits).unwrap_or_else(StopReason::from);
    assert_eq!(stop, StopReason::DebugExit(0), "{}: the workload's self-check failed", b.name());
    start
}

/// The interpreter's dynamic instruction count of one run of `image`.
fn instructions(image: &[u8]) -> u64 {
    let (mut m, _) = machine_with(image, ImageKind::Raw, None);
    let mut b = InterpBackend::new().with_jit(JitMode::Off);
    run_once(&mut b, &mut m, image, RunLimits::UNBOUNDED);
    b.stats().instructions.expect("the interpreter counts instructions")
}

fn bench_interp(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, image: &[u8]) {
    for (label, jit) in
        [("interp-off", JitMode::Off), ("interp-hot", JitMode::Hot), ("interp-eager", JitMode::Eager)]
    {
        let (mut m, _) = machine_with(image, ImageKind::Raw, None);
        let mut b = InterpBackend::new().with_jit(jit);
        g.bench_function(format!("{name}/{label}"), |bench| {
            bench.iter(|| run_once(&mut b, &mut m, image, RunLimits::UNBOUNDED))
        });
    }
}

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("workloads");
    g.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(2));
    for name in workloads::NAMES {
        let full = image(name, Size::Full);
        g.throughput(Throughput::Elements(instructions(&full)));
        bench_interp(&mut g, name, &full);
        if kvm_usable() {
            let small = image(name, Size::Small);
            g.throughput(Throughput::Elements(instructions(&small)));
            let (mut m, _) = machine_with(&small, ImageKind::Raw, None);
            let mut kvm = KvmBackend::new(&m).expect("KVM backend");
            // A time limit, not an instruction budget: KVM would single-step a budgeted run.
            let limits = RunLimits::timeout(Duration::from_secs(60));
            g.bench_function(format!("{name}/kvm"), |bench| {
                bench.iter(|| run_once(&mut kvm, &mut m, &small, limits))
            });
        }
    }
    g.finish();
}
