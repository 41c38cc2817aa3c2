//! Writing a minimised divergence to disk as a reproducer: the raw image, an assembly listing
//! (minimised and original), both final states, the report and the `picoqemu diff` command
//! that replays it.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::harness::Finding;
use super::minimize::Minimised;
use super::program::{Program, FUZZ_MEM};

/// The directory name of program `index` of campaign `seed`.
pub fn dir_name(seed: u64, index: u64) -> String {
    format!("seed{seed}-prog{index}")
}

/// The command that replays `bin` (the memory size matches the fuzzer's machines).
pub fn replay_command(bin: &Path, lockstep: bool) -> String {
    format!(
        "picoqemu diff --raw --mem {}K{} {}",
        FUZZ_MEM / 1024,
        if lockstep { " --lockstep" } else { "" },
        bin.display()
    )
}

fn state_text(f: &Finding, reference: bool) -> String {
    let o = if reference { &f.reference } else { &f.candidate };
    format!("stop: {}\n{}\n", o.stop, o.state)
}

/// Writes the reproducer under `out/dir_name(seed, index)` and returns the directory.
pub fn write(
    out: &Path,
    seed: u64,
    index: u64,
    original: &Program,
    m: &Minimised,
) -> std::io::Result<PathBuf> {
    let dir = out.join(dir_name(seed, index));
    std::fs::create_dir_all(&dir)?;
    let asm = m.program.assemble().map_err(|e| std::io::Error::other(e.to_string()))?;
    let bin = dir.join("program.bin");
    std::fs::write(&bin, &asm.image)?;
    std::fs::write(dir.join("program.asm"), m.program.listing(&asm))?;
    if let Ok(orig) = original.assemble() {
        std::fs::write(dir.join("original.asm"), original.listing(&orig))?;
        std::fs::write(dir.join("original.bin"), &orig.image)?;
    }
    std::fs::write(dir.join("kvm.txt"), state_text(&m.finding, true))?;
    std::fs::write(dir.join("interp.txt"), state_text(&m.finding, false))?;
    let cmd = replay_command(&bin, m.finding.lockstep);
    let mut readme = String::new();
    let _ = writeln!(readme, "picoqemu fuzz divergence: seed {seed}, program {index}");
    let _ = writeln!(
        readme,
        "minimised from {} to {} body instructions in {} test runs",
        original.insn_count(),
        m.program.insn_count(),
        m.tests
    );
    let _ = writeln!(readme, "\nreplay:\n  {cmd}\n  {}\n", replay_command(&bin, !m.finding.lockstep));
    let _ = writeln!(readme, "report:\n{}", m.finding.report);
    std::fs::write(dir.join("README.txt"), readme)?;
    Ok(dir)
}
