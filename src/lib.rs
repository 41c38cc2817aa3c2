//! picoqemu: the command-line machine. This library half holds everything the binary,
//! the integration tests and the benchmarks share: the CLI, its shared options and backend
//! factory, the guest programs built from source, and the SingleStepTests runner.
pub mod backends;
pub mod cli;
pub mod diff;
pub mod fuzz;
pub mod guests;
pub mod options;
pub mod signals;
pub mod sst;
pub mod state;
