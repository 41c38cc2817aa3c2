//! `process`: the whole `picoqemu` process, spawned as `picoqemu run --backend X ...` (the
//! binary cargo builds for the benchmarks, in target/release), for the article's hello
//! (`--raw`) and for a one-`hlt` boot sector (start-up cost). Wall time per process.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criterion::Criterion;
use picoqemu::guests::hello;

use crate::common::{hlt_sector, kvm_usable};

const BIN: &str = env!("CARGO_BIN_EXE_picoqemu");

/// Writes the guests to a per-process temporary directory.
fn images() -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("picoqemu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let hello_path = dir.join("hello.bin");
    let hlt_path = dir.join("hlt.bin");
    std::fs::write(&hello_path, hello().expect("guest")).expect("write hello.bin");
    std::fs::write(&hlt_path, hlt_sector().expect("guest")).expect("write hlt.bin");
    (dir, hello_path, hlt_path)
}

/// Runs `picoqemu run --backend backend [--raw] image` with output discarded; panics unless it
/// exits with status 0.
fn spawn(backend: &str, raw: bool, image: &Path) {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--backend", backend]);
    if raw {
        cmd.arg("--raw");
    }
    let status = cmd.arg(image).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("spawn picoqemu");
    assert!(status.success(), "picoqemu run --backend {backend} {}: {status}", image.display());
}

pub fn bench(c: &mut Criterion) {
    let (dir, hello_path, hlt_path) = images();
    let mut g = c.benchmark_group("process");
    let mut backends = vec!["interp"];
    if kvm_usable() {
        backends.push("kvm");
    }
    for backend in backends {
        g.bench_function(format!("{backend}/hello"), |b| b.iter(|| spawn(backend, true, &hello_path)));
        g.bench_function(format!("{backend}/startup-hlt"), |b| b.iter(|| spawn(backend, false, &hlt_path)));
    }
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}
