//! The command-line interface: argument parsing (clap derive), backend selection, running a
//! guest image and turning the [`StopReason`] into output and a process exit status.
//!
//! `picoqemu` with no command runs the built-in copy of the article's program on the best
//! backend and prints the screen; `picoqemu run IMAGE` runs a file. Exit statuses: 0 halted,
//! `(v << 1) | 1` debug exit, 2 bad usage or bad image, 3 guest fault, 4 budget or timeout,
//! 5 host error. Every error line on stderr starts with `picoqemu:`.
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use picoqemu_core::devices::mmio_console::MMIO_CONSOLE_SIZE;
use picoqemu_core::devices::sink::{Sink, SinkTarget};
use picoqemu_core::devices::vga::{SCREEN_BYTES, TEXT_BASE};
use picoqemu_core::devices::MmioConsole;
use picoqemu_core::loader::{BOOT_SIZE, MAX_ROM_SIZE};
use picoqemu_core::ram::MAX_MEM_SIZE;
use picoqemu_core::{
    load_image, Backend, CoreError, ImageKind, IoBus, LoadError, Machine, MachineConfig, RunLimits,
    StopReason, DEFAULT_MEM_SIZE, MIN_MEM_SIZE,
};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::KvmBackend;
use thiserror::Error;

use crate::guests::{self, GuestError};

/// Exit status: the guest halted.
pub const EXIT_HALTED: i32 = 0;
/// Exit status: bad usage or a bad image.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the guest faulted (triple fault, unsupported instruction, emulation failure).
pub const EXIT_GUEST_FAULT: i32 = 3;
/// Exit status: the instruction budget or the timeout ran out.
pub const EXIT_LIMIT: i32 = 4;
/// Exit status: the host failed.
pub const EXIT_HOST: i32 = 5;

/// picoqemu: an x86 real-mode machine with two CPUs, KVM and an interpreter.
///
/// With no command, runs the built-in copy of the article's "Hello World!" program (raw
/// layout) and prints the screen; the machine options below apply to it.
#[derive(Debug, Parser)]
#[command(name = "picoqemu", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for the built-in demo (when no command is given).
    #[command(flatten)]
    pub demo: MachineArgs,
}

/// Declares the subcommands: one line per command (after its `///` help text),
/// `Variant(ArgsType) => run_function,` where `run_function(args) -> Result<i32, CliError>`
/// returns the process exit status (a closure adapts other signatures, e.g.
/// `Sst(crate::sst::SstArgs) => |a| crate::sst::run(&a).map_err(CliError::from),`).
macro_rules! commands {
    ($( $(#[$meta:meta])* $variant:ident($args:ty) => $run:expr, )*) => {
        /// A picoqemu command.
        #[derive(Debug, Subcommand)]
        pub enum Command {
            $( $(#[$meta])* $variant($args), )*
        }

        impl Command {
            /// Runs the command and returns the process exit status.
            pub fn execute(self) -> Result<i32, CliError> {
                match self {
                    $( Command::$variant(args) => ($run)(args), )*
                }
            }
        }
    };
}

commands! {
    /// Run a guest image (a 512-byte boot sector by default) until it stops.
    Run(RunArgs) => run_command,
    /// Run SingleStepTests (MOO / MOO.gz files) on a backend and compare with real silicon.
    Sst(crate::sst::SstArgs) => |a: crate::sst::SstArgs| crate::sst::run(&a).map_err(CliError::usage_from),
    /// Run one image on both KVM and the interpreter and report where they diverge.
    Diff(crate::diff::DiffArgs) => |a: crate::diff::DiffArgs| crate::diff::run(&a).map_err(CliError::usage_from),
    /// Generate random real-mode programs, run each on both CPUs and minimise divergences.
    Fuzz(crate::fuzz::FuzzArgs) => |a: crate::fuzz::FuzzArgs| crate::fuzz::run(&a).map_err(CliError::usage_from),
}

/// Which CPU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// The host's KVM.
    Kvm,
    /// picoqemu's software interpreter.
    Interp,
    /// KVM when /dev/kvm works, otherwise the interpreter (with one line on stderr saying why).
    Auto,
}

/// When the interpreter compiles hot loops to host code (its compiled-block tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum JitChoice {
    /// Never: every instruction is interpreted.
    Off,
    /// Loops that started 64 times (the default).
    #[default]
    Hot,
    /// Every eligible loop, the first time it runs (for testing the tier).
    Eager,
}

impl From<JitChoice> for JitMode {
    fn from(c: JitChoice) -> JitMode {
        match c {
            JitChoice::Off => JitMode::Off,
            JitChoice::Hot => JitMode::Hot,
            JitChoice::Eager => JitMode::Eager,
        }
    }
}

/// When and how to print the VGA text screen at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScreenMode {
    /// Print the screen as text if the guest wrote to the text buffer.
    Auto,
    /// Always print the screen as text (trailing blanks trimmed).
    Text,
    /// Always print all 25 rows with ANSI colours.
    Ansi,
    /// Never print the screen.
    None,
}

/// Options that describe the machine and the run, shared by `run` and the built-in demo.
#[derive(Debug, Clone, Args)]
pub struct MachineArgs {
    /// CPU backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Interpreter only: when hot loops are compiled to host code (x86-64 Linux hosts).
    #[arg(long, value_enum, default_value_t = JitChoice::Hot)]
    pub jit: JitChoice,
    /// Guest RAM size: bytes, or with a K/M/G suffix (e.g. 2M, 1088K). At least 1088K.
    #[arg(long, value_name = "SIZE", default_value = "2M", value_parser = parse_size)]
    pub mem: usize,
    /// When to print the VGA text screen at the end.
    #[arg(long, value_enum, default_value_t = ScreenMode::Auto)]
    pub screen: ScreenMode,
    /// Wall-clock limit, e.g. 1s, 500ms, 2m (exit status 4 when reached).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Instruction budget (exit status 4 when exhausted).
    #[arg(long, value_name = "N")]
    pub max_instructions: Option<u64>,
    /// Print the final registers.
    #[arg(long)]
    pub regs: bool,
    /// Wrap addresses at 1 MiB like an 8086 (A20 gate disabled).
    #[arg(long)]
    pub a20_wrap: bool,
    /// Map the MMIO console (a byte stored at offset 0 is printed on stdout) at this
    /// 4 KiB-aligned guest-physical address, e.g. 0xd0000.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub mmio_console: Option<u64>,
}

impl Default for MachineArgs {
    fn default() -> Self {
        MachineArgs {
            backend: BackendChoice::Auto,
            jit: JitChoice::Hot,
            mem: DEFAULT_MEM_SIZE,
            screen: ScreenMode::Auto,
            timeout: None,
            max_instructions: None,
            regs: false,
            a20_wrap: false,
            mmio_console: None,
        }
    }
}

/// `picoqemu run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// The article's layout: any file up to the RAM size at physical 0, started at 0000:0000.
    #[arg(long, conflicts_with = "rom")]
    pub raw: bool,
    /// A ROM of 16 bytes to 64 KiB placed to end at 0xFFFFF, started at F000:FFF0.
    #[arg(long)]
    pub rom: bool,
    /// Run a guest built into picoqemu instead of a file: hello, serial-hello, jmp-self,
    /// vmcall, daa, mmio-hello.
    #[arg(long, value_name = "NAME", conflicts_with = "image", value_parser = parse_builtin)]
    pub builtin: Option<&'static guests::Builtin>,
    /// The image file (a 512-byte boot sector ending 0x55 0xAA unless --raw or --rom).
    #[arg(value_name = "IMAGE", required_unless_present = "builtin")]
    pub image: Option<PathBuf>,
}

/// What went wrong before or around a run (guest events are [`StopReason`]s instead).
#[derive(Debug, Error)]
pub enum CliError {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// The image file cannot be read.
    #[error("cannot read the image '{path}': {reason}; check the path and its permissions")]
    ReadImage { path: PathBuf, reason: String },
    /// The image is not valid for the chosen layout.
    #[error("bad image '{path}': {source}")]
    BadImage {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    /// `--backend kvm` was requested but KVM cannot be used.
    #[error("KVM is unavailable: {0}; use --backend interp (or auto) to run on the interpreter")]
    KvmUnavailable(String),
    /// The machine could not be built.
    #[error("{0}")]
    Machine(#[from] CoreError),
    /// A built-in guest could not be assembled.
    #[error("building the built-in guest failed: {0}")]
    Guest(#[from] GuestError),
    /// The host failed.
    #[error("host error: {0}")]
    Host(String),
    /// Another command failed; `message` says why and what to do, `status` is the exit status.
    #[error("{message}")]
    Failed { status: i32, message: String },
}

impl CliError {
    /// A command's bad input (unreadable or corrupt files, bad options): exit status 2.
    fn usage_from(e: anyhow::Error) -> Self {
        CliError::Failed { status: EXIT_USAGE, message: format!("{e:#}") }
    }

    /// The process exit status for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::ReadImage { .. } | CliError::BadImage { .. } => EXIT_USAGE,
            CliError::KvmUnavailable(_) => EXIT_USAGE,
            CliError::Machine(CoreError::BadMemSize { .. } | CoreError::BadMmioRegion { .. }) => EXIT_USAGE,
            CliError::Machine(_) | CliError::Guest(_) | CliError::Host(_) => EXIT_HOST,
            CliError::Failed { status, .. } => *status,
        }
    }
}

/// Parses `std::env::args_os()`, runs and returns the process exit status.
pub fn main() -> i32 {
    main_with_args(std::env::args_os())
}

/// Parses `args` (the first is the program name), runs and returns the process exit status.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return report_clap_error(&e),
    };
    let result = match cli.command {
        Some(command) => command.execute(),
        None => run_demo(cli.demo),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            report(&format!("picoqemu: {e}\n"));
            e.exit_status()
        }
    }
}

/// Prints a clap error (usage errors prefixed `picoqemu:`) and returns its exit status
/// (2 for usage errors, 0 for `--help`/`--version`).
fn report_clap_error(e: &clap::Error) -> i32 {
    if e.use_stderr() {
        let text = e.render().to_string();
        let text = text.strip_prefix("error: ").unwrap_or(&text);
        report(&format!("picoqemu: {text}"));
    } else {
        let _ = e.print();
    }
    e.exit_code()
}

/// Runs the built-in article program on the demo options.
fn run_demo(machine: MachineArgs) -> Result<i32, CliError> {
    let image = guests::hello()?;
    let source = ImageSource::Builtin("hello");
    run_image(&machine, &image, ImageKind::Raw, &source)
}

/// `picoqemu run`.
pub fn run_command(args: RunArgs) -> Result<i32, CliError> {
    let mut kind = if args.raw {
        ImageKind::Raw
    } else if args.rom {
        ImageKind::Rom
    } else {
        ImageKind::Boot
    };
    let (image, source) = match (&args.builtin, &args.image) {
        (Some(b), _) => {
            if b.raw && !args.rom {
                kind = ImageKind::Raw;
            }
            (b.image()?, ImageSource::Builtin(b.name))
        }
        (None, Some(path)) => {
            let limit = match kind {
                ImageKind::Boot => BOOT_SIZE,
                ImageKind::Rom => MAX_ROM_SIZE,
                ImageKind::Raw => args.machine.mem,
            };
            (read_image(path, kind, limit)?, ImageSource::File(path.clone()))
        }
        (None, None) => return Err(CliError::Usage("no IMAGE given; see picoqemu run --help".into())),
    };
    run_image(&args.machine, &image, kind, &source)
}

/// Where an image came from, for messages.
#[derive(Debug, Clone)]
enum ImageSource {
    File(PathBuf),
    Builtin(&'static str),
}

impl ImageSource {
    fn path(&self) -> PathBuf {
        match self {
            ImageSource::File(p) => p.clone(),
            ImageSource::Builtin(name) => PathBuf::from(format!("builtin:{name}")),
        }
    }
}

/// Reads at most `limit` bytes of `path`; longer files are rejected with the loader's message
/// without reading them whole (so `/dev/zero` or a huge file cannot exhaust host memory).
fn read_image(path: &Path, kind: ImageKind, limit: usize) -> Result<Vec<u8>, CliError> {
    let read_err = |reason: String| CliError::ReadImage { path: path.to_path_buf(), reason };
    let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
    if meta.is_dir() {
        return Err(read_err("it is a directory, not an image file".into()));
    }
    let too_long = |len: usize| {
        let source = match kind {
            ImageKind::Boot => LoadError::BootSize(len),
            ImageKind::Rom => LoadError::RomSize(len),
            ImageKind::Raw => LoadError::TooLarge { len, max: limit },
        };
        CliError::BadImage { path: path.to_path_buf(), source }
    };
    if meta.is_file() && meta.len() > limit as u64 {
        return Err(too_long(usize::try_from(meta.len()).unwrap_or(usize::MAX)));
    }
    let file = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
    let mut image = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut image).map_err(|e| read_err(e.to_string()))?;
    if image.len() > limit {
        return Err(too_long(image.len()));
    }
    Ok(image)
}

/// Creates the backend `choice` asks for.
pub fn select_backend(
    choice: BackendChoice,
    jit: JitChoice,
    machine: &Machine,
) -> Result<Box<dyn Backend>, CliError> {
    match choice {
        BackendChoice::Interp => Ok(Box::new(InterpBackend::new().with_jit(jit.into()))),
        BackendChoice::Kvm => {
            KvmBackend::probe().map_err(|e| CliError::KvmUnavailable(e.to_string()))?;
            let kvm = KvmBackend::new(machine).map_err(|e| CliError::KvmUnavailable(e.to_string()))?;
            Ok(Box::new(kvm))
        }
        BackendChoice::Auto => match KvmBackend::probe().and_then(|_| KvmBackend::new(machine)) {
            Ok(kvm) => Ok(Box::new(kvm)),
            Err(e) => {
                report(&format!("picoqemu: KVM unavailable ({e}); using the interpreter\n"));
                Ok(Box::new(InterpBackend::new().with_jit(jit.into())))
            }
        },
    }
}

/// Builds the machine for `opts` with COM1 on stdout and port 0xE9 on stderr.
pub fn build_machine(opts: &MachineArgs) -> Result<Machine, CliError> {
    let mut bus = IoBus::new(Sink::new(SinkTarget::Stdout), Sink::new(SinkTarget::Stderr));
    if let Some(base) = opts.mmio_console {
        check_mmio_console(base)?;
        bus.mmio_console = Some(MmioConsole::new(base, Sink::new(SinkTarget::Stdout)));
    }
    let config = MachineConfig { mem_size: opts.mem, a20_wrap: opts.a20_wrap, ..MachineConfig::default() };
    Ok(Machine::new(config, bus)?)
}

fn check_mmio_console(base: u64) -> Result<(), CliError> {
    if !base.is_multiple_of(MMIO_CONSOLE_SIZE) || base.saturating_add(MMIO_CONSOLE_SIZE) > 1 << 32 {
        return Err(CliError::Usage(format!(
            "--mmio-console {base:#x} must be a 4 KiB-aligned address below 4 GiB (e.g. 0xd0000)"
        )));
    }
    let text = (TEXT_BASE as u64)..(TEXT_BASE + SCREEN_BYTES) as u64;
    if base < text.end && text.start < base.saturating_add(MMIO_CONSOLE_SIZE) {
        return Err(CliError::Usage(format!(
            "--mmio-console {base:#x} would cover the VGA text buffer at {:#x}; pick another address (e.g. 0xd0000)",
            TEXT_BASE
        )));
    }
    Ok(())
}

/// Loads `image`, runs it on the chosen backend, prints the results and returns the exit status.
fn run_image(
    opts: &MachineArgs,
    image: &[u8],
    kind: ImageKind,
    source: &ImageSource,
) -> Result<i32, CliError> {
    let mut machine = build_machine(opts)?;
    let start = load_image(&mut machine, image, kind)
        .map_err(|source_err| CliError::BadImage { path: source.path(), source: source_err })?;
    let mut backend = select_backend(opts.backend, opts.jit, &machine)?;
    backend.set_state(&start).map_err(|e| CliError::Host(e.to_string()))?;
    let limits = RunLimits { max_instructions: opts.max_instructions, timeout: opts.timeout };
    let stop = backend.run(&mut machine, limits).unwrap_or_else(picoqemu_core::StopReason::from);
    machine.bus_mut().flush();

    let mut out = String::new();
    match opts.screen {
        ScreenMode::Auto if machine.screen_written() => out.push_str(&machine.screen_text()),
        ScreenMode::Auto | ScreenMode::None => {}
        ScreenMode::Text => out.push_str(&machine.screen_text()),
        ScreenMode::Ansi => out.push_str(&machine.screen_ansi()),
    }
    let state = backend.state();
    if opts.regs {
        match &state {
            Ok(s) => push_line(&mut out, &s.to_string()),
            Err(e) => report(&format!("picoqemu: cannot read the final registers: {e}\n")),
        }
    }
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush());
    }

    match &stop {
        StopReason::Halted | StopReason::DebugExit(_) | StopReason::StepDone => {}
        other => {
            let mut msg = format!("picoqemu: {} backend: {}", backend.name(), describe_stop(other, opts));
            if let StopReason::Unsupported { cs, ip, bytes }
            | StopReason::EmulationFailure { cs, ip, bytes } = other
            {
                let (len, text) = decode_one(*ip, bytes.as_slice());
                let shown: Vec<String> = bytes.as_slice()[..len.max(1).min(bytes.as_slice().len())]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let _ = write!(msg, "\n  {cs:04x}:{ip:04x}  {:<20} {text}", shown.join(" "));
            }
            msg.push('\n');
            if !opts.regs {
                match &state {
                    Ok(s) => push_line(&mut msg, &s.to_string()),
                    Err(e) => {
                        let _ = writeln!(msg, "(registers unavailable: {e})");
                    }
                }
            }
            report(&msg);
        }
    }
    Ok(stop.exit_status())
}

/// One line naming the stop and what to do about it.
fn describe_stop(stop: &StopReason, opts: &MachineArgs) -> String {
    match stop {
        StopReason::BudgetExhausted => format!(
            "instruction budget exhausted after {} instructions; raise --max-instructions if the guest needs more",
            opts.max_instructions.unwrap_or(0)
        ),
        StopReason::Timeout => format!(
            "timeout: the guest was still running after {}; raise --timeout if it needs longer",
            opts.timeout.map(|d| format!("{d:?}")).unwrap_or_else(|| "the deadline".into())
        ),
        StopReason::TripleFault => {
            "triple fault (CPU shutdown): the guest raised an exception it could not handle".into()
        }
        StopReason::Unsupported { .. } => {
            format!("{stop}; the interpreter does not implement it, try --backend kvm")
        }
        StopReason::EmulationFailure { .. } => {
            format!("{stop}; KVM's instruction emulator on this host cannot run it, try --backend interp")
        }
        StopReason::HostError(_) => format!("{stop}"),
        StopReason::Halted
        | StopReason::DebugExit(_)
        | StopReason::StepDone
        | StopReason::Breakpoint { .. }
        | StopReason::Interrupted => stop.to_string(),
    }
}

/// Writes `text` to stderr. Unlike `eprint!`, a closed or broken stderr is not a panic.
fn report(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|_| stderr.flush());
}

/// Appends `text` and a newline unless it already ends with one.
fn push_line(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
}

/// Disassembles the first instruction of `bytes` at `ip` (16-bit code, Intel syntax).
pub fn disassemble(ip: u32, bytes: &[u8]) -> String {
    decode_one(ip, bytes).1
}

/// Decodes the first instruction of `bytes`: its length (0 when undecodable) and its text.
fn decode_one(ip: u32, bytes: &[u8]) -> (usize, String) {
    if bytes.is_empty() {
        return (0, "(no instruction bytes: CS:IP is outside guest RAM)".into());
    }
    let mut decoder = Decoder::with_ip(16, bytes, u64::from(ip), DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return (0, "(not a valid instruction)".into());
    }
    let mut text = String::new();
    let mut formatter = IntelFormatter::new();
    formatter.options_mut().set_space_after_operand_separator(true);
    formatter.format(&insn, &mut text);
    (insn.len(), text)
}

/// Parses a memory size: bytes, or a number with a K, M or G suffix (binary units; an
/// optional trailing `B` or `iB` is accepted). The result must be a multiple of 4 KiB between
/// 1088 KiB and 1 GiB.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (digits, mult) = match body.char_indices().last() {
        Some((i, 'k')) => (&body[..i], 1usize << 10),
        Some((i, 'm')) => (&body[..i], 1 << 20),
        Some((i, 'g')) => (&body[..i], 1 << 30),
        _ => (body, 1),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size; write bytes or use K/M/G, e.g. 2M or 1088K"))?;
    let size = n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))?;
    if !(MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&size) {
        return Err(format!("guest RAM must be between {}K and {}M", MIN_MEM_SIZE >> 10, MAX_MEM_SIZE >> 20));
    }
    if size % 4096 != 0 {
        return Err("guest RAM must be a multiple of 4K".into());
    }
    Ok(size)
}

/// Parses a duration: a number with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`); a bare number is
/// seconds. Fractions are allowed (`1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("'{s}' is not a duration; write e.g. 1s, 500ms or 2m");
    let nanos: u64 = match unit.trim() {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "us" | "µs" => 1_000,
        "ns" => 1,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    // Whole numbers exactly (in floating point, 73709551615ms lost 5 ns: found by fuzzing).
    if let Ok(n) = num.parse::<u64>() {
        let total = u128::from(n) * u128::from(nanos);
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| format!("'{s}' is too long"))?;
        return Ok(Duration::new(secs, (total % 1_000_000_000) as u32));
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let secs = value * (nanos as f64 / 1e9);
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is too long"))
}

/// Parses a guest-physical address: decimal, or hexadecimal with `0x` (an `h` suffix works too).
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase().replace('_', "");
    let parsed = if let Some(h) = t.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else if let Some(h) = t.strip_suffix('h') {
        u64::from_str_radix(h, 16)
    } else {
        t.parse()
    };
    parsed.map_err(|_| format!("'{s}' is not an address; write e.g. 0xd0000"))
}

fn parse_builtin(s: &str) -> Result<&'static guests::Builtin, String> {
    guests::builtin(s).ok_or_else(|| {
        let names: Vec<&str> = guests::BUILTINS.iter().map(|b| b.name).collect();
        format!("no built-in guest '{s}'; choose one of: {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1088K"), Ok(1088 << 10));
        assert_eq!(parse_size("2097152"), Ok(2 << 20));
        assert_eq!(parse_size("4mib"), Ok(4 << 20));
        assert!(parse_size("1M").is_err());
        assert!(parse_size("2X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("2000001").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("2G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1parsec").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("0xd0000"), Ok(0xD0000));
        assert_eq!(parse_addr("D0000h"), Ok(0xD0000));
        assert_eq!(parse_addr("851968"), Ok(0xD0000));
        assert!(parse_addr("zz").is_err());
    }

    #[test]
    fn mmio_console_placement() {
        assert!(check_mmio_console(0xD0000).is_ok());
        assert!(check_mmio_console(0xD0010).is_err());
        assert!(check_mmio_console(0xB8000).is_err());
        assert!(check_mmio_console(1 << 32).is_err());
        assert!(check_mmio_console(u64::MAX - 0xFFF).is_err());
    }

    #[test]
    fn disassembly() {
        assert_eq!(disassemble(0x7C00, &[0x0F, 0x01, 0xC1]), "vmcall");
        assert_eq!(disassemble(0, &[0x27]), "daa");
        assert_eq!(disassemble(0, &[]), "(no instruction bytes: CS:IP is outside guest RAM)");
        assert_eq!(disassemble(0, &[0x0F, 0xFF]), "(not a valid instruction)");
    }

    #[test]
    fn error_statuses() {
        assert_eq!(CliError::Usage("x".into()).exit_status(), 2);
        assert_eq!(CliError::KvmUnavailable("x".into()).exit_status(), 2);
        assert_eq!(CliError::Host("x".into()).exit_status(), 5);
        let e = CliError::BadImage { path: "a".into(), source: LoadError::Empty };
        assert_eq!(e.exit_status(), 2);
        assert_eq!(e.to_string(), "bad image 'a': the image is empty");
    }
}
