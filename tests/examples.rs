//! The embedding example (`examples/embed.rs`) is run by `cargo test`, so the API it shows
//! keeps working: both CPUs agree on the article's program, a port hook sees the guest's
//! writes, and a guest moved between CPUs finishes like an uninterrupted run. Without KVM it
//! covers the interpreter only (and says so), unless `PICOQEMU_REQUIRE_KVM=1`.

#[allow(dead_code)]
#[path = "../examples/embed.rs"]
mod embed;

mod common;

#[test]
fn the_embedding_example_runs_and_checks_itself() {
    common::kvm_usable("the_embedding_example_runs_and_checks_itself");
    if let Err(e) = embed::main() {
        panic!("examples/embed.rs failed: {e}");
    }
}
