//! Errors of the differential tester (host-side failures; guest behaviour is never an error).
use thiserror::Error;

/// What can stop a differential run before it has a verdict.
#[derive(Debug, Error)]
pub enum DiffError {
    #[error(transparent)]
    Backend(#[from] picoqemu_core::BackendError),
    #[error(transparent)]
    Core(#[from] picoqemu_core::CoreError),
    #[error("cannot load the image: {0}")]
    Load(#[from] picoqemu_core::LoadError),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(
        "KVM is not available ({0}); `diff` and `fuzz` compare KVM against the interpreter and need /dev/kvm"
    )]
    KvmUnavailable(String),
    /// The options ask for an impossible machine (e.g. an MMIO console over the image).
    #[error("{0}")]
    Usage(String),
}
