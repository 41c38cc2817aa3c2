//! `diff`: differential-testing throughput, in programs per second: generating (and
//! assembling) fuzz programs, and classifying them on a KVM/interpreter worker pair
//! (`picoqemu::fuzz::kvm_worker`), whole-run and lockstep. The programs are those of the
//! fixed campaign seed 1, generated before the measurement; a divergent program is counted,
//! not minimised.
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use picoqemu::fuzz::program::Program;
use picoqemu::fuzz::{gen, kvm_worker, rng};

use crate::common::kvm_usable;

const SEED: u64 = 1;
/// Programs per measured batch, whole-run.
const WHOLE_RUN_BATCH: u64 = 50;
/// Programs per measured batch, lockstep.
const LOCKSTEP_BATCH: u64 = 10;

fn programs(n: u64) -> Vec<Program> {
    (0..n).map(|k| gen::generate(rng::program_seed(SEED, k))).collect()
}

pub fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("diff");
    g.throughput(Throughput::Elements(WHOLE_RUN_BATCH));
    g.bench_function("generate", |b| {
        b.iter(|| {
            for k in 0..WHOLE_RUN_BATCH {
                let p = gen::generate(rng::program_seed(SEED, black_box(k)));
                black_box(p.assemble().map(|a| a.image.len()).unwrap_or(0));
            }
        })
    });
    if kvm_usable() {
        g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(2));
        for (name, lockstep, n) in [("whole-run", false, WHOLE_RUN_BATCH), ("lockstep", true, LOCKSTEP_BATCH)]
        {
            let progs = programs(n);
            let mut w = kvm_worker(lockstep).expect("KVM/interpreter worker");
            g.throughput(Throughput::Elements(n));
            g.bench_function(name, |b| {
                b.iter(|| {
                    for p in &progs {
                        black_box(w.run_program(p).expect("differential run"));
                    }
                })
            });
        }
    }
    g.finish();
}
