//! The port-I/O and MMIO bus: routes every guest access, whichever CPU made it, to the
//! device that claims the address, keeps the machine's clock and services timed devices,
//! and carries the IRQ lines to the interrupt controller and INTR to the CPU.
//!
//! Devices are added by registration ([`IoBus::register`]): each declares the port and MMIO
//! ranges it claims ([`crate::device::Claim`]); overlaps are refused. Port lookup is one load
//! from a 64 Ki-entry table. Accesses wider than a byte to byte-wide ports are split into
//! consecutive byte accesses, as on the ISA bus, unless the range takes whole accesses (the
//! debug-exit port). Unclaimed ports and MMIO read as all ones and ignore writes; both are
//! counted in [`IoStats`]. Every bus has the standard devices (VGA CRTC, COM1, the 0xE9
//! console, the debug-exit port, the POST port); [`IoBus::add_pc_devices`] adds the PC's
//! 8259A pair and 8254 PIT (see [`crate::Platform`]).
mod map;
mod snapshot;

use std::marker::PhantomData;

use crate::clock::Clock;
use crate::device::{CoalescibleRange, Device, DeviceCtx};
use crate::devices::{
    DebugCon, DebugExit, MmioConsole, Pic8259Pair, Pit8254, PostPort, Sink, Uart16550, VgaText,
};
use crate::error::BusError;
use crate::irq::{InterruptQueue, IrqLines};
use crate::StopReason;
use map::AddressMap;

pub use crate::devices::post::POST_PORT;

/// What the CPU must do after an access.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum IoAction {
    Continue,
    /// The access ends the run (the debug-exit port).
    Stop(StopReason),
}

/// Counters of bus traffic (for `--stats`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IoStats {
    pub pio_reads: u64,
    pub pio_writes: u64,
    pub mmio_reads: u64,
    pub mmio_writes: u64,
    pub unclaimed_reads: u64,
    pub unclaimed_writes: u64,
}

/// Accesses one device served (`--stats`), as the device saw them: a word access to
/// byte-wide ports is two accesses, an access to unclaimed space is in [`IoStats`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceStats {
    /// The device's name ([`Device::name`]).
    pub name: &'static str,
    /// Reads (port and MMIO).
    pub reads: u64,
    /// Writes (port and MMIO).
    pub writes: u64,
}

/// A typed reference to a device registered on a bus ([`IoBus::device`]).
#[derive(Debug)]
pub struct DeviceHandle<T> {
    index: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T> DeviceHandle<T> {
    const fn at(index: usize) -> Self {
        DeviceHandle { index, _type: PhantomData }
    }
}

impl<T> Clone for DeviceHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for DeviceHandle<T> {}

/// One registered device and what the bus must know about it on every access.
#[derive(Debug)]
struct Slot {
    device: Box<dyn Device>,
    timed: bool,
    /// Accesses served (see [`DeviceStats`]).
    reads: u64,
    writes: u64,
}

/// The devices every bus has.
#[derive(Debug, Clone, Copy)]
struct Standard {
    vga: DeviceHandle<VgaText>,
    uart: DeviceHandle<Uart16550>,
    debugcon: DeviceHandle<DebugCon>,
    debug_exit: DeviceHandle<DebugExit>,
    post: DeviceHandle<PostPort>,
}

/// All devices of the machine, the routing between them, the clock and the INTR pin.
#[derive(Debug)]
pub struct IoBus {
    slots: Vec<Slot>,
    map: AddressMap,
    standard: Standard,
    /// Indices of the timed devices.
    timed: Vec<usize>,
    /// Earliest deadline of the timed devices (kept up to date after each access to one).
    next_event: Option<u64>,
    /// Index of the interrupt controller.
    intc: Option<usize>,
    /// The controller's INTR output as of the last access or event.
    intr: bool,
    lines: IrqLines,
    /// Machine time, read by timed devices and advanced by the CPU.
    clock: Clock,
    /// External interrupt requests raised by the embedder, waiting for the CPU.
    interrupts: InterruptQueue,
    /// When set, no device claims any port (see [`IoBus::ports_detached`]).
    ports_detached: bool,
    stats: IoStats,
}

impl IoBus {
    /// A bus with the standard devices: COM1 output on `serial`, debug-console output on
    /// `debugcon`.
    pub fn new(serial: Sink, debugcon: Sink) -> Self {
        // The standard handles are set right below, once the devices are registered.
        let mut bus = IoBus {
            slots: Vec::new(),
            map: AddressMap::default(),
            standard: Standard {
                vga: DeviceHandle::at(usize::MAX),
                uart: DeviceHandle::at(usize::MAX),
                debugcon: DeviceHandle::at(usize::MAX),
                debug_exit: DeviceHandle::at(usize::MAX),
                post: DeviceHandle::at(usize::MAX),
            },
            timed: Vec::new(),
            next_event: None,
            intc: None,
            intr: false,
            lines: IrqLines::default(),
            clock: Clock::default(),
            interrupts: InterruptQueue::default(),
            ports_detached: false,
            stats: IoStats::default(),
        };
        let fixed = "the standard devices' ranges are fixed and disjoint";
        bus.standard = Standard {
            vga: bus.register(VgaText::default()).expect(fixed),
            debugcon: bus.register(DebugCon::new(debugcon)).expect(fixed),
            uart: bus.register(Uart16550::new(serial)).expect(fixed),
            debug_exit: bus.register(DebugExit::default()).expect(fixed),
            post: bus.register(PostPort::default()).expect(fixed),
        };
        bus
    }

    /// A bus whose character devices only capture their output (tests, differential runs).
    pub fn capturing() -> Self {
        IoBus::new(Sink::capture(), Sink::capture())
    }

    /// A bus on which no device claims any port (see [`IoBus::ports_detached`]).
    pub fn detached() -> Self {
        IoBus { ports_detached: true, ..IoBus::capturing() }
    }

    /// When true, no device claims any port: every port read gives all ones and every port
    /// write is dropped (an open ISA bus, as the SingleStepTests suite assumes).
    pub fn ports_detached(&self) -> bool {
        self.ports_detached
    }

    /// Adds `device` with the ranges it claims. Fails, adding nothing, when a range is
    /// invalid or overlaps another device's, or when a second interrupt controller comes.
    pub fn register<D: Device>(&mut self, mut device: D) -> Result<DeviceHandle<D>, BusError> {
        let index = self.slots.len();
        let name = device.name();
        let is_intc = device.interrupt_controller().is_some();
        if let (true, Some(other)) = (is_intc, self.intc) {
            return Err(BusError::SecondInterruptController {
                device: name,
                other: self.slots[other].device.name(),
            });
        }
        let slots = &self.slots;
        self.map.add(index, name, &device.claims(), |i| slots[i].device.name())?;
        let timed = device.timed();
        self.slots.push(Slot { device: Box::new(device), timed, reads: 0, writes: 0 });
        if timed {
            self.timed.push(index);
            self.refresh_deadline();
        }
        if is_intc {
            self.intc = Some(index);
            self.sync_intc();
        }
        Ok(DeviceHandle::at(index))
    }

    /// Adds the PC's interrupt controller (8259A pair at 0x20/0xA0) and timer (8254 at
    /// 0x40–0x43 with port 0x61).
    pub fn add_pc_devices(&mut self) -> Result<(), BusError> {
        self.register(Pic8259Pair::default())?;
        self.register(Pit8254::default())?;
        Ok(())
    }

    /// The device `handle` refers to (`None` for a handle of another bus).
    pub fn device<D: Device>(&self, handle: DeviceHandle<D>) -> Option<&D> {
        self.slots.get(handle.index)?.device.as_ref().as_any().downcast_ref()
    }

    /// The device `handle` refers to, for configuration or host input.
    pub fn device_mut<D: Device>(&mut self, handle: DeviceHandle<D>) -> Option<&mut D> {
        self.slots.get_mut(handle.index)?.device.as_mut().as_any_mut().downcast_mut()
    }

    /// The first registered device of type `D`.
    pub fn find<D: Device>(&self) -> Option<&D> {
        self.slots.iter().find_map(|s| s.device.as_ref().as_any().downcast_ref())
    }

    /// The first registered device of type `D`, for configuration or host input.
    pub fn find_mut<D: Device>(&mut self) -> Option<&mut D> {
        self.slots.iter_mut().find_map(|s| s.device.as_mut().as_any_mut().downcast_mut())
    }

    fn standard<D: Device>(&self, handle: DeviceHandle<D>) -> &D {
        self.device(handle).expect("standard devices are registered by every constructor")
    }

    /// The VGA CRT controller (cursor, display start).
    pub fn vga(&self) -> &VgaText {
        self.standard(self.standard.vga)
    }

    /// COM1.
    pub fn uart(&self) -> &Uart16550 {
        self.standard(self.standard.uart)
    }

    /// COM1, for host input ([`Uart16550::push_input`]).
    pub fn uart_mut(&mut self) -> &mut Uart16550 {
        let h = self.standard.uart;
        self.device_mut(h).expect("standard devices are registered by every constructor")
    }

    /// The 0xE9 debug console.
    pub fn debugcon(&self) -> &DebugCon {
        self.standard(self.standard.debugcon)
    }

    /// The debug-exit port.
    pub fn debug_exit(&self) -> &DebugExit {
        self.standard(self.standard.debug_exit)
    }

    /// The last value written to the POST port 0x80.
    pub fn post_code(&self) -> u8 {
        self.standard(self.standard.post).code()
    }

    /// The MMIO console, if one is registered.
    pub fn mmio_console(&self) -> Option<&MmioConsole> {
        self.find()
    }

    /// Bus traffic so far.
    pub fn stats(&self) -> IoStats {
        self.stats
    }

    /// Accesses each device served so far, in registration order (the standard devices
    /// first). Allocates; the counting itself is one increment per access.
    pub fn device_stats(&self) -> Vec<DeviceStats> {
        let stats = |s: &Slot| DeviceStats { name: s.device.name(), reads: s.reads, writes: s.writes };
        self.slots.iter().map(stats).collect()
    }

    /// Reads `data.len()` (1, 2 or 4) bytes from `port`.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        self.stats.pio_reads += 1;
        if self.ports_detached {
            self.stats.unclaimed_reads += data.len() as u64;
            data.fill(0xFF);
            return;
        }
        let mut i = 0;
        while i < data.len() {
            let p = port.wrapping_add(i as u16);
            let Some(&r) = self.map.port(p) else {
                self.stats.unclaimed_reads += 1;
                data[i] = 0xFF;
                i += 1;
                continue;
            };
            let n = if r.whole { data.len() - i } else { 1 };
            self.device_read(r.device, u64::from(r.base), u64::from(p - r.base), &mut data[i..i + n]);
            i += n;
        }
    }

    /// Writes `data` (1, 2 or 4 bytes, little endian) to `port`.
    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> IoAction {
        self.stats.pio_writes += 1;
        if self.ports_detached {
            self.stats.unclaimed_writes += data.len() as u64;
            return IoAction::Continue;
        }
        let mut i = 0;
        while i < data.len() {
            let p = port.wrapping_add(i as u16);
            let Some(&r) = self.map.port(p) else {
                self.stats.unclaimed_writes += 1;
                i += 1;
                continue;
            };
            let n = if r.whole { data.len() - i } else { 1 };
            let action =
                self.device_write(r.device, u64::from(r.base), u64::from(p - r.base), &data[i..i + n]);
            if action != IoAction::Continue {
                return action;
            }
            i += n;
        }
        IoAction::Continue
    }

    /// Guest-physical ranges `(base, len)` that are MMIO, not RAM. Backends must trap
    /// accesses there (KVM: no memslot; interpreter: route to [`IoBus::mmio_read`]).
    pub fn mmio_regions(&self) -> Vec<(u64, u64)> {
        self.map.mmio_regions()
    }

    /// The ranges whose writes a CPU may coalesce, as the devices declared them (see
    /// [`crate::device::Claim::coalescible`]). Empty when ports are detached, for ports.
    pub fn coalescible_ranges(&self) -> Vec<CoalescibleRange> {
        let detached = self.ports_detached;
        self.map
            .coalescible()
            .iter()
            .filter(|r| !(detached && r.space == crate::device::Space::Pio))
            .copied()
            .collect()
    }

    /// Reads MMIO at guest-physical `addr`; unclaimed addresses read as all ones.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        self.stats.mmio_reads += 1;
        match self.map.mmio(addr).copied() {
            Some(r) => self.device_read(r.device, r.base, addr - r.base, data),
            None => {
                self.stats.unclaimed_reads += 1;
                data.fill(0xFF)
            }
        }
    }

    /// Writes MMIO at guest-physical `addr`; unclaimed writes are dropped.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> IoAction {
        self.stats.mmio_writes += 1;
        match self.map.mmio(addr).copied() {
            Some(r) => self.device_write(r.device, r.base, addr - r.base, data),
            None => {
                self.stats.unclaimed_writes += 1;
                IoAction::Continue
            }
        }
    }

    fn device_read(&mut self, index: usize, base: u64, offset: u64, data: &mut [u8]) {
        let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
        let slot = &mut self.slots[index];
        slot.reads += 1;
        slot.device.read(base, offset, data, &mut ctx);
        self.settle(index);
    }

    fn device_write(&mut self, index: usize, base: u64, offset: u64, data: &[u8]) -> IoAction {
        let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
        let slot = &mut self.slots[index];
        slot.writes += 1;
        slot.device.write(base, offset, data, &mut ctx);
        let stop = ctx.take_stop();
        self.settle(index);
        stop.map_or(IoAction::Continue, IoAction::Stop)
    }

    /// After an access to device `index`: its deadline may have moved and IRQ lines or the
    /// controller's state may have changed.
    #[inline]
    fn settle(&mut self, index: usize) {
        if self.slots[index].timed {
            self.refresh_deadline();
        }
        if self.lines.changed() || self.intc == Some(index) {
            self.sync_intc();
        }
    }

    fn refresh_deadline(&mut self) {
        let slots = &self.slots;
        self.next_event = self.timed.iter().filter_map(|&i| slots[i].device.next_event_ns()).min();
    }

    /// Hands IRQ line changes to the interrupt controller and samples its INTR output (line
    /// changes go nowhere on a machine without one).
    fn sync_intc(&mut self) {
        let ic = self.intc.and_then(|i| self.slots[i].device.interrupt_controller());
        match ic {
            Some(ic) => {
                ic.update_lines(&mut self.lines);
                self.intr = ic.intr();
            }
            None => {
                self.lines.take_rising();
                self.intr = false;
            }
        }
    }

    /// Replaces the clock (the machine sets it from its configuration).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Machine time.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Queues an external interrupt with `vector` for the CPU (an embedder's or a test's
    /// request; see [`crate::irq`]). False when too many are already waiting.
    pub fn raise_interrupt(&mut self, vector: u8) -> bool {
        self.interrupts.raise(vector)
    }

    /// True while an external interrupt request waits (the CPU's INTR pin): the interrupt
    /// controller's output or a queued request. Cheap: CPUs call it at instruction
    /// boundaries with IF=1.
    #[inline]
    pub fn interrupt_pending(&self) -> bool {
        self.intr || self.interrupts.pending()
    }

    /// The INTA cycle: the vector the CPU must deliver now, if a request still waits. The
    /// interrupt controller answers first, then the queue of raised vectors.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        if self.intr {
            if let Some(ic) = self.intc.and_then(|i| self.slots[i].device.interrupt_controller()) {
                let vector = ic.acknowledge();
                self.sync_intc();
                return Some(vector);
            }
        }
        self.interrupts.acknowledge()
    }

    /// The CPU retired `n` instructions: virtual time moves on and device events that fell
    /// due are serviced (they may raise interrupts). CPUs call it before every device
    /// access and at the event boundaries [`IoBus::instructions_until_event`] gives, so a
    /// device always sees the exact time.
    pub fn retire(&mut self, n: u64) {
        self.clock.retire(n);
        self.service_events();
    }

    /// How many instructions the CPU may retire before the next device event is due, in
    /// virtual time; `None` when no event is scheduled or time is real (then see
    /// [`IoBus::event_deadline`]).
    pub fn instructions_until_event(&self) -> Option<u64> {
        self.next_event.and_then(|d| self.clock.instructions_until(d))
    }

    /// The host instant of the next device event in real-time mode.
    pub fn event_deadline(&self) -> Option<std::time::Instant> {
        self.next_event.and_then(|d| self.clock.wall_instant(d))
    }

    /// Clock time (ns) of the next device event, if one is scheduled.
    pub fn next_event_ns(&self) -> Option<u64> {
        self.next_event
    }

    /// HLT with IF=1: in virtual time, skip to the next device event and service it. Returns
    /// false when nothing can ever wake the CPU (no pending request and no event scheduled),
    /// so the run ends with [`crate::StopReason::Halted`]. In real-time mode it does not
    /// wait: the CPU waits until [`IoBus::event_deadline`] and calls [`IoBus::retire`]. Note
    /// that an event need not raise an unmasked request (a timer whose IRQ is masked): a CPU
    /// that keeps halting keeps skipping time, and its run ends by its budget or timeout.
    pub fn idle(&mut self) -> bool {
        if self.interrupt_pending() {
            return true;
        }
        let Some(deadline) = self.next_event else { return false };
        self.clock.skip_to(deadline);
        self.service_events();
        true
    }

    /// Runs the device events due at the clock's current time.
    fn service_events(&mut self) {
        let now = self.clock.now_ns();
        if self.next_event.is_none_or(|d| d > now) {
            return;
        }
        for k in 0..self.timed.len() {
            let index = self.timed[k];
            if self.slots[index].device.next_event_ns().is_some_and(|d| d <= now) {
                let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
                self.slots[index].device.fire(&mut ctx);
            }
        }
        self.refresh_deadline();
        if self.lines.changed() {
            self.sync_intc();
        }
    }

    /// Writes pending host output of every character device.
    pub fn flush(&mut self) {
        for s in &mut self.slots {
            s.device.flush();
        }
    }

    /// The first failure writing device output to the host, naming the device, if any.
    pub fn output_error(&self) -> Option<String> {
        let console = self.mmio_console().map(|c| ("MMIO console", &c.out));
        [("COM1", &self.uart().out), ("port 0xE9", &self.debugcon().out)].into_iter().chain(console).find_map(
            |(name, sink)| {
                let to = match sink.target() {
                    crate::devices::sink::SinkTarget::Stdout => "stdout",
                    crate::devices::sink::SinkTarget::Stderr => "stderr",
                    crate::devices::sink::SinkTarget::Null => "nowhere",
                };
                sink.write_error().map(|e| format!("{name} output to {to}: {e}"))
            },
        )
    }

    /// Power-on state for every device (captured output cleared), for reusing a machine.
    pub fn reset(&mut self) {
        for s in &mut self.slots {
            s.device.reset();
            (s.reads, s.writes) = (0, 0);
        }
        self.stats = IoStats::default();
        self.clock.reset();
        self.interrupts.clear();
        self.lines.clear();
        self.refresh_deadline();
        self.sync_intc();
    }
}

#[cfg(test)]
mod tests;
