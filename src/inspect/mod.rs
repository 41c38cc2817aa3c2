//! Tracing and inspection (issue 13): `--trace[=FILE]`, `--trace-syntax`, `--break`,
//! `--magic-break`, `--stats`, and the report of every stop that is not a halt or a debug
//! exit. [`InspectOpts`] is flattened into the machine options of `run` and the built-in
//! demo; `run_image` starts a [`Session`] once the backend is ready, runs the guest through
//! it and finishes it after the stop.
//!
//! Modules: `disasm` (Intel/AT&T disassembly, code bytes at CS:IP), `trace` (the stepping
//! tracer), `breaks` (`--break` addresses), `stats` (`--stats`), `report` (stop reports).
pub mod breaks;
pub mod disasm;
pub mod report;
pub mod stats;
pub mod trace;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use picoqemu_core::{Backend, BackendError, Breakpoint, CpuState, Machine, RunLimits, StopReason};

use crate::cli::{CliError, EXIT_USAGE};
use crate::options::LimitOpts;
use breaks::{parse_break, BreakAddr};
use disasm::Syntax;
use report::StopContext;
use stats::RunStats;
use trace::{TraceStops, Tracer};

/// `--trace`, `--trace-syntax`, `--break`, `--magic-break`, `--stats`.
#[derive(Debug, Clone, Default, Args)]
pub struct InspectOpts {
    /// Trace every instruction (count, CS:IP, bytes, disassembly, changed registers) to
    /// stderr, or with --trace=FILE to FILE (--trace=- for stdout). Runs by single step:
    /// slower, on KVM much slower.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub trace: Option<Option<PathBuf>>,
    /// Syntax of the trace's disassembly.
    #[arg(long, value_enum, value_name = "SYNTAX", default_value_t = Syntax::Intel, requires = "trace")]
    pub trace_syntax: Syntax,
    /// Stop before the instruction at ADDR with exit status 0 and the registers: SEG:OFF in
    /// hex (07c0:0010) or a linear address (0x7c10). Repeatable; KVM allows 4 (debug
    /// registers) unless tracing.
    #[arg(long = "break", value_name = "ADDR", value_parser = parse_break)]
    pub breaks: Vec<BreakAddr>,
    /// Stop after Bochs' magic breakpoint `xchg bx, bx` (87 DB) as after a --break. On KVM
    /// the run is then single-stepped (slower).
    #[arg(long)]
    pub magic_break: bool,
    /// After the run, print on stderr: instructions, KVM exits by reason, port/MMIO
    /// accesses by device, unknown BIOS services and the wall time.
    #[arg(long)]
    pub stats: bool,
}

/// One run under the inspection options.
pub struct Session {
    tracer: Option<Tracer>,
    stops: TraceStops,
    stats: bool,
    started: Instant,
}

/// Opens the trace output: stderr, stdout (`-`) or a file (created or truncated).
fn trace_output(target: &Option<PathBuf>) -> Result<(Box<dyn Write>, String), CliError> {
    match target {
        None => Ok((Box::new(BufWriter::new(io::stderr())), "stderr".into())),
        Some(p) if p.as_os_str() == "-" => Ok((Box::new(BufWriter::new(io::stdout())), "stdout".into())),
        Some(p) => {
            let file = File::create(p).map_err(|e| CliError::Failed {
                status: EXIT_USAGE,
                message: format!("cannot create the trace file '{}': {e}; check the path", p.display()),
            })?;
            Ok((Box::new(BufWriter::new(file)), format!("'{}'", p.display())))
        }
    }
}

impl InspectOpts {
    /// Prepares `backend`: breakpoints and the magic breakpoint (free runs), or the tracer.
    /// A backend that cannot honour them (more than 4 breakpoints on KVM) is a usage error.
    pub fn start(&self, backend: &mut dyn Backend) -> Result<Session, CliError> {
        let linear: Vec<u32> = self.breaks.iter().map(|b| b.linear).collect();
        let stops = TraceStops { breaks: linear, magic: self.magic_break };
        let tracer = match &self.trace {
            Some(target) => {
                let (out, name) = trace_output(target)?;
                let shared = target.is_none() || name == "stdout";
                Some(Tracer::new(out, name, self.trace_syntax, shared))
            }
            None => {
                let bps: Vec<Breakpoint> = self.breaks.iter().map(|b| b.breakpoint()).collect();
                let usage = |e: BackendError| CliError::Failed { status: EXIT_USAGE, message: e.to_string() };
                backend.set_breakpoints(&bps).map_err(usage)?;
                backend.set_magic_break(self.magic_break).map_err(usage)?;
                None
            }
        };
        Ok(Session { tracer, stops, stats: self.stats, started: Instant::now() })
    }
}

impl Session {
    /// Runs the guest: traced step by step, or by `untraced` (a free `run`, or one under GDB).
    pub fn run(
        &mut self,
        backend: &mut dyn Backend,
        machine: &mut Machine,
        limits: RunLimits,
        untraced: impl FnOnce(&mut dyn Backend, &mut Machine, RunLimits) -> Result<StopReason, CliError>,
    ) -> Result<StopReason, CliError> {
        self.started = Instant::now();
        match &mut self.tracer {
            None => untraced(backend, machine, limits),
            Some(t) => {
                let stop = t.run(backend, machine, limits, &self.stops);
                let flushed = t.flush();
                let stop = stop.and_then(|s| flushed.map(|_| s));
                stop.map_err(|e| CliError::Output(e.0))
            }
        }
    }

    /// After the stop: the report (see [`report::report_stop`]) and `--stats`.
    pub fn finish(
        &self,
        stop: &StopReason,
        backend: &dyn Backend,
        machine: &Machine,
        state: &Result<CpuState, BackendError>,
        (limits, regs_printed): (&LimitOpts, bool),
    ) {
        let wall = self.started.elapsed();
        let cx = StopContext {
            backend: backend.name(),
            limits,
            regs_printed,
            state,
            machine,
            history: backend.history(),
            traced: self.tracer.as_ref().map(Tracer::recent).unwrap_or_default(),
            breaks: &self.stops.breaks,
        };
        report::report_stop(stop, &cx);
        if self.stats {
            let bus = machine.bus();
            let s = RunStats {
                backend: backend.name(),
                cpu: backend.stats(),
                devices: bus.device_stats(),
                io: bus.stats(),
                bios: None,
                wall,
            };
            report::report(&stats::format_stats(&s));
        }
    }
}
