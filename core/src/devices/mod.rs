//! Device models. Each is a plain state machine that knows nothing about the CPU driving it
//! and implements [`crate::device::Device`]; the [`crate::IoBus`] routes accesses to them.
//! Every machine has the VGA CRTC, COM1, the 0xE9 console, the debug-exit and POST ports;
//! the MMIO console is optional; the PIC pair and the PIT belong to the PC platform.
//! [`PortHook`] lets a program that embeds the machine hook port I/O with closures.
pub mod debug_exit;
pub mod debugcon;
pub mod mmio_console;
pub mod pic;
pub mod pit;
pub mod port_hook;
pub mod post;
pub mod sink;
pub mod uart;
pub mod vga;

pub use debug_exit::DebugExit;
pub use debugcon::DebugCon;
pub use mmio_console::MmioConsole;
pub use pic::{Pic8259, Pic8259Pair};
pub use pit::Pit8254;
pub use port_hook::PortHook;
pub use post::PostPort;
pub use sink::{CaptureDigest, Sink, CAPTURE_CAP};
pub use uart::Uart16550;
pub use vga::VgaText;
