//! `hello`: the article's program (raw layout) from machine creation to halt, and
//! `lifecycle`: create + run + destroy of a one-`hlt` guest, and resetting a machine for reuse,
//! on both backends and on the bare-KVM baseline.
use std::hint::black_box;

use criterion::Criterion;
use picoqemu::guests::hello;
use picoqemu_core::{load_image, Backend, ImageKind, Machine, MachineConfig};
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::baseline::{RawConfig, RawEnd, RawVm};
use picoqemu_kvm::KvmBackend;

use crate::common::{
    boot_machine, hlt_sector, kvm_usable, raw_run, raw_vm, run_to_halt, silent_bus, EVERY_ACCESS_EXITS,
};

/// Machine creation, raw load, backend creation, run to HLT; returns the backend's exits.
fn hello_on<B: Backend>(image: &[u8], make: impl Fn(&Machine) -> B) -> Option<u64> {
    let mut m = Machine::new(MachineConfig::default(), silent_bus(None)).expect("guest RAM");
    let start = load_image(&mut m, image, ImageKind::Raw).expect("hello loads");
    let mut b = make(&m);
    run_to_halt(&mut b, &mut m, &start);
    assert!(m.screen_written(), "hello must draw the screen");
    b.stats().exits
}

/// The article's C runner's work, bare: new VM, copy the image to 0, run to HLT, destroy.
fn hello_raw(image: &[u8]) -> u64 {
    let mut v = RawVm::new(RawConfig::default()).expect("bare KVM VM");
    v.load(0, image).expect("hello fits");
    v.start(0, 0, 0).expect("KVM_SET_SREGS/REGS");
    let r = v.run().expect("bare KVM run");
    assert_eq!(r.end, RawEnd::Halted);
    r.exits
}

pub fn bench_hello(c: &mut Criterion) {
    let image = hello().expect("guest");
    let mut g = c.benchmark_group("hello");
    g.bench_function("interp", |b| b.iter(|| hello_on(black_box(&image), |_| InterpBackend::new())));
    if kvm_usable() {
        let kvm = |m: &Machine| KvmBackend::new(m).expect("KVM backend");
        assert_eq!(hello_on(&image, kvm), Some(1), "hello on KVM must take exactly one exit (HLT)");
        g.bench_function("kvm", |b| b.iter(|| hello_on(black_box(&image), kvm)));
        // The same with coalescing off (hello registers no zone either way: it writes no port).
        let plain = |m: &Machine| KvmBackend::with_options(m, EVERY_ACCESS_EXITS).expect("KVM backend");
        g.bench_function("kvm-no-coalesced", |b| b.iter(|| hello_on(black_box(&image), plain)));
        assert_eq!(hello_raw(&image), 1);
        g.bench_function("kvm-raw", |b| b.iter(|| hello_raw(black_box(&image))));
    }
    g.finish();
}

pub fn bench_lifecycle(c: &mut Criterion) {
    let image = hlt_sector().expect("guest");
    let mut g = c.benchmark_group("lifecycle");

    g.bench_function("interp/create-run-destroy", |b| {
        b.iter(|| {
            let (mut m, start) = boot_machine(&image);
            run_to_halt(&mut InterpBackend::new(), &mut m, &start);
        })
    });
    let (mut m, start) = boot_machine(&image);
    let mut interp = InterpBackend::new();
    g.bench_function("interp/reuse", |b| {
        b.iter(|| {
            m.reset();
            let start = load_image(&mut m, &image, ImageKind::Boot).expect("load");
            run_to_halt(&mut interp, &mut m, &start);
        })
    });
    g.bench_function("interp/rerun", |b| b.iter(|| run_to_halt(&mut interp, &mut m, &start)));

    if kvm_usable() {
        g.bench_function("kvm/create-run-destroy", |b| {
            b.iter(|| {
                let (mut m, start) = boot_machine(&image);
                let mut kvm = KvmBackend::new(&m).expect("KVM backend");
                run_to_halt(&mut kvm, &mut m, &start);
            })
        });
        // Registered coalesced zones make the VM's destruction much slower on PVM hosts (they
        // are registered lazily, so this `hlt` guest registers none either way).
        let plain = EVERY_ACCESS_EXITS;
        g.bench_function("kvm/create-run-destroy-no-coalesced", |b| {
            b.iter(|| {
                let (mut m, start) = boot_machine(&image);
                let mut kvm = KvmBackend::with_options(&m, plain).expect("KVM backend");
                run_to_halt(&mut kvm, &mut m, &start);
            })
        });
        let (mut m, start) = boot_machine(&image);
        let mut kvm = KvmBackend::new(&m).expect("KVM backend");
        g.bench_function("kvm/reuse", |b| {
            b.iter(|| {
                kvm.reset(&mut m).expect("KVM reset");
                m.reset();
                let start = load_image(&mut m, &image, ImageKind::Boot).expect("load");
                run_to_halt(&mut kvm, &mut m, &start);
            })
        });
        g.bench_function("kvm/rerun", |b| b.iter(|| run_to_halt(&mut kvm, &mut m, &start)));

        g.bench_function("kvm-raw/create-run-destroy", |b| {
            b.iter(|| raw_run(&mut raw_vm(&image, RawConfig::default())))
        });
        let mut v = raw_vm(&image, RawConfig::default());
        g.bench_function("kvm-raw/reuse", |b| {
            b.iter(|| {
                v.memory_mut().fill(0);
                v.load(usize::from(picoqemu::guests::BOOT_ORIGIN), &image).expect("load");
                raw_run(&mut v)
            })
        });
        g.bench_function("kvm-raw/rerun", |b| b.iter(|| raw_run(&mut v)));
    }
    g.finish();
}
