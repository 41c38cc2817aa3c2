//! Errors of the core crate (RAM allocation and bounds, bus configuration).
use thiserror::Error;

/// What can go wrong in the backend-neutral machine.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The requested guest RAM size is outside what we support.
    #[error("guest RAM size {size:#x} is invalid: it must be between {min:#x} and {max:#x} bytes and a multiple of 4 KiB")]
    BadMemSize {
        /// The size in bytes.
        size: usize,
        /// The smallest size accepted.
        min: usize,
        /// The largest size accepted.
        max: usize,
    },
    /// The host could not map the guest RAM.
    #[error("could not allocate {size:#x} bytes of guest RAM: {reason}")]
    RamAlloc {
        /// The size in bytes.
        size: usize,
        /// Why.
        reason: String,
    },
    /// A host-side access fell outside guest RAM.
    #[error("guest physical range {addr:#x}+{len:#x} is outside guest RAM ({size:#x} bytes)")]
    OutOfRange {
        /// The first guest-physical address.
        addr: u64,
        /// Its length in bytes.
        len: usize,
        /// Guest RAM size in bytes.
        size: usize,
    },
    /// An MMIO region overlaps another region or lies outside the 4 GiB physical space.
    #[error("MMIO region {base:#x}+{len:#x} is invalid: {reason}")]
    BadMmioRegion {
        /// The first address of the range.
        base: u64,
        /// Its length in bytes.
        len: u64,
        /// Why.
        reason: &'static str,
    },
    /// A device could not be added to the bus.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why a device could not be registered on the [`crate::IoBus`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BusError {
    /// Two devices claim the same address.
    #[error("{device} claims {space} {base:#x}+{len:#x}, which overlaps {other}'s range at {other_base:#x}")]
    Overlap {
        /// The device's name.
        device: &'static str,
        /// `"ports"` or `"MMIO"`.
        space: &'static str,
        /// The first address of the new range.
        base: u64,
        /// Its length.
        len: u64,
        /// The device already there.
        other: &'static str,
        /// Where its range starts.
        other_base: u64,
    },
    /// A claimed range is empty, wraps, or lies outside its address space (64 Ki ports, 4 GiB).
    #[error("{device} claims {space} {base:#x}+{len:#x}, which is empty or outside the address space")]
    OutOfSpace {
        /// The device's name.
        device: &'static str,
        /// `"ports"` or `"MMIO"`.
        space: &'static str,
        /// The first address of the range.
        base: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// A coalescible sub-range does not lie inside its claimed range.
    #[error(
        "{device}: coalescible offsets {start:#x}..{end:#x} are not inside its range {base:#x}+{len:#x}"
    )]
    BadCoalescible {
        /// The device's name.
        device: &'static str,
        /// The first address of the range.
        base: u64,
        /// Its length in bytes.
        len: u64,
        /// First offset of the coalescible sub-range.
        start: u64,
        /// Its end (exclusive).
        end: u64,
    },
    /// The bus holds at most 255 port ranges.
    #[error("{device}: the bus has no room for more port ranges (at most 255)")]
    TooManyRanges {
        /// The device's name.
        device: &'static str,
    },
    /// A machine has one interrupt controller.
    #[error("{device} is an interrupt controller, but {other} already is the machine's")]
    SecondInterruptController {
        /// The device's name.
        device: &'static str,
        /// The device already there.
        other: &'static str,
    },
}

/// A backend failed on the host side (not a guest event: those are [`crate::StopReason`]s).
#[derive(Debug, Error)]
#[error("{backend} backend: {source}")]
pub struct BackendError {
    /// Which backend (`"kvm"` or `"interp"`).
    pub backend: &'static str,
    #[source]
    /// What failed.
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl BackendError {
    /// A failure of `backend` caused by `source`.
    pub fn new(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        BackendError { backend, source: source.into() }
    }
}
