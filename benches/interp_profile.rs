//! A profiling target for the interpreter (no criterion, no KVM): runs one guest on
//! `InterpBackend` repeatedly and prints the rate, so `perf record` or
//! `valgrind --tool=callgrind` see nothing but the interpreter.
//!
//! ```text
//! cargo bench --bench interp_profile -- [compute|movsw|stosw|out|mmio|hello] [REPEATS]
//! perf record -e cpu-clock -g target/release/deps/interp_profile-* compute 20
//! ```
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use picoqemu::guests;
use picoqemu_core::{Backend, ImageKind};
use picoqemu_interp::InterpBackend;

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
        other => {
            eprintln!("interp_profile: unknown guest '{other}' (compute, movsw, stosw, out, mmio, hello)");
            std::process::exit(2);
        }
    };
    let image = image.expect("guest");
    let (mut m, start) = common::machine_with(&image, kind, mmio);
    let mut b = InterpBackend::new();
    common::run_to_halt(&mut b, &mut m, &start);
    let t = Instant::now();
    for _ in 0..repeats {
        common::run_to_halt(&mut b, &mut m, &start);
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
