//! Device models. Each is a plain state machine (`read(offset)`, `write(offset, value)`)
//! that knows nothing about the CPU driving it; the [`crate::IoBus`] routes accesses to them.
pub mod debug_exit;
pub mod debugcon;
pub mod mmio_console;
pub mod sink;
pub mod uart;
pub mod vga;

pub use debug_exit::DebugExit;
pub use debugcon::DebugCon;
pub use mmio_console::MmioConsole;
pub use sink::Sink;
pub use uart::Uart16550;
pub use vga::VgaText;
