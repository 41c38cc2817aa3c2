//! The `picoqemu` binary: parses the command line and runs it (see `picoqemu::cli`), then
//! exits with the status the run produced.
fn main() {
    std::process::exit(picoqemu::cli::main());
}
