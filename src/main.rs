//! The `picoqemu` binary: parses the command line and runs it (see `picoqemu::cli`).
fn main() {}
