//! Stable equivalents of the cargo-fuzz targets `loader` and `bus` (see `fuzz/README.md`):
//! the same invariant checks (`tests/fuzz_checks/`), driven by proptest with a fixed seed and a
//! fixed number of cases, plus a replay of the committed fuzz corpora and crash regressions.
#[path = "fuzz_checks/bus.rs"]
mod bus;
#[path = "fuzz_checks/loader.rs"]
mod loader;
#[path = "../../tests/fuzz_checks/prop.rs"]
mod prop;
#[path = "../../tests/fuzz_checks/replay.rs"]
mod replay;

use picoqemu_core::loader::ImageKind;
use proptest::collection::vec;
use proptest::prelude::*;

#[test]
fn loader_invariants_on_random_images() {
    prop::run(600, vec(any::<u8>(), 0..700), |data| loader::check(&data));
}

#[test]
fn loader_size_boundaries() {
    for kind in [ImageKind::Boot, ImageKind::Raw, ImageKind::Rom] {
        for len in [0, 1, 15, 16, 511, 512, 513, 0xFFFF, 0x1_0000, 0x1_0001, 0x10_FFFF, 0x11_0000, 0x11_0001]
        {
            loader::check_image(kind, &vec![0x55; len]);
        }
    }
}

#[test]
fn bus_invariants_on_random_access_sequences() {
    prop::run(3000, vec(any::<u8>(), 0..600), |data| bus::check(&data));
}

#[test]
fn loader_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "loader", loader::check);
}

#[test]
fn bus_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "bus", bus::check);
}

#[path = "fuzz_checks/snapshot.rs"]
mod snapshot;

#[test]
fn snapshot_loader_never_panics_on_random_or_damaged_files() {
    use picoqemu_core::snapshot::restore;
    let base = snapshot::base();
    let mut m = picoqemu_core::Machine::new(
        picoqemu_core::MachineConfig {
            mem_size: picoqemu_core::MIN_MEM_SIZE,
            platform: picoqemu_core::Platform::Pc,
            ..Default::default()
        },
        picoqemu_core::IoBus::capturing(),
    )
    .unwrap();
    restore(&mut m, &base).expect("the undamaged base snapshot loads");
    prop::run(400, vec(any::<u8>(), 0..80), |data| snapshot::check(&data));
}

#[test]
fn snapshot_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "snapshot", snapshot::check);
}
