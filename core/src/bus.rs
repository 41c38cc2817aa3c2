//! The port-I/O and MMIO bus: routes every guest access, whichever CPU made it, to the
//! device that claims the address. Accesses wider than a byte to byte-wide devices are split
//! into consecutive byte accesses, as on the ISA bus. Unclaimed ports read as all ones and
//! ignore writes; both are counted in [`IoStats`].
use crate::clock::Clock;
use crate::devices::{
    debug_exit::DEBUG_EXIT_PORT, debugcon::DEBUGCON_PORT, mmio_console::MMIO_CONSOLE_SIZE, uart::COM1_BASE,
    DebugCon, DebugExit, MmioConsole, Sink, Uart16550, VgaText,
};
use crate::irq::InterruptQueue;
use crate::StopReason;

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

/// Port 0x80: the POST diagnostic port (writes are remembered, reads give the last value).
pub const POST_PORT: u16 = 0x80;

/// All devices of the machine and the routing between them.
#[derive(Debug)]
pub struct IoBus {
    pub vga: VgaText,
    pub uart: Uart16550,
    pub debugcon: DebugCon,
    pub debug_exit: DebugExit,
    pub mmio_console: Option<MmioConsole>,
    pub post_code: u8,
    pub stats: IoStats,
    /// Machine time, read by timed devices and advanced by the CPU.
    clock: Clock,
    /// External interrupt requests waiting for the CPU.
    interrupts: InterruptQueue,
    /// When set, no device claims any port: every port read gives all ones and every port
    /// write is dropped (an open ISA bus, as the SingleStepTests suite assumes).
    pub ports_detached: bool,
}

impl IoBus {
    /// A bus with COM1 output on `serial`, debug-console output on `debugcon`.
    pub fn new(serial: Sink, debugcon: Sink) -> Self {
        IoBus {
            vga: VgaText::default(),
            uart: Uart16550::new(serial),
            debugcon: DebugCon::new(debugcon),
            debug_exit: DebugExit::default(),
            mmio_console: None,
            post_code: 0,
            stats: IoStats::default(),
            clock: Clock::default(),
            interrupts: InterruptQueue::default(),
            ports_detached: false,
        }
    }

    /// A bus whose character devices only capture their output (tests, differential runs).
    pub fn capturing() -> Self {
        IoBus::new(Sink::capture(), Sink::capture())
    }

    /// A bus on which no device claims any port (see [`IoBus::ports_detached`]).
    pub fn detached() -> Self {
        IoBus { ports_detached: true, ..IoBus::capturing() }
    }

    /// Reads `data.len()` (1, 2 or 4) bytes from `port`.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        self.stats.pio_reads += 1;
        if self.ports_detached {
            self.stats.unclaimed_reads += data.len() as u64;
            data.fill(0xFF);
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_port(port.wrapping_add(i as u16));
        }
    }

    /// Writes `data` (1, 2 or 4 bytes, little endian) to `port`.
    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> IoAction {
        self.stats.pio_writes += 1;
        if self.ports_detached {
            self.stats.unclaimed_writes += data.len() as u64;
            return IoAction::Continue;
        }
        if port == DEBUG_EXIT_PORT {
            let code = self.debug_exit.write(data);
            return IoAction::Stop(StopReason::DebugExit(code));
        }
        for (i, &b) in data.iter().enumerate() {
            self.write_port(port.wrapping_add(i as u16), b);
        }
        IoAction::Continue
    }

    fn read_port(&mut self, port: u16) -> u8 {
        match port {
            COM1_BASE..=0x3FF => self.uart.read(port - COM1_BASE),
            0x3C0..=0x3DF => self.vga.read(port),
            DEBUGCON_PORT => self.debugcon.read(),
            POST_PORT => self.post_code,
            DEBUG_EXIT_PORT => self.debug_exit.read(),
            _ => {
                self.stats.unclaimed_reads += 1;
                0xFF
            }
        }
    }

    fn write_port(&mut self, port: u16, value: u8) {
        match port {
            COM1_BASE..=0x3FF => self.uart.write(port - COM1_BASE, value),
            0x3C0..=0x3DF => self.vga.write(port, value),
            DEBUGCON_PORT => self.debugcon.write(value),
            POST_PORT => self.post_code = value,
            _ => self.stats.unclaimed_writes += 1,
        }
    }

    /// Guest-physical ranges `(base, len)` that are MMIO, not RAM. Backends must trap
    /// accesses there (KVM: no memslot; interpreter: route to [`IoBus::mmio_read`]).
    pub fn mmio_regions(&self) -> Vec<(u64, u64)> {
        self.mmio_console.iter().map(|c| (c.base, MMIO_CONSOLE_SIZE)).collect()
    }

    /// Reads MMIO at guest-physical `addr`; unclaimed addresses read as all ones.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        self.stats.mmio_reads += 1;
        match &mut self.mmio_console {
            Some(c) if window_offset(c.base, addr).is_some() => c.read(addr - c.base, data),
            _ => {
                self.stats.unclaimed_reads += 1;
                data.fill(0xFF)
            }
        }
    }

    /// Writes MMIO at guest-physical `addr`; unclaimed writes are dropped.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> IoAction {
        self.stats.mmio_writes += 1;
        match &mut self.mmio_console {
            Some(c) if window_offset(c.base, addr).is_some() => c.write(addr - c.base, data),
            _ => self.stats.unclaimed_writes += 1,
        }
        IoAction::Continue
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

    /// True while an external interrupt request waits (the CPU's INTR pin). Cheap: CPUs
    /// call it at instruction boundaries with IF=1.
    pub fn interrupt_pending(&self) -> bool {
        self.interrupts.pending()
    }

    /// The INTA cycle: the vector the CPU must deliver now, if a request still waits.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
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
        self.next_event_ns().and_then(|d| self.clock.instructions_until(d))
    }

    /// The host instant of the next device event in real-time mode.
    pub fn event_deadline(&self) -> Option<std::time::Instant> {
        self.next_event_ns().and_then(|d| self.clock.wall_instant(d))
    }

    /// HLT with IF=1: in virtual time, skip to the next device event and service it. Returns
    /// false when nothing can ever wake the CPU (no pending request and no event scheduled),
    /// so the run ends with [`crate::StopReason::Halted`]. In real-time mode it does not
    /// wait: the CPU waits until [`IoBus::event_deadline`] and calls [`IoBus::retire`].
    pub fn idle(&mut self) -> bool {
        if self.interrupts.pending() {
            return true;
        }
        let Some(deadline) = self.next_event_ns() else { return false };
        self.clock.skip_to(deadline);
        self.service_events();
        true
    }

    /// Runs the device events due at the clock's current time.
    fn service_events(&mut self) {
        let now = self.clock.now_ns();
        if self.next_event_ns().is_some_and(|d| d <= now) {
            self.fire_events(now);
        }
    }

    /// Virtual-time deadline (ns since power-on) of the earliest timed-device event. No device
    /// of this bus keeps time yet (the PIT will), so there is none.
    fn next_event_ns(&self) -> Option<u64> {
        None
    }

    /// Fires the timed-device events due at `now_ns`; the requests they raise are queued.
    fn fire_events(&mut self, now_ns: u64) {
        let _ = now_ns;
    }

    /// Writes pending host output of every character device.
    pub fn flush(&mut self) {
        self.uart.out.flush();
        self.debugcon.out.flush();
        if let Some(c) = &mut self.mmio_console {
            c.out.flush();
        }
    }

    /// Power-on state for every device (captured output cleared), for reusing a machine.
    pub fn reset(&mut self) {
        self.vga = VgaText::default();
        self.uart.reset();
        self.debugcon.out.reset();
        self.debug_exit = DebugExit::default();
        if let Some(c) = &mut self.mmio_console {
            c.reset();
        }
        self.post_code = 0;
        self.stats = IoStats::default();
        self.clock.reset();
        self.interrupts.clear();
    }
}

/// Offset of `addr` in the MMIO console window at `base`, if it is inside. No overflow for a
/// window at the very top of the address space (found by the `bus` fuzz target).
fn window_offset(base: u64, addr: u64) -> Option<u64> {
    addr.checked_sub(base).filter(|&o| o < MMIO_CONSOLE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_ports() {
        let mut bus = IoBus::capturing();
        assert_eq!(bus.pio_write(0x3F8, b"A"), IoAction::Continue);
        assert_eq!(bus.pio_write(0xE9, b"B"), IoAction::Continue);
        assert_eq!(bus.uart.out.captured(), b"A");
        assert_eq!(bus.debugcon.out.captured(), b"B");
        let mut lsr = [0u8];
        bus.pio_read(0x3FD, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
        let mut e9 = [0u8];
        bus.pio_read(0xE9, &mut e9);
        assert_eq!(e9[0], 0xE9);
    }

    #[test]
    fn unclaimed_ports_read_ones_and_are_counted() {
        let mut bus = IoBus::capturing();
        let mut w = [0u8; 2];
        bus.pio_read(0x1234, &mut w);
        assert_eq!(w, [0xFF, 0xFF]);
        assert_eq!(bus.pio_write(0x1234, &[1]), IoAction::Continue);
        assert_eq!(bus.stats.unclaimed_reads, 2);
        assert_eq!(bus.stats.unclaimed_writes, 1);
    }

    #[test]
    fn debug_exit_stops() {
        let mut bus = IoBus::capturing();
        assert_eq!(bus.pio_write(0xF4, &[0x10]), IoAction::Stop(StopReason::DebugExit(0x10)));
        assert_eq!(bus.pio_write(0xF4, &[0x34, 0x12]), IoAction::Stop(StopReason::DebugExit(0x1234)));
    }

    #[test]
    fn detached_bus_claims_no_port() {
        let mut bus = IoBus::detached();
        for port in [0x80, 0xE9, 0xF4, 0x3C4, 0x3F8, 0x3FD] {
            let mut w = [0u8; 2];
            bus.pio_read(port, &mut w);
            assert_eq!(w, [0xFF, 0xFF], "port {port:#x}");
            assert_eq!(bus.pio_write(port, &[0x10, 0x20]), IoAction::Continue, "port {port:#x}");
        }
        assert!(bus.uart.out.captured().is_empty());
        assert!(bus.debugcon.out.captured().is_empty());
        assert_eq!(bus.post_code, 0);
        assert_eq!(bus.stats.unclaimed_writes, 12);
    }

    #[test]
    fn word_write_splits_into_bytes() {
        let mut bus = IoBus::capturing();
        // 16-bit OUT to 0x3D4: index then data, the usual CRTC idiom.
        assert_eq!(bus.pio_write(0x3D4, &[0x0F, 0x05]), IoAction::Continue);
        assert_eq!(bus.vga.cursor(), (0, 5));
    }

    #[test]
    fn mmio_console_and_unclaimed_mmio() {
        let mut bus = IoBus::capturing();
        assert!(bus.mmio_regions().is_empty());
        bus.mmio_console = Some(MmioConsole::new(0xD0000, Sink::capture()));
        assert_eq!(bus.mmio_regions(), vec![(0xD0000, 0x1000)]);
        assert_eq!(bus.mmio_write(0xD0000, b"Z"), IoAction::Continue);
        let mut cnt = [0u8; 4];
        bus.mmio_read(0xD0004, &mut cnt);
        assert_eq!(cnt, [1, 0, 0, 0]);
        let mut x = [0u8; 2];
        bus.mmio_read(0xE0000, &mut x);
        assert_eq!(x, [0xFF, 0xFF]);
        assert_eq!(bus.mmio_console.as_ref().unwrap().out.captured(), b"Z");
    }

    #[test]
    fn mmio_console_at_the_top_of_the_address_space() {
        // Regression (fuzz target `bus`): base + window size overflowed u64.
        let mut bus = IoBus::capturing();
        let base = u64::MAX - 0x5FF;
        bus.mmio_console = Some(MmioConsole::new(base, Sink::capture()));
        assert_eq!(bus.mmio_write(base, b"Q"), IoAction::Continue);
        let mut cnt = [0u8; 4];
        bus.mmio_read(base + 4, &mut cnt);
        assert_eq!(cnt, [1, 0, 0, 0]);
        let mut x = [0u8; 1];
        bus.mmio_read(base - 1, &mut x);
        assert_eq!(x, [0xFF]);
        assert_eq!(bus.mmio_console.as_ref().unwrap().out.captured(), b"Q");
    }
}
