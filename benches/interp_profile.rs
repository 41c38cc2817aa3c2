//! A profiling target for the interpreter (no criterion, no KVM): runs one guest on
//! `InterpBackend` repeatedly and prints the rate, so `perf record` or
//! `valgrind --tool=callgrind` see nothing but the interpreter.
//!
//! ```text
//! cargo bench --bench interp_profile -- [compute|movsw|stosw|out|mmio|hello|WORKLOAD] [REPEATS] [off|hot|eager]
//! perf record -e cpu-clock -g target/release/deps/interp_profile-* compute 20
//! ```
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use picoqemu::{guests, workloads};
use picoqemu_core::{load_image, Backend, ImageKind, Machine, RunLimits, StopReason};
use picoqemu_interp::{InterpBackend, JitMode};

fn main() {
    // `cargo bench` passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let which = args.first().map(String::as_str).unwrap_or("compute");
    let repeats: u32 = match args.get(1).map(|s| s.parse()) {
        None => 10,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("interp_profile: REPEATS must be a positive integer");
            std::process::exit(2);
        }
    };
    let (image, kind, mmio, units, unit) = match which {
        "compute" => (
            guests::compute_loop(1_000_000),
            ImageKind::Boot,
            None,
            guests::compute_instruction_count(1_000_000),
            "MIPS",
        ),
        "movsw" => (guests::rep_movsw(1024), ImageKind::Boot, None, 1024 * guests::REP_BLOCK_BYTES, "MB/s"),
        "stosw" => (guests::rep_stosw(1024), ImageKind::Boot, None, 1024 * guests::REP_BLOCK_BYTES, "MB/s"),
        "out" => (guests::out_loop(1_000_000), ImageKind::Boot, None, 1_000_000, "M OUT/s"),
        "mmio" => (
            guests::mmio_store_loop(common::MMIO_BASE, 1_000_000),
            ImageKind::Boot,
            Some(common::MMIO_BASE),
            1_000_000,
            "M stores/s",
        ),
        "hello" => (guests::hello(), ImageKind::Raw, None, 0, ""),
        w if workloads::NAMES.contains(&w) => {
            let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-workloads");
            let image = workloads::build(w, workloads::Size::Full, &dir).unwrap_or_else(|e| {
                eprintln!("interp_profile: {e}");
                std::process::exit(2)
            });
            (Ok(image), ImageKind::Raw, None, 0, "MIPS")
        }
        other => {
            eprintln!(
                "interp_profile: unknown guest '{other}' (compute, movsw, stosw, out, mmio, hello, or a workload: {})",
                workloads::NAMES.join(", ")
            );
            std::process::exit(2);
        }
    };
    let image = image.expect("guest");
    let jit = match args.get(2).map(String::as_str) {
        None | Some("hot") => JitMode::Hot,
        Some("off") => JitMode::Off,
        Some("eager") => JitMode::Eager,
        Some(other) => {
            eprintln!("interp_profile: JIT must be off, hot or eager, not '{other}'");
            std::process::exit(2);
        }
    };
    let (mut m, _) = common::machine_with(&image, kind, mmio);
    let mut b = InterpBackend::new().with_jit(jit);
    run_to_end(&mut b, &mut m, &image, kind);
    let first = b.stats().instructions.unwrap_or(0);
    let units = if units == 0 && unit == "MIPS" { first } else { units };
    let t = Instant::now();
    for _ in 0..repeats {
        run_to_end(&mut b, &mut m, &image, kind);
    }
    let secs = t.elapsed().as_secs_f64();
    let rate = (units * u64::from(repeats)) as f64 / secs / 1e6;
    let per_run = secs * 1e6 / f64::from(repeats);
    let rate = if units > 0 { format!(", {rate:.1} {unit}") } else { String::new() };
    println!(
        "{which}: {repeats} runs in {secs:.3} s, {per_run:.1} µs per run{rate} ({} instructions retired)",
        b.stats().instructions.unwrap_or(0)
    );
}

/// Loads `image` again (a workload's data is initialised again) and runs it to its end: HLT,
/// or a workload's debug exit with status 0 (its self-checks passed).
fn run_to_end(b: &mut InterpBackend, m: &mut Machine, image: &[u8], kind: ImageKind) {
    let start = load_image(m, image, kind).expect("the guest loads");
    b.set_state(&start).expect("set_state");
    let stop = b.run(m, RunLimits::UNBOUNDED).unwrap_or_else(StopReason::from);
    assert!(matches!(stop, StopReason::Halted | StopReason::DebugExit(0)), "the guest ended with {stop:?}");
}
