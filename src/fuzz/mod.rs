//! `picoqemu fuzz`: random real-mode programs run on KVM and on the interpreter, compared,
//! and each divergence minimised to a small reproducer.
pub mod gen;
pub mod program;
pub mod rng;

/// Arguments of `picoqemu fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzArgs {}

/// `picoqemu fuzz`.
pub fn run(_args: &FuzzArgs) -> anyhow::Result<i32> {
    Ok(0)
}
