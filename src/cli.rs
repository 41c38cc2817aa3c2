//! The command-line interface: argument parsing (clap derive), backend selection, running a
//! guest image and turning the [`StopReason`](picoqemu_core::StopReason) into output and a process exit status.
//!
//! `picoqemu` with no command runs the built-in copy of the article's program on the best
//! backend and prints the screen; `picoqemu run IMAGE` runs a file. Exit statuses: 0 halted,
//! `(v << 1) | 1` debug exit, 2 bad usage or bad image, 3 guest fault, 4 budget or timeout,
//! 5 host error (also: the guest's output could not be written), 130 stopped by Ctrl-C.
//! Every error line on stderr starts with `picoqemu:`. Options shared with the other commands
//! are in [`crate::options`]; machines and backends come from [`crate::backends`].
use std::io::{self, IsTerminal, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use picoqemu_core::devices::sink::{Sink, SinkTarget};
use picoqemu_core::loader::{BOOT_SIZE, MAX_ROM_SIZE};
use picoqemu_core::{BackendError, CoreError, CpuState, ImageKind, IoBus, LoadError, Machine};
use thiserror::Error;

use crate::backends::{self, BuildError, KvmUnavailable};
use crate::guests::{self, GuestError};
pub use crate::inspect::report::disassemble;
use crate::inspect::report::push_line;
pub(crate) use crate::inspect::report::report;
use crate::options::{BackendChoice, CpuOpts, LimitOpts, MachineOpts};
use crate::signals;

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
/// Exit status: stopped by Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

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

/// When and how to print the VGA text screen at the end of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ScreenMode {
    /// Print the screen as text if the guest wrote to the text buffer.
    #[default]
    Auto,
    /// Always print the screen as text (trailing blanks trimmed).
    Text,
    /// Always print all 25 rows with ANSI colours.
    Ansi,
    /// Never print the screen.
    None,
}

/// Options that describe the machine and the run, shared by `run` and the built-in demo.
#[derive(Debug, Clone, Default, Args)]
pub struct MachineArgs {
    #[command(flatten)]
    pub cpu: CpuOpts,
    #[command(flatten)]
    pub machine: MachineOpts,
    #[command(flatten)]
    pub limits: LimitOpts,
    #[command(flatten)]
    pub state: crate::state::StateOpts,
    #[command(flatten)]
    pub inspect: crate::inspect::InspectOpts,
    #[command(flatten)]
    pub gdb: crate::gdb::GdbOpts,
    /// When to print the VGA text screen at the end.
    #[arg(long, value_enum, default_value_t = ScreenMode::Auto)]
    pub screen: ScreenMode,
    /// Print the final registers.
    #[arg(long)]
    pub regs: bool,
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

/// What went wrong before or around a run (guest events are [`StopReason`](picoqemu_core::StopReason)s instead).
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
    KvmUnavailable(#[from] KvmUnavailable),
    /// Output could not be written (a full disk, a closed pipe): the message names which.
    #[error("cannot write {0}; the guest's output is incomplete")]
    Output(String),
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
            CliError::Machine(
                CoreError::BadMemSize { .. } | CoreError::BadMmioRegion { .. } | CoreError::Bus(_),
            ) => EXIT_USAGE,
            CliError::Machine(_) | CliError::Guest(_) | CliError::Host(_) | CliError::Output(_) => EXIT_HOST,
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
                ImageKind::Raw => args.machine.machine.mem,
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

/// Builds the machine for `opts` (COM1 and the MMIO console on stdout, port 0xE9 on stderr)
/// and loads `image` into it.
fn load(
    opts: &MachineArgs,
    image: &[u8],
    kind: ImageKind,
    source: &ImageSource,
) -> Result<(Machine, CpuState), CliError> {
    let bus = IoBus::new(Sink::new(SinkTarget::Stdout), Sink::new(SinkTarget::Stderr));
    backends::machine(&opts.machine, bus, Sink::new(SinkTarget::Stdout), image, kind).map_err(|e| match e {
        BuildError::Load(source_err) => CliError::BadImage { path: source.path(), source: source_err },
        BuildError::Machine(e) => CliError::Machine(e),
        BuildError::Placement(m) => CliError::Usage(m),
    })
}

/// Loads `image`, runs it on the chosen backend, prints the results and returns the exit status.
fn run_image(
    opts: &MachineArgs,
    image: &[u8],
    kind: ImageKind,
    source: &ImageSource,
) -> Result<i32, CliError> {
    let (mut machine, start) = load(opts, image, kind, source)?;
    let choice = opts.cpu.backend_or(BackendChoice::Auto);
    let mut backend = backends::select(choice, opts.cpu.jit.jit.into(), &machine)?;
    backend.set_state(&start).map_err(|e| CliError::Host(e.to_string()))?;
    opts.state.load_into(&mut machine, backend.as_mut())?;
    signals::install_sigint_handler()
        .map_err(|e| CliError::Host(format!("installing the Ctrl-C handler: {e}")))?;
    let mut session = opts.inspect.start(backend.as_mut())?;
    let progress = Progress::start(backend.name());
    let gdb = &opts.gdb;
    let stop =
        session.run(backend.as_mut(), &mut machine, opts.limits.limits(None), |b, m, l| gdb.run(m, b, l));
    drop(progress);
    machine.bus_mut().flush();
    let stop = stop?;
    opts.state.save_at_stop(&machine, backend.as_mut(), &stop)?;

    let state = backend.state();
    let written = print_results(opts, &machine, &state);
    session.finish(&stop, backend.as_ref(), &machine, &state, (&opts.limits, opts.regs));
    if let Some(e) = machine.bus().output_error() {
        return Err(CliError::Output(e));
    }
    written.map_err(|e| CliError::Output(format!("the screen and registers to stdout: {e}")))?;
    Ok(stop.exit_status())
}

/// Prints the screen and (with `--regs`) the registers on stdout.
fn print_results(
    opts: &MachineArgs,
    machine: &Machine,
    state: &Result<CpuState, BackendError>,
) -> io::Result<()> {
    let mut out = String::new();
    match opts.screen {
        ScreenMode::Auto if machine.screen_written() => out.push_str(&machine.screen_text()),
        ScreenMode::Auto | ScreenMode::None => {}
        ScreenMode::Text => out.push_str(&machine.screen_text()),
        ScreenMode::Ansi => out.push_str(&machine.screen_ansi()),
    }
    if opts.regs {
        match state {
            Ok(s) => push_line(&mut out, &s.to_string()),
            Err(e) => report(&format!("picoqemu: cannot read the final registers: {e}\n")),
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    let mut stdout = io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush())
}

/// How often a long `run` says it is still running (only when stderr is a terminal).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A thread that prints a progress line on stderr every [`PROGRESS_EVERY`] while a guest
/// runs, when stderr is a terminal; it stops when dropped.
struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(backend: &'static str) -> Option<Progress> {
        if !io::stderr().is_terminal() {
            return None;
        }
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                signals::block_sigint_on_this_thread();
                let started = Instant::now();
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(PROGRESS_EVERY) {
                    report(&progress_line(backend, started.elapsed()));
                }
            })
            .ok()?;
        Some(Progress { stop: Some(tx), thread: Some(thread) })
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The progress line after `elapsed`.
fn progress_line(backend: &str, elapsed: Duration) -> String {
    format!(
        "picoqemu: the guest is still running on {backend} after {} s (Ctrl-C stops it and prints its registers)\n",
        elapsed.as_secs()
    )
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
    fn progress_line_names_the_backend_the_time_and_ctrl_c() {
        let line = progress_line("kvm", Duration::from_millis(10_400));
        assert!(line.starts_with("picoqemu: the guest is still running on kvm after 10 s"), "{line}");
        assert!(line.contains("Ctrl-C stops it") && line.ends_with('\n'), "{line}");
    }

    #[test]
    fn error_statuses() {
        assert_eq!(CliError::Usage("x".into()).exit_status(), 2);
        let kvm = KvmUnavailable { reason: "x".into(), advice: "" };
        assert_eq!(CliError::KvmUnavailable(kvm).exit_status(), 2);
        assert_eq!(CliError::Output("stdout: full".into()).exit_status(), 5);
        assert_eq!(CliError::Host("x".into()).exit_status(), 5);
        let e = CliError::BadImage { path: "a".into(), source: LoadError::Empty };
        assert_eq!(e.exit_status(), 2);
        assert_eq!(e.to_string(), "bad image 'a': the image is empty");
    }
}
