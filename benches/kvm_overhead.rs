//! picoqemu's KVM backend against the bare-KVM baseline, measured A/B interleaved: each round
//! runs the same guest once on each (in alternating order) and the ratio of the two times is
//! taken per round, so load drift on a shared machine cancels out. Prints, per guest, the
//! median time of each side, the median per-round ratio and its interquartile range.
//! Skips with a printed reason when /dev/kvm is unusable.
//!
//! The two `process` cases compare whole processes: `picoqemu run --backend kvm` (the binary
//! cargo builds for benches) against this bench executable re-run as a bare KVM runner
//! (`kvm_overhead --bare-process [--raw] IMAGE`: `RawVm` on the image, nothing else), both
//! spawned with output discarded.
//!
//! ```text
//! cargo bench --bench kvm_overhead [-- ROUNDS]      (default 31 rounds)
//! ```
#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use picoqemu::guests;
use picoqemu_core::ImageKind;
use picoqemu_kvm::baseline::{RawConfig, RawVm};
use picoqemu_kvm::{KvmBackend, KvmOptions};

/// One comparison: a picoqemu run and a bare run of the same guest, each returning its
/// time in seconds.
struct Case {
    name: &'static str,
    /// Accesses (or instructions) per run, to print a per-unit cost.
    units: u64,
    unit: &'static str,
    pico: Box<dyn FnMut() -> f64>,
    raw: Box<dyn FnMut() -> f64>,
}

fn timed(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A picoqemu KVM machine for the boot sector `image` that reruns it each call.
fn pico_boot(image: &[u8], mmio: Option<u32>, options: KvmOptions) -> Box<dyn FnMut() -> f64> {
    let (mut m, start) = common::machine_with(image, ImageKind::Boot, mmio);
    let mut b = KvmBackend::with_options(&m, options).expect("KVM backend");
    Box::new(move || timed(|| common::run_to_halt(&mut b, &mut m, &start)))
}

/// A bare VM for the boot sector `image` that reruns it each call.
fn raw_boot(image: &[u8], config: RawConfig) -> Box<dyn FnMut() -> f64> {
    let mut v = common::raw_vm(image, config);
    Box::new(move || {
        timed(|| {
            common::raw_run(&mut v);
        })
    })
}

/// `--bare-process [--raw] IMAGE`: runs IMAGE on a bare `RawVm` (raw layout at 0, or a boot
/// sector at 0x7C00) and exits 0 when it halted.
fn bare_process(args: &[String]) -> ! {
    let raw = args.iter().any(|a| a == "--raw");
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("kvm_overhead --bare-process [--raw] IMAGE");
        std::process::exit(2);
    };
    let image = std::fs::read(path).expect("reading the image");
    let origin: u16 = if raw { 0 } else { guests::BOOT_ORIGIN };
    let mut v = RawVm::new(RawConfig::default()).expect("bare KVM VM");
    v.load(usize::from(origin), &image).expect("the image fits");
    v.start(0, origin, origin).expect("KVM_SET_SREGS/REGS");
    let r = v.run().expect("bare KVM run");
    std::process::exit(if r.end == picoqemu_kvm::baseline::RawEnd::Halted { 0 } else { 1 });
}

/// Spawns `program args` with output discarded and times it; panics unless it exits with 0.
fn spawn_timed(program: &Path, args: &[&str]) -> f64 {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let t = Instant::now();
    let status = cmd.status().expect("spawn");
    let dt = t.elapsed().as_secs_f64();
    assert!(status.success(), "{} {args:?}: {status}", program.display());
    dt
}

/// A whole-process case: `picoqemu run --backend kvm [--raw] IMAGE` against this executable
/// as a bare runner on the same file.
fn process_case(name: &'static str, image: &[u8], raw: bool, dir: &Path) -> Case {
    let file = dir.join(format!("{}.img", if raw { "hello" } else { "hlt" }));
    std::fs::write(&file, image).expect("writing the image");
    let f = file.to_str().expect("UTF-8 temporary path").to_string();
    let me = std::env::current_exe().expect("current executable");
    let pico_args: Vec<String> = ["run", "--backend", "kvm"]
        .into_iter()
        .map(String::from)
        .chain(raw.then(|| "--raw".to_string()))
        .chain([f.clone()])
        .collect();
    let bare_args: Vec<String> = ["--bare-process".to_string()]
        .into_iter()
        .chain(raw.then(|| "--raw".to_string()))
        .chain([f])
        .collect();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_picoqemu"));
    Case {
        name,
        units: 1,
        unit: "process",
        pico: Box::new(move || spawn_timed(&bin, &pico_args.iter().map(String::as_str).collect::<Vec<_>>())),
        raw: Box::new(move || spawn_timed(&me, &bare_args.iter().map(String::as_str).collect::<Vec<_>>())),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bare-process") {
        bare_process(&args[1..]);
    }
    let rounds: usize = match std::env::args().skip(1).find(|a| !a.starts_with("--")).map(|s| s.parse()) {
        None => 31,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("kvm_overhead: ROUNDS must be a positive integer");
            std::process::exit(2);
        }
    };
    if !common::kvm_usable() {
        return;
    }
    const EXITS: u32 = 3_000;
    /// Accesses per run that go to the coalesced ring.
    const RING: u32 = 10_000;
    let mmio = common::MMIO_BASE;
    let hole = RawConfig { mmio_hole: Some(u64::from(mmio)), ..RawConfig::default() };
    let hello = guests::hello().expect("guest");
    let hello_pico = move |options: KvmOptions| -> Box<dyn FnMut() -> f64> {
        let image = hello.clone();
        Box::new(move || {
            timed(|| {
                let (mut m, start) = common::machine_with(&image, ImageKind::Raw, None);
                let mut b = KvmBackend::with_options(&m, options).expect("KVM backend");
                common::run_to_halt(&mut b, &mut m, &start);
            })
        })
    };
    let hello_image = guests::hello().expect("guest");
    let hello_raw = move || -> Box<dyn FnMut() -> f64> {
        let image = hello_image.clone();
        Box::new(move || {
            timed(|| {
                let mut v = RawVm::new(RawConfig::default()).expect("bare KVM VM");
                v.load(0, &image).expect("hello fits");
                v.start(0, 0, 0).expect("KVM_SET_SREGS/REGS");
                v.run().expect("bare KVM run");
            })
        })
    };
    let out = guests::out_loop(EXITS).expect("guest");
    let store = guests::mmio_store_loop(mmio, EXITS).expect("guest");
    let e9_ring = guests::out_port_loop(guests::DEBUGCON_PORT, RING).expect("guest");
    let store_ring = guests::mmio_store_loop(mmio, RING).expect("guest");
    let default = KvmOptions::default();
    let exits = common::EVERY_ACCESS_EXITS;
    let compute = guests::compute_loop(10_000).expect("guest");
    let hlt = common::hlt_sector().expect("guest");
    let mut cases = vec![
        Case {
            name: "port 0x80 OUT (exit)",
            units: u64::from(EXITS) + 1,
            unit: "exit",
            pico: pico_boot(&out, None, default),
            raw: raw_boot(&out, RawConfig::default()),
        },
        Case {
            name: "MMIO store (exit)",
            units: u64::from(EXITS) + 2,
            unit: "exit",
            pico: pico_boot(&store, Some(mmio), exits),
            raw: raw_boot(&store, hole),
        },
        Case {
            name: "port 0xE9 OUT (coalesced)",
            units: u64::from(RING),
            unit: "OUT",
            pico: pico_boot(&e9_ring, None, default),
            raw: raw_boot(
                &e9_ring,
                RawConfig { coalesced_port: Some(guests::DEBUGCON_PORT), ..RawConfig::default() },
            ),
        },
        Case {
            name: "MMIO store (coalesced)",
            units: u64::from(RING) + 1,
            unit: "store",
            pico: pico_boot(&store_ring, Some(mmio), default),
            raw: raw_boot(&store_ring, RawConfig { coalesce_mmio_hole: true, ..hole }),
        },
        Case {
            name: "compute loop",
            units: guests::compute_instruction_count(10_000),
            unit: "instruction",
            pico: pico_boot(&compute, None, default),
            raw: raw_boot(&compute, RawConfig::default()),
        },
        Case {
            name: "rerun hlt (reuse)",
            units: 1,
            unit: "run",
            pico: pico_boot(&hlt, None, default),
            raw: raw_boot(&hlt, RawConfig::default()),
        },
        Case {
            name: "hello from creation",
            units: 1,
            unit: "run",
            pico: hello_pico(default),
            raw: hello_raw(),
        },
        Case {
            name: "hello, coalescing off",
            units: 1,
            unit: "run",
            pico: hello_pico(exits),
            raw: hello_raw(),
        },
    ];
    let dir = std::env::temp_dir().join(format!("picoqemu-kvm-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    cases.push(process_case("process: hello (--raw)", &guests::hello().expect("guest"), true, &dir));
    cases.push(process_case("process: start-up (hlt)", &hlt, false, &dir));
    println!(
        "kvm_overhead: {rounds} interleaved rounds per guest; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<28} {:>14} {:>14} {:>10} {:>16}",
        "guest", "picoqemu/unit", "bare/unit", "ratio", "ratio IQR"
    );
    for c in &mut cases {
        // One warm-up run each.
        (c.pico)();
        (c.raw)();
        let (mut p, mut r, mut q) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..rounds {
            let (tp, tr) = if i % 2 == 0 {
                let a = (c.pico)();
                (a, (c.raw)())
            } else {
                let b = (c.raw)();
                ((c.pico)(), b)
            };
            p.push(tp);
            r.push(tr);
            q.push(tp / tr);
        }
        let per = |t: f64| t / c.units as f64 * 1e6;
        let (mp, mr, mq) = (median(&mut p), median(&mut r), median(&mut q));
        let (q1, q3) = (q[q.len() / 4], q[q.len() * 3 / 4]);
        println!(
            "{:<28} {:>11.3} µs {:>11.3} µs {:>9.3}× {:>7.3}–{:.3}×   (per {})",
            c.name,
            per(mp),
            per(mr),
            mq,
            q1,
            q3,
            c.unit
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
