//! The criterion benchmarks of both backends (`cargo bench --bench backends`), one group per
//! benchmark of issue 6: `compute` (MIPS), `rep_movsw`/`rep_stosw` (bytes/s), `port_io` and
//! `port_e9` (cost per OUT), `mmio` (cost per store), `hello` (machine creation to halt),
//! `process` (the whole `picoqemu` process), `lifecycle` (create/run/destroy and reuse), `diff` (differential-testing programs/s),
//! `workloads` (compiled-C programs, MIPS, issue 12).
//! Every KVM group also runs the same guest on the bare-KVM baseline
//! (`picoqemu_kvm::baseline`, no picoqemu layers) so our overhead is a ratio. KVM benchmarks
//! are skipped with a printed reason when /dev/kvm is unusable. Filter with criterion's
//! usual argument, e.g. `cargo bench --bench backends -- compute`.
#[path = "../common/mod.rs"]
mod common;

mod compute;
mod diff;
mod io;
mod lifecycle;
mod process;
mod rep;
mod workloads;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

/// Short warm-up and measurement: the whole suite must stay within a few minutes on 2 cores.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20)
        .nresamples(20_000)
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = compute::bench, rep::bench, io::bench_port, io::bench_e9, io::bench_mmio,
        lifecycle::bench_hello, process::bench, lifecycle::bench_lifecycle, diff::bench,
        workloads::bench
}
criterion_main!(benches);
