//! `--save-state FILE` / `--load-state FILE`: the command line's side of whole-machine
//! snapshots ([`picoqemu_core::snapshot`]). [`StateOpts`] is flattened into the machine
//! options of `run` and of the built-in demo; `run_image` calls [`StateOpts::load_into`] once
//! the machine and backend are built (the snapshot then replaces the loaded image's RAM, every
//! device, the clock and the CPU) and [`StateOpts::save_at_stop`] when the run has stopped.
//! A snapshot saved on one backend resumes on either.
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use picoqemu_core::snapshot::{self, format};
use picoqemu_core::{Backend, Machine, StopReason};

use crate::cli::{report, CliError, EXIT_HOST, EXIT_USAGE};

/// Bytes a snapshot may have beyond guest RAM (header, CPU, devices, a full UART input queue).
const SNAPSHOT_OVERHEAD: usize = 1 << 20;

/// `--save-state`, `--load-state`.
#[derive(Debug, Clone, Default, Args)]
pub struct StateOpts {
    /// When the run stops (for any reason but a host error), write a snapshot of the whole
    /// machine (CPU, RAM, devices, time) to FILE; resume it with --load-state on either backend.
    #[arg(long, value_name = "FILE")]
    pub save_state: Option<PathBuf>,
    /// Resume the snapshot in FILE instead of starting the image: build the machine with the
    /// same options (--mem, --a20-wrap, --mmio-console) and image or --builtin as when it was
    /// saved; any backend.
    #[arg(long, value_name = "FILE")]
    pub load_state: Option<PathBuf>,
}

fn failed(status: i32, message: String) -> CliError {
    CliError::Failed { status, message }
}

/// Reads `path`, refusing a file longer than any snapshot of `machine` could be.
fn read_snapshot(path: &Path, machine: &Machine) -> Result<Vec<u8>, CliError> {
    let cannot = |why: String| {
        failed(EXIT_USAGE, format!("cannot read the snapshot '{}': {why}; check the path", path.display()))
    };
    if path.is_dir() {
        return Err(cannot("it is a directory".into()));
    }
    let limit = machine.ram().len() + SNAPSHOT_OVERHEAD;
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|e| cannot(e.to_string()))?;
    if bytes.len() > limit && bytes.starts_with(&format::MAGIC) {
        return Err(failed(
            EXIT_USAGE,
            format!("bad snapshot '{}': it is larger than any snapshot of this machine", path.display()),
        ));
    }
    Ok(bytes)
}

impl StateOpts {
    /// With `--load-state`: loads the snapshot into `machine` and `backend` (replacing the
    /// image's start). A missing, corrupt or mismatched file is a usage error (status 2).
    pub fn load_into(&self, machine: &mut Machine, backend: &mut dyn Backend) -> Result<(), CliError> {
        let Some(path) = &self.load_state else { return Ok(()) };
        let bytes = read_snapshot(path, machine)?;
        let cpu = snapshot::restore(machine, &bytes)
            .map_err(|e| failed(EXIT_USAGE, format!("bad snapshot '{}': {e}", path.display())))?;
        backend.restore_cpu_snapshot(&cpu).map_err(|e| CliError::Host(e.to_string()))
    }

    /// With `--save-state`: writes the snapshot after a run that stopped with `stop` and says
    /// where on stderr. No snapshot after a host error (the CPU state is not trustworthy).
    pub fn save_at_stop(
        &self,
        machine: &Machine,
        backend: &mut dyn Backend,
        stop: &StopReason,
    ) -> Result<(), CliError> {
        let Some(path) = &self.save_state else { return Ok(()) };
        if let StopReason::HostError(_) = stop {
            report(&format!(
                "picoqemu: no snapshot written to '{}': the run ended with a host error\n",
                path.display()
            ));
            return Ok(());
        }
        let cpu = backend.cpu_snapshot().map_err(|e| {
            failed(EXIT_HOST, format!("cannot snapshot the machine for '{}': {e}", path.display()))
        })?;
        let bytes = snapshot::save(machine, &cpu);
        std::fs::write(path, &bytes)
            .map_err(|e| failed(EXIT_HOST, format!("cannot write the snapshot '{}': {e}", path.display())))?;
        report(&format!(
            "picoqemu: machine state saved to '{}' ({} bytes, {} backend, {})\n",
            path.display(),
            bytes.len(),
            backend.name(),
            stop
        ));
        Ok(())
    }
}
