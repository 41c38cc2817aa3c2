//! Compiled-C workloads (issue 12): programs in `benches/workloads/` written in C, built with
//! `gcc -m16 -O2 -ffreestanding` into flat real-mode images that run with the raw layout
//! (loaded at physical 0, started at 0000:0000). `bios` is the BIOS-style one: hand-written
//! INT 10h/16h/1Ah handlers (16-bit addressing, INT/IRET, REP MOVSW/STOSW, REPE CMPSW) in the
//! C file's assembly, driven through software interrupts. Each checks its own results and reports
//! through the debug-exit port: [`StopReason::DebugExit`](picoqemu_core::StopReason)`(0)`
//! when every check passed.
//!
//! The benches and tests build them at run time with [`build`]; gcc and objcopy come from the
//! host (`benches/workloads/build.sh` does the same by hand).
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// The workloads, by the name of their C file (`bios`: assembly handlers inside a C driver).
pub const NAMES: [&str; 8] = ["sort", "crc", "matrix", "lists", "fsm", "vm", "strings", "bios"];

/// The gcc flags: 16-bit code for a 386 without SSE (real-mode code cannot rely on SSE being
/// enabled), freestanding, no PIC, every warning an error.
const CFLAGS: &[&str] = &[
    "-m16",
    "-march=i386",
    "-mtune=generic",
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-nostdlib",
    "-static",
    "-no-pie",
    "-Wall",
    "-Wextra",
    "-Werror",
];

/// Why a workload could not be built.
#[derive(Debug, Error)]
pub enum WorkloadError {
    /// No workload of that name.
    #[error("no workload named {0:?} (known: {known})", known = NAMES.join(", "))]
    Unknown(String),
    /// A tool could not be started (gcc or objcopy missing).
    #[error("cannot run {tool}: {reason} (the compiled-C workloads need gcc and binutils)")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Why it could not be started.
        reason: String,
    },
    /// A tool failed; its output is given.
    #[error("{tool} failed building {name}:\n{output}")]
    Failed {
        /// The program.
        tool: &'static str,
        /// The workload.
        name: String,
        /// What it printed on stderr.
        output: String,
    },
    /// Reading the built image failed.
    #[error("reading {path}: {reason}")]
    Read {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The directory holding the workload sources.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("workloads")
}

/// How much work a build of a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The benchmark size (tens of millions of instructions for the larger ones).
    Full,
    /// One round on smaller data (`-DSMALL -DROUNDS=1`): for tests on slow CPUs (KVM's
    /// instruction emulator on hosts without VT-x).
    Small,
}

/// Builds workload `name` at `size` in `out_dir` and returns its flat image.
pub fn build(name: &str, size: Size, out_dir: &Path) -> Result<Vec<u8>, WorkloadError> {
    if !NAMES.contains(&name) {
        return Err(WorkloadError::Unknown(name.to_string()));
    }
    let src = source_dir();
    let io_err = |reason: std::io::Error| WorkloadError::Read {
        path: out_dir.to_path_buf(),
        reason: reason.to_string(),
    };
    std::fs::create_dir_all(out_dir).map_err(io_err)?;
    let (tag, defines): (&str, &[&str]) = match size {
        Size::Full => ("", &[]),
        Size::Small => ("-small", &["-DSMALL", "-DROUNDS=1"]),
    };
    let elf = out_dir.join(format!("{name}{tag}.elf"));
    let bin = out_dir.join(format!("{name}{tag}.bin"));
    let mut gcc = Command::new("gcc");
    gcc.args(CFLAGS)
        .args(defines)
        .arg("-T")
        .arg(src.join("link.ld"))
        .args(["-Wl,-m,elf_i386", "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments", "-o"])
        .arg(&elf)
        .arg(src.join("start.S"))
        .arg(src.join(format!("{name}.c")))
        .arg(src.join("libc.c"));
    run_tool("gcc", name, &mut gcc)?;
    run_tool("objcopy", name, Command::new("objcopy").args(["-O", "binary"]).arg(&elf).arg(&bin))?;
    std::fs::read(&bin).map_err(|e| WorkloadError::Read { path: bin, reason: e.to_string() })
}

fn run_tool(tool: &'static str, name: &str, cmd: &mut Command) -> Result<(), WorkloadError> {
    let out = cmd.output().map_err(|e| WorkloadError::Tool { tool, reason: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    Err(WorkloadError::Failed {
        tool,
        name: name.to_string(),
        output: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
