//! Exits: `port_io` (a tight `out dx, al` loop on port 0x80, `picoqemu::guests::out_loop`),
//! `port_e9` (the same loop on the debug console 0xE9, with KVM's coalesced PIO on and off)
//! and `mmio` (byte stores to the MMIO console, `picoqemu::guests::mmio_store_loop`, with
//! KVM's coalesced MMIO off (`kvm`: one exit per store) and on (`kvm-coalesced`)).
//! Criterion's element rate is accesses per second; its inverse is the cost per access
//! (on KVM: per exit, or per ring entry when coalesced).
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use picoqemu::guests::{mmio_store_loop, out_loop, DEBUGCON_PORT};
use picoqemu_core::ImageKind;
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::baseline::RawConfig;
use picoqemu_kvm::{KvmBackend, KvmOptions};

use crate::common::{kvm_usable, machine_with, raw_run, raw_vm, run_to_halt, EVERY_ACCESS_EXITS, MMIO_BASE};
use picoqemu::guests::out_port_loop;

/// Accesses per run on the interpreter.
const INTERP_N: u32 = 1_000_000;
/// Accesses per run that exit on KVM (about 8.5 µs each here).
const KVM_EXIT_N: u32 = 5_000;
/// Accesses per run that go to KVM's coalesced ring (about 2 µs each here).
const KVM_RING_N: u32 = 20_000;

fn slow(g: &mut BenchmarkGroup<'_, WallTime>, n: u32) {
    g.throughput(Throughput::Elements(u64::from(n)));
    g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(1));
}

fn interp(g: &mut BenchmarkGroup<'_, WallTime>, image: &[u8], mmio: Option<u32>) {
    let (mut m, start) = machine_with(image, ImageKind::Boot, mmio);
    let mut b = InterpBackend::new();
    g.throughput(Throughput::Elements(u64::from(INTERP_N)));
    g.bench_function("interp", |bch| bch.iter(|| run_to_halt(&mut b, &mut m, &start)));
}

/// The KVM backend on `image`, checking that a run takes `exits` exits.
fn kvm(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    image: &[u8],
    mmio: Option<u32>,
    options: KvmOptions,
    exits: u64,
) {
    let (mut m, start) = machine_with(image, ImageKind::Boot, mmio);
    let mut b = KvmBackend::with_options(&m, options).expect("KVM backend");
    run_to_halt(&mut b, &mut m, &start);
    assert_eq!(b.kvm_stats().exits, exits, "{name}: unexpected exit count");
    g.bench_function(name, |bch| bch.iter(|| run_to_halt(&mut b, &mut m, &start)));
}

/// The bare-KVM baseline on `image`, checking that a run takes `exits` exits.
fn raw(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, image: &[u8], config: RawConfig, exits: u64) {
    let mut v = raw_vm(image, config);
    assert_eq!(raw_run(&mut v).exits, exits, "{name}: unexpected exit count");
    g.bench_function(name, |bch| bch.iter(|| raw_run(&mut v)));
}

pub fn bench_port(c: &mut Criterion) {
    let mut g = c.benchmark_group("port_io");
    interp(&mut g, &out_loop(INTERP_N).expect("guest"), None);
    if kvm_usable() {
        let image = out_loop(KVM_EXIT_N).expect("guest");
        let exits = u64::from(KVM_EXIT_N) + 1;
        slow(&mut g, KVM_EXIT_N);
        kvm(&mut g, "kvm", &image, None, KvmOptions::default(), exits);
        raw(&mut g, "kvm-raw", &image, RawConfig::default(), exits);
    }
    g.finish();
}

pub fn bench_e9(c: &mut Criterion) {
    let mut g = c.benchmark_group("port_e9");
    interp(&mut g, &out_port_loop(DEBUGCON_PORT, INTERP_N).expect("guest"), None);
    if kvm_usable() {
        let image = out_port_loop(DEBUGCON_PORT, KVM_EXIT_N).expect("guest");
        let exits = u64::from(KVM_EXIT_N) + 1;
        slow(&mut g, KVM_EXIT_N);
        kvm(&mut g, "kvm-exit", &image, None, EVERY_ACCESS_EXITS, exits);
        raw(&mut g, "kvm-raw-exit", &image, RawConfig::default(), exits);

        let image = out_port_loop(DEBUGCON_PORT, KVM_RING_N).expect("guest");
        slow(&mut g, KVM_RING_N);
        let (mut m, start) = machine_with(&image, ImageKind::Boot, None);
        let mut b = KvmBackend::with_options(&m, KvmOptions::default()).expect("KVM backend");
        if b.coalesced_pio() {
            run_to_halt(&mut b, &mut m, &start);
            let s = b.kvm_stats();
            // A write that finds the ring full exits as ordinary port I/O instead.
            assert_eq!(
                s.coalesced_writes + s.pio_exits,
                u64::from(KVM_RING_N),
                "every OUT must reach the bus"
            );
            let ring_exits = s.exits;
            g.bench_function("kvm-coalesced", |bch| bch.iter(|| run_to_halt(&mut b, &mut m, &start)));
            let cfg = RawConfig { coalesced_port: Some(DEBUGCON_PORT), ..RawConfig::default() };
            let mut v = raw_vm(&image, cfg);
            let r = raw_run(&mut v);
            assert_eq!(r.coalesced + r.pio_exits, u64::from(KVM_RING_N));
            eprintln!("port_e9: coalesced exits per run: picoqemu {ring_exits}, bare KVM {}", r.exits);
            g.bench_function("kvm-raw-coalesced", |bch| bch.iter(|| raw_run(&mut v)));
        } else {
            eprintln!("SKIP: port_e9/kvm-coalesced: the host lacks KVM_CAP_COALESCED_PIO");
        }
    }
    g.finish();
}

pub fn bench_mmio(c: &mut Criterion) {
    let mut g = c.benchmark_group("mmio");
    // The loop stores N dots and then one newline.
    interp(&mut g, &mmio_store_loop(MMIO_BASE, INTERP_N).expect("guest"), Some(MMIO_BASE));
    if kvm_usable() {
        let image = mmio_store_loop(MMIO_BASE, KVM_EXIT_N).expect("guest");
        let exits = u64::from(KVM_EXIT_N) + 2;
        slow(&mut g, KVM_EXIT_N);
        kvm(&mut g, "kvm", &image, Some(MMIO_BASE), EVERY_ACCESS_EXITS, exits);
        let hole = RawConfig { mmio_hole: Some(u64::from(MMIO_BASE)), ..RawConfig::default() };
        raw(&mut g, "kvm-raw", &image, hole, exits);

        let image = mmio_store_loop(MMIO_BASE, KVM_RING_N).expect("guest");
        slow(&mut g, KVM_RING_N);
        let (mut m, start) = machine_with(&image, ImageKind::Boot, Some(MMIO_BASE));
        let mut b = KvmBackend::with_options(&m, KvmOptions::default()).expect("KVM backend");
        if b.coalesced_mmio() {
            run_to_halt(&mut b, &mut m, &start);
            let s = b.kvm_stats();
            // A store that finds the ring full exits as ordinary MMIO instead.
            assert_eq!(
                s.coalesced_writes + s.mmio_exits,
                u64::from(KVM_RING_N) + 1,
                "every store must reach the bus"
            );
            assert!(s.coalesced_writes > 0, "MMIO coalescing must be in use");
            let ring_exits = s.exits;
            g.bench_function("kvm-coalesced", |bch| bch.iter(|| run_to_halt(&mut b, &mut m, &start)));
            let mut v = raw_vm(&image, RawConfig { coalesce_mmio_hole: true, ..hole });
            let r = raw_run(&mut v);
            assert_eq!(r.coalesced + r.mmio_exits, u64::from(KVM_RING_N) + 1);
            eprintln!("mmio: coalesced exits per run: picoqemu {ring_exits}, bare KVM {}", r.exits);
            g.bench_function("kvm-raw-coalesced", |bch| bch.iter(|| raw_run(&mut v)));
        } else {
            eprintln!("SKIP: mmio/kvm-coalesced: the host lacks KVM_CAP_COALESCED_MMIO");
        }
    }
    g.finish();
}
