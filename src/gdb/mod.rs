//! `--gdb ADDR:PORT` and `--gdb-wait`: the GDB remote protocol (the `gdbstub` crate) on either
//! backend. [`GdbOpts`] is flattened into the machine options of `run`; `run_image` calls
//! [`GdbOpts::run`] in place of `Backend::run`, which without `--gdb` is exactly that call.
//!
//! Semantics (QEMU's `-s` and `-S`): with `--gdb` the guest starts at once and the first GDB
//! to connect stops it wherever it is; with `--gdb-wait` picoqemu waits for GDB before the
//! first instruction. The bound address is announced on stderr
//! (`picoqemu: gdb: listening on 127.0.0.1:NNNN`; port 0 picks a free port). The session:
//! `target.rs` (registers in the i386 layout with real-mode segments, memory by linear
//! address), `breakpoints.rs` (breakpoints and watchpoints through the backend's lists, so no
//! INT3 byte is ever written into guest RAM), `monitor.rs` (`monitor regs`, `monitor x
//! SEG:OFF`, …), `event_loop.rs` (continue with GDB's Ctrl-C), `listen.rs` (the socket).
//! When the guest stops for good (a halt, the debug-exit port, a fault, a limit) GDB is told
//! the process exited or was terminated and picoqemu reports the stop as without GDB;
//! `detach` lets the guest run on to its natural stop; `kill` ends picoqemu with status 137.
mod breakpoints;
mod event_loop;
mod listen;
mod monitor;
mod regs;
mod target;

use std::net::SocketAddr;

use clap::Args;
use picoqemu_core::{Backend, Machine, RunLimits, StopReason};

use crate::cli::CliError;

/// Exit status after GDB's `kill` (128 + SIGKILL, as a shell reports a killed process).
pub const EXIT_KILLED: i32 = 137;

/// `--gdb`, `--gdb-wait`.
#[derive(Debug, Clone, Default, Args)]
pub struct GdbOpts {
    /// Serve the GDB remote protocol on ADDR:PORT (e.g. 127.0.0.1:1234; port 0 picks a free
    /// one, announced on stderr). The guest runs at once; connecting GDB stops it. GDB then
    /// owns breakpoints and stepping, so --trace, --break and --magic-break cannot be added.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with_all = ["trace", "breaks", "magic_break"])]
    pub gdb: Option<SocketAddr>,
    /// With --gdb: wait for GDB to connect before the first instruction.
    #[arg(long, requires = "gdb")]
    pub gdb_wait: bool,
}

impl GdbOpts {
    /// Runs `backend` on `machine` to its stop: directly without `--gdb`, otherwise under
    /// GDB's control. A port that cannot be bound is a usage error (status 2); GDB's `kill`
    /// is `CliError::Failed` with status [`EXIT_KILLED`].
    pub fn run(
        &self,
        machine: &mut Machine,
        backend: &mut dyn Backend,
        limits: RunLimits,
    ) -> Result<StopReason, CliError> {
        let Some(addr) = self.gdb else {
            return Ok(backend.run(machine, limits).unwrap_or_else(StopReason::from));
        };
        let listener = listen::bind(addr)?;
        let conn = if self.gdb_wait {
            listener.accept_blocking()?
        } else {
            match listener.accept_while_running(machine, backend, limits)? {
                listen::Attached::Conn(conn) => conn,
                listen::Attached::Finished(stop) => return Ok(stop),
            }
        };
        target::session(conn, machine, backend, limits)
    }
}
