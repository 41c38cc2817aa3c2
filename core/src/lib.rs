//! picoqemu-core: the backend-neutral half of the machine.
//!
//! It owns guest RAM ([`GuestRam`]), the architectural CPU state ([`CpuState`]), the port and
//! MMIO bus with its devices ([`IoBus`], [`device::Device`]), the clock, IRQ lines and
//! interrupt controller, image loaders ([`loader`]) and the [`Backend`] trait
//! that the KVM backend and the interpreter both implement. Nothing here knows about KVM or
//! about instruction decoding.
#![deny(unsafe_code)]

pub mod backend;
pub mod bus;
pub mod clock;
pub mod cpu;
pub mod device;
pub mod devices;
pub mod error;
pub mod history;
pub mod irq;
pub mod loader;
pub mod machine;
pub mod ram;
pub mod snapshot;
pub mod stop;

pub use backend::{
    Backend, BackendStats, Breakpoint, BreakpointKind, ExitCounts, Kick, RunLimits, StepInfo, WatchKind,
    Watchpoint,
};
pub use bus::{DeviceHandle, DeviceStats, IoAction, IoBus, IoStats};
pub use clock::{Clock, TimeMode};
pub use cpu::{flags, CpuState, Gpr, SegReg, Segment};
pub use device::{Claim, CoalescibleRange, Device, DeviceCtx, InterruptController, Space};
pub use error::{BackendError, BusError, CoreError};
pub use history::{History, HistoryEntry, HistoryRing, HISTORY_LEN};
pub use loader::{load_image, ImageKind, LoadError};
pub use machine::{Machine, MachineConfig, Platform};
pub use ram::{GuestRam, RamHandle};
pub use snapshot::{CpuSnapshot, InterruptShadow, SnapshotError};
pub use stop::{InsnBytes, StopReason};

/// Highest physical address a real-mode CPU with A20 enabled can reach (FFFF:FFFF).
pub const MAX_REAL_MODE_ADDR: u32 = 0x10_FFEF;
/// Smallest guest RAM we accept: 1 MiB + 64 KiB, so that FFFF:FFFF is plain RAM.
pub const MIN_MEM_SIZE: usize = 0x11_0000;
/// Default guest RAM size (2 MiB).
pub const DEFAULT_MEM_SIZE: usize = 2 << 20;
