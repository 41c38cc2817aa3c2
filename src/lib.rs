//! picoqemu: the command-line machine. This library half holds everything the binary,
//! the integration tests and the benchmarks share: the CLI, the guest programs built from
//! source, and the SingleStepTests runner.
pub mod cli;
pub mod diff;
pub mod fuzz;
pub mod guests;
pub mod sst;
