//! `rep_movsw` / `rep_stosw`: 4 KiB blocks copied or filled by one REP string instruction
//! each (`picoqemu::guests::rep_movsw` / `rep_stosw`); criterion's byte rate is the guest's
//! copy or fill bandwidth.
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use picoqemu::guests::{rep_movsw, rep_stosw, GuestError, REP_BLOCK_BYTES};
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::baseline::RawConfig;
use picoqemu_kvm::KvmBackend;

use crate::common::{boot_machine, kvm_usable, raw_run, raw_vm, run_to_halt};

/// Blocks per run on the interpreter (1 MiB).
const INTERP_BLOCKS: u32 = 256;
/// Blocks per run on KVM (32 KiB; about 1.5 MB/s here).
const KVM_BLOCKS: u32 = 8;

pub fn bench(c: &mut Criterion) {
    one(c, "rep_movsw", rep_movsw);
    one(c, "rep_stosw", rep_stosw);
}

fn one(c: &mut Criterion, name: &str, build: fn(u32) -> Result<Vec<u8>, GuestError>) {
    let mut g = c.benchmark_group(name);

    let image = build(INTERP_BLOCKS).expect("guest");
    let (mut m, start) = boot_machine(&image);
    let mut interp = InterpBackend::new();
    g.throughput(Throughput::Bytes(u64::from(INTERP_BLOCKS) * REP_BLOCK_BYTES));
    g.bench_function("interp", |b| b.iter(|| run_to_halt(&mut interp, &mut m, &start)));

    if kvm_usable() {
        let image = build(KVM_BLOCKS).expect("guest");
        g.throughput(Throughput::Bytes(u64::from(KVM_BLOCKS) * REP_BLOCK_BYTES));
        g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(1));
        let (mut m, start) = boot_machine(&image);
        let mut kvm = KvmBackend::new(&m).expect("KVM backend");
        run_to_halt(&mut kvm, &mut m, &start);
        assert_eq!(kvm.kvm_stats().exits, 1, "a REP loop must take exactly one exit (HLT)");
        g.bench_function("kvm", |b| b.iter(|| run_to_halt(&mut kvm, &mut m, &start)));

        let mut raw = raw_vm(&image, RawConfig::default());
        g.bench_function("kvm-raw", |b| b.iter(|| raw_run(&mut raw)));
    }
    g.finish();
}
