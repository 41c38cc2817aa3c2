//! What a device on the [`crate::IoBus`] is: the [`Device`] trait, the address ranges it
//! [`Claim`]s, and the [`DeviceCtx`] through which it sees the machine while it handles an
//! access or an event (the clock's time, the IRQ lines, a request to stop the run).
//!
//! A device is a plain state machine that knows nothing about the CPU driving it. It declares
//! its ranges once ([`Device::claims`]); the bus calls [`Device::read`] / [`Device::write`]
//! with the claimed range's base and the offset into it. A timed device (the PIT) also
//! declares its next event deadline ([`Device::next_event_ns`]) and is called back with
//! [`Device::fire`] when the clock reaches it. The interrupt controller is a device that also
//! implements [`InterruptController`].
use std::any::Any;
use std::fmt::Debug;
use std::ops::Range;

use crate::clock::Clock;
use crate::irq::IrqLines;
use crate::snapshot::{SnapshotError, StateReader, StateWriter};
use crate::StopReason;

/// The two address spaces of the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Port I/O (IN/OUT), 64 Ki byte-wide ports.
    Pio,
    /// Memory-mapped I/O below 4 GiB (guest-physical addresses that are not RAM).
    Mmio,
}

/// A range of addresses a device claims, with how accesses to it behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub space: Space,
    pub base: u64,
    pub len: u64,
    /// Port ranges only: an access that reaches this range is handed to the device whole
    /// (the rest of the access, up to 4 bytes, even past the end of the range: one wide
    /// register such as the debug-exit port) instead of byte by byte as on the ISA bus. MMIO
    /// accesses always reach the device whole.
    pub whole: bool,
    /// Offsets (within the range) of output-only registers: a write there changes no state
    /// that an access of the CPU can observe except through a later access to this device,
    /// it never stops the run and raises no IRQ. A CPU may therefore batch such writes
    /// (KVM's coalesced MMIO/PIO ring) provided it delivers them in order before it serves
    /// any later access or ends the run.
    pub coalescible: Option<Range<u64>>,
}

impl Claim {
    /// `len` ports from `base`, accessed byte by byte.
    pub fn ports(base: u16, len: u16) -> Self {
        Claim {
            space: Space::Pio,
            base: u64::from(base),
            len: u64::from(len),
            whole: false,
            coalescible: None,
        }
    }

    /// `len` bytes of MMIO at guest-physical `base`.
    pub fn mmio(base: u64, len: u64) -> Self {
        Claim { space: Space::Mmio, base, len, whole: true, coalescible: None }
    }

    /// Accesses reach the device whole (see [`Claim::whole`]).
    pub fn whole_access(mut self) -> Self {
        self.whole = true;
        self
    }

    /// Writes to `offsets` may be coalesced (see [`Claim::coalescible`]).
    pub fn coalescible(mut self, offsets: Range<u64>) -> Self {
        self.coalescible = Some(offsets);
        self
    }
}

/// A range whose writes a CPU may coalesce, in absolute addresses (what
/// [`crate::IoBus::coalescible_ranges`] gives a backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescibleRange {
    pub space: Space,
    pub base: u64,
    pub len: u64,
}

/// The machine as a device sees it during one access or event.
#[derive(Debug)]
pub struct DeviceCtx<'a> {
    clock: &'a Clock,
    irq: &'a mut IrqLines,
    stop: Option<StopReason>,
}

impl<'a> DeviceCtx<'a> {
    /// A context on `clock` and `irq` (the bus builds one per access; device tests build
    /// their own).
    pub fn new(clock: &'a Clock, irq: &'a mut IrqLines) -> Self {
        DeviceCtx { clock, irq, stop: None }
    }

    /// Machine time in nanoseconds since power-on.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Drives IRQ `line` (0–15) high.
    pub fn raise_irq(&mut self, line: u8) {
        self.irq.raise(line);
    }

    /// Drives IRQ `line` (0–15) low.
    pub fn lower_irq(&mut self, line: u8) {
        self.irq.lower(line);
    }

    /// A rising edge on IRQ `line` that ends low again (an edge-triggered request).
    pub fn pulse_irq(&mut self, line: u8) {
        self.irq.pulse(line);
    }

    /// Ends the run with `reason` once this access completes (the debug-exit port).
    pub fn stop(&mut self, reason: StopReason) {
        self.stop = Some(reason);
    }

    /// The stop requested during this access, if any.
    pub fn take_stop(&mut self) -> Option<StopReason> {
        self.stop.take()
    }
}

/// Lets the bus hand out typed references to the devices it owns (see
/// [`crate::IoBus::device`]). Implemented for every `'static` type.
pub trait AsAny: Any {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A device on the bus.
pub trait Device: AsAny + Debug + Send {
    /// A short name for error messages ("16550 UART").
    fn name(&self) -> &'static str;

    /// The address ranges the device claims (asked once, at registration).
    fn claims(&self) -> Vec<Claim>;

    /// Reads `data.len()` bytes at `offset` into the claimed range that starts at `base`
    /// (one byte at a time for ports unless the range is [`Claim::whole`]).
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>);

    /// Writes `data` at `offset` into the claimed range that starts at `base`.
    fn write(&mut self, base: u64, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>);

    /// Whether the device keeps time ([`Device::next_event_ns`] can be `Some`). Asked once,
    /// at registration; the bus only tracks deadlines of timed devices.
    fn timed(&self) -> bool {
        false
    }

    /// Clock time (ns) of the device's next event, if one is scheduled. It may change only
    /// during an access to the device, [`Device::fire`] or [`Device::reset`].
    fn next_event_ns(&self) -> Option<u64> {
        None
    }

    /// Handles every event due at `ctx.now_ns()`; afterwards [`Device::next_event_ns`] must
    /// be later than now (or `None`).
    fn fire(&mut self, ctx: &mut DeviceCtx<'_>) {
        let _ = ctx;
    }

    /// Back to the power-on state (captured output cleared).
    fn reset(&mut self);

    /// Writes pending host output.
    fn flush(&mut self) {}

    /// Writes the device's state for a machine snapshot ([`crate::snapshot`]): everything a
    /// guest can observe later, none of its host output. The snapshot keys the state by
    /// [`Device::name`], which must therefore stay stable. A device without state writes
    /// nothing (and says so in its implementation).
    fn save(&self, out: &mut StateWriter);

    /// Loads what [`Device::save`] wrote (the reader holds exactly that payload; the bus
    /// checks that it was all read). A payload that does not fit this device (a different
    /// port or address, an impossible value) is an error, never a panic.
    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError>;

    /// The device as the machine's interrupt controller, if it is one.
    fn interrupt_controller(&mut self) -> Option<&mut dyn InterruptController> {
        None
    }
}

/// The device that turns IRQ lines into the CPU's INTR pin and answers INTA (the 8259A PIC).
pub trait InterruptController {
    /// Takes the IRQ line changes since the last call (levels and rising edges).
    fn update_lines(&mut self, lines: &mut IrqLines);

    /// Whether INTR is asserted.
    fn intr(&self) -> bool;

    /// The INTA cycle: the vector to deliver (a spurious vector when no request is left).
    fn acknowledge(&mut self) -> u8;
}

/// Serves a read of byte-wide ports: `read(port)` for each byte of `data`, starting at the port
/// `base + offset` (the bus splits wide accesses to such devices, so `data` is usually 1 byte).
pub fn read_byte_ports(base: u64, offset: u64, data: &mut [u8], mut read: impl FnMut(u16) -> u8) {
    let port = (base + offset) as u16;
    for (i, b) in data.iter_mut().enumerate() {
        *b = read(port.wrapping_add(i as u16));
    }
}

/// Serves a write to byte-wide ports: `write(port, byte)` for each byte of `data`.
pub fn write_byte_ports(base: u64, offset: u64, data: &[u8], mut write: impl FnMut(u16, u8)) {
    let port = (base + offset) as u16;
    for (i, &b) in data.iter().enumerate() {
        write(port.wrapping_add(i as u16), b);
    }
}
