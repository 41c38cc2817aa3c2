//! The bare-KVM baseline as a whole process, for comparing with `picoqemu run --backend kvm`:
//! loads a file with [`picoqemu_kvm::baseline::RawVm`] (2 MiB of RAM, one memslot, no
//! picoqemu layers), runs it to HLT or a write to port 0xF4 and prints the exit counts.
//!
//! ```text
//! cargo run --release -p picoqemu-kvm --example raw_run -- [--boot] IMAGE
//! ```
//! Without `--boot` the image goes to physical 0 and starts at 0000:0000 (the article's
//! layout, `picoqemu run --raw`); with `--boot` it goes to 0x7C00 and starts at 0000:7C00.
use std::process::ExitCode;

use picoqemu_kvm::baseline::{RawConfig, RawVm};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let boot = args.iter().any(|a| a == "--boot");
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: raw_run [--boot] IMAGE");
        return ExitCode::from(2);
    };
    let image = match std::fs::read(path) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("raw_run: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let origin: u16 = if boot { 0x7C00 } else { 0 };
    let result = RawVm::new(RawConfig::default()).and_then(|mut v| {
        v.load(usize::from(origin), &image)?;
        v.start(0, origin, origin)?;
        v.run()
    });
    match result {
        Ok(r) => {
            eprintln!(
                "raw_run: {:?} after {} exits ({} PIO, {} MMIO)",
                r.end, r.exits, r.pio_exits, r.mmio_exits
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("raw_run: {e}");
            ExitCode::from(1)
        }
    }
}
