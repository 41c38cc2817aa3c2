//! Errors of the core crate (RAM allocation and bounds, bus configuration).
use thiserror::Error;

/// What can go wrong in the backend-neutral machine.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The requested guest RAM size is outside what we support.
    #[error("guest RAM size {size:#x} is invalid: it must be between {min:#x} and {max:#x} bytes and a multiple of 4 KiB")]
    BadMemSize { size: usize, min: usize, max: usize },
    /// The host could not map the guest RAM.
    #[error("could not allocate {size:#x} bytes of guest RAM: {reason}")]
    RamAlloc { size: usize, reason: String },
    /// A host-side access fell outside guest RAM.
    #[error("guest physical range {addr:#x}+{len:#x} is outside guest RAM ({size:#x} bytes)")]
    OutOfRange { addr: u64, len: usize, size: usize },
    /// An MMIO region overlaps another region or lies outside the 4 GiB physical space.
    #[error("MMIO region {base:#x}+{len:#x} is invalid: {reason}")]
    BadMmioRegion { base: u64, len: u64, reason: &'static str },
}

/// A backend failed on the host side (not a guest event: those are [`crate::StopReason`]s).
#[derive(Debug, Error)]
#[error("{backend} backend: {source}")]
pub struct BackendError {
    pub backend: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl BackendError {
    pub fn new(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        BackendError { backend, source: source.into() }
    }
}
