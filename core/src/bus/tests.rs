//! Tests of the bus: routing, splitting, unclaimed addresses, registration, typed access,
//! coalescible ranges, timed devices and the INTR path, without any CPU.
use super::*;
use crate::clock::TimeMode;
use crate::device::{Claim, Space};
use crate::devices::pit::{ns_of_tick, ticks_at};

#[test]
fn routes_ports() {
    let mut bus = IoBus::capturing();
    assert_eq!(bus.pio_write(0x3F8, b"A"), IoAction::Continue);
    assert_eq!(bus.pio_write(0xE9, b"B"), IoAction::Continue);
    assert_eq!(bus.uart().out.captured(), b"A");
    assert_eq!(bus.debugcon().out.captured(), b"B");
    let mut lsr = [0u8];
    bus.pio_read(0x3FD, &mut lsr);
    assert_eq!(lsr[0] & 0x60, 0x60);
    let mut e9 = [0u8];
    bus.pio_read(0xE9, &mut e9);
    assert_eq!(e9[0], 0xE9);
    assert_eq!(bus.pio_write(0x80, &[0x42]), IoAction::Continue);
    assert_eq!(bus.post_code(), 0x42);
    assert_eq!(bus.stats().pio_writes, 3);
    assert_eq!(bus.stats().unclaimed_writes + bus.stats().unclaimed_reads, 0);
}

#[test]
fn unclaimed_ports_read_ones_and_are_counted() {
    let mut bus = IoBus::capturing();
    let mut w = [0u8; 2];
    bus.pio_read(0x1234, &mut w);
    assert_eq!(w, [0xFF, 0xFF]);
    assert_eq!(bus.pio_write(0x1234, &[1]), IoAction::Continue);
    assert_eq!(bus.stats().unclaimed_reads, 2);
    assert_eq!(bus.stats().unclaimed_writes, 1);
    let mut straddle = [0u8; 2];
    bus.pio_read(0xE8, &mut straddle);
    assert_eq!(straddle, [0xFF, 0xE9], "a word read across a claimed port splits per byte");
    assert_eq!(bus.stats().unclaimed_reads, 3);
}

#[test]
fn debug_exit_stops() {
    let mut bus = IoBus::capturing();
    assert_eq!(bus.pio_write(0xF4, &[0x10]), IoAction::Stop(StopReason::DebugExit(0x10)));
    assert_eq!(bus.pio_write(0xF4, &[0x34, 0x12]), IoAction::Stop(StopReason::DebugExit(0x1234)));
    assert_eq!(bus.debug_exit().last(), Some(0x1234));
    assert_eq!(
        bus.pio_write(0xF3, &[0x01, 0x02, 0x03]),
        IoAction::Stop(StopReason::DebugExit(0x0302)),
        "the rest of an access reaching 0xF4 is one wide value"
    );
    let mut r = [0u8; 4];
    bus.pio_read(0xF4, &mut r);
    assert_eq!(r, [0xFF; 4]);
    assert_eq!(bus.stats().unclaimed_reads, 0, "0xF4 is claimed");
}

#[test]
fn a_stop_ends_the_access() {
    let mut bus = IoBus::capturing();
    assert_eq!(bus.pio_write(0xF4, &[7, 0, 0, 0]), IoAction::Stop(StopReason::DebugExit(7)));
    assert_eq!(bus.post_code(), 0);
}

#[test]
fn detached_bus_claims_no_port() {
    let mut bus = IoBus::detached();
    assert!(bus.ports_detached());
    for port in [0x80, 0xE9, 0xF4, 0x3C4, 0x3F8, 0x3FD] {
        let mut w = [0u8; 2];
        bus.pio_read(port, &mut w);
        assert_eq!(w, [0xFF, 0xFF], "port {port:#x}");
        assert_eq!(bus.pio_write(port, &[0x10, 0x20]), IoAction::Continue, "port {port:#x}");
    }
    assert!(bus.uart().out.captured().is_empty());
    assert!(bus.debugcon().out.captured().is_empty());
    assert_eq!(bus.post_code(), 0);
    assert_eq!(bus.stats().unclaimed_writes, 12);
    assert!(bus.coalescible_ranges().is_empty(), "no port is coalescible when none is claimed");
}

#[test]
fn word_write_splits_into_bytes() {
    let mut bus = IoBus::capturing();
    // 16-bit OUT to 0x3D4: index then data, the usual CRTC idiom.
    assert_eq!(bus.pio_write(0x3D4, &[0x0F, 0x05]), IoAction::Continue);
    assert_eq!(bus.vga().cursor(), (0, 5));
}

#[test]
fn mmio_console_and_unclaimed_mmio() {
    let mut bus = IoBus::capturing();
    assert!(bus.mmio_regions().is_empty());
    assert!(bus.mmio_console().is_none());
    let h = bus.register(MmioConsole::new(0xD0000, Sink::capture())).unwrap();
    assert_eq!(bus.mmio_regions(), vec![(0xD0000, 0x1000)]);
    assert_eq!(bus.mmio_write(0xD0000, b"Z"), IoAction::Continue);
    let mut cnt = [0u8; 4];
    bus.mmio_read(0xD0004, &mut cnt);
    assert_eq!(cnt, [1, 0, 0, 0]);
    let mut x = [0u8; 2];
    bus.mmio_read(0xE0000, &mut x);
    assert_eq!(x, [0xFF, 0xFF]);
    assert_eq!(bus.mmio_write(0xE0000, b"Q"), IoAction::Continue);
    assert_eq!(bus.mmio_console().unwrap().out.captured(), b"Z");
    assert_eq!(bus.device(h).unwrap().count(), 1);
    let s = bus.stats();
    assert_eq!((s.mmio_reads, s.mmio_writes, s.unclaimed_reads, s.unclaimed_writes), (2, 2, 1, 1));
    let e = bus.register(MmioConsole::new(0xD0800, Sink::capture())).unwrap_err();
    assert!(matches!(e, BusError::Overlap { other: "MMIO console", .. }), "{e}");
}

#[test]
fn coalescible_ranges_come_from_the_devices() {
    let mut bus = IoBus::capturing();
    let pio = |base| CoalescibleRange { space: Space::Pio, base, len: 1 };
    assert_eq!(bus.coalescible_ranges(), vec![pio(0xE9), pio(0x3F8)]);
    bus.register(MmioConsole::new(0xD0000, Sink::capture())).unwrap();
    bus.register(Uart16550::at(0x2F8, Sink::capture())).unwrap();
    assert_eq!(
        bus.coalescible_ranges(),
        vec![
            pio(0xE9),
            pio(0x3F8),
            CoalescibleRange { space: Space::Mmio, base: 0xD0000, len: 4 },
            pio(0x2F8)
        ]
    );
}

#[test]
fn typed_access_by_handle_and_type() {
    let mut bus = IoBus::capturing();
    let com2 = bus.register(Uart16550::at(0x2F8, Sink::capture())).unwrap();
    assert_eq!(bus.pio_write(0x2F8, b"2"), IoAction::Continue);
    assert_eq!(bus.device(com2).unwrap().out.captured(), b"2");
    assert_eq!(bus.find::<Uart16550>().unwrap().base(), 0x3F8, "find gives the first registered");
    bus.device_mut(com2).unwrap().push_input(b"x");
    let mut b = [0u8];
    bus.pio_read(0x2F8, &mut b);
    assert_eq!(b[0], b'x');
    bus.uart_mut().push_input(b"y");
    bus.pio_read(0x3F8, &mut b);
    assert_eq!(b[0], b'y');
    let other = IoBus::capturing();
    assert!(other.device(com2).is_none(), "a handle of another bus finds nothing");
    assert!(bus.find_mut::<MmioConsole>().is_none());
}

#[test]
fn bad_registrations_change_nothing() {
    let mut bus = IoBus::capturing();
    let e = bus.register(Uart16550::at(0x3FC, Sink::capture())).unwrap_err();
    assert!(
        e.to_string()
            .contains("16550 UART claims ports 0x3fc+0x8, which overlaps 16550 UART's range at 0x3f8"),
        "{e}"
    );
    let e = bus.register(Uart16550::at(0xFFFC, Sink::capture())).unwrap_err();
    assert!(matches!(e, BusError::OutOfSpace { .. }), "{e}");
    let mut b = [0u8];
    bus.pio_read(0x400, &mut b);
    assert_eq!(b[0], 0xFF);
    assert_eq!(bus.pio_write(0x3F8, b"k"), IoAction::Continue);
    assert_eq!(bus.uart().out.captured(), b"k", "COM1 still owns its ports");
}

/// A timed device for the event tests: pulses `line` every `period` ns from time 0.
#[derive(Debug)]
struct Metronome {
    period: u64,
    next: u64,
    line: u8,
    fired: u32,
}

impl Device for Metronome {
    fn name(&self) -> &'static str {
        "metronome"
    }
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(0x300, 1)]
    }
    fn read(&mut self, _: u64, _: u64, data: &mut [u8], _: &mut DeviceCtx<'_>) {
        data.fill(self.fired as u8);
    }
    fn write(&mut self, _: u64, _: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        self.period = u64::from(data[0]) * 100;
        self.next = ctx.now_ns() + self.period;
    }
    fn save(&self, out: &mut crate::snapshot::StateWriter) {
        for v in [self.period, self.next, u64::from(self.fired)] {
            out.u64(v);
        }
    }
    fn restore(&mut self, r: &mut crate::snapshot::StateReader<'_>) -> Result<(), crate::SnapshotError> {
        (self.period, self.next, self.fired) = (r.u64()?, r.u64()?, r.u64()? as u32);
        Ok(())
    }
    fn timed(&self) -> bool {
        true
    }
    fn next_event_ns(&self) -> Option<u64> {
        (self.period > 0).then_some(self.next)
    }
    fn fire(&mut self, ctx: &mut DeviceCtx<'_>) {
        self.fired += 1;
        ctx.pulse_irq(self.line);
        while self.next <= ctx.now_ns() {
            self.next += self.period;
        }
    }
    fn reset(&mut self) {
        self.period = 0;
        self.fired = 0;
    }
}

#[test]
fn timed_devices_set_deadlines_and_fire_on_retire() {
    let mut bus = IoBus::capturing();
    bus.set_clock(Clock::new(TimeMode::Virtual { ns_per_instruction: 10 }));
    bus.register(Metronome { period: 0, next: 0, line: 3, fired: 0 }).unwrap();
    assert_eq!(bus.instructions_until_event(), None);
    assert!(!bus.idle(), "nothing can wake a halted CPU");
    assert_eq!(bus.pio_write(0x300, &[5]), IoAction::Continue); // every 500 ns
    assert_eq!(bus.next_event_ns(), Some(500));
    assert_eq!(bus.instructions_until_event(), Some(50));
    bus.retire(49);
    assert_eq!(bus.find::<Metronome>().unwrap().fired, 0);
    bus.retire(1);
    assert_eq!(bus.find::<Metronome>().unwrap().fired, 1);
    assert_eq!(bus.instructions_until_event(), Some(50));
    assert!(!bus.interrupt_pending(), "no interrupt controller: IRQ lines go nowhere");
    assert!(bus.idle());
    assert_eq!((bus.clock().now_ns(), bus.find::<Metronome>().unwrap().fired), (1000, 2));
    bus.reset();
    assert_eq!((bus.clock().now_ns(), bus.next_event_ns()), (0, None));
}

#[test]
fn irq_lines_reach_the_pic_and_intr() {
    let mut bus = IoBus::capturing();
    bus.add_pc_devices().unwrap();
    assert!(matches!(bus.add_pc_devices(), Err(BusError::SecondInterruptController { .. })));
    bus.register(Metronome { period: 0, next: 0, line: 3, fired: 0 }).unwrap();
    for (port, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0xA0, 0x11), (0xA1, 0x70)] {
        assert_eq!(bus.pio_write(port, &[v]), IoAction::Continue);
    }
    for (port, v) in [(0xA1, 0x02), (0xA1, 0x01), (0x21, 0xF7)] {
        assert_eq!(bus.pio_write(port, &[v]), IoAction::Continue);
    }
    assert_eq!(bus.pio_write(0x300, &[1]), IoAction::Continue);
    assert!(!bus.interrupt_pending());
    bus.retire(10);
    assert!(bus.interrupt_pending(), "IRQ 3 pulsed at 100 ns");
    assert!(bus.raise_interrupt(0x42));
    assert_eq!(bus.acknowledge_interrupt(), Some(0x0B), "the PIC answers before the queue");
    assert!(bus.interrupt_pending(), "the queued vector still waits");
    assert_eq!(bus.acknowledge_interrupt(), Some(0x42));
    assert!(!bus.interrupt_pending());
    assert!(bus.idle(), "an event is scheduled");
    assert!(!bus.interrupt_pending(), "IRQ 3 is in service until EOI");
    assert_eq!(bus.pio_write(0x20, &[0x20]), IoAction::Continue);
    assert!(bus.interrupt_pending(), "EOI releases the edge latched meanwhile");
    assert_eq!(bus.acknowledge_interrupt(), Some(0x0B));
    assert_eq!(bus.acknowledge_interrupt(), None, "no request: the queue is empty");
}

#[test]
fn pit_ticks_interrupt_through_the_pic() {
    let mut bus = IoBus::capturing();
    bus.add_pc_devices().unwrap();
    let program = [
        (0x20, 0x11),
        (0x21, 0x08),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, 0xFE),
        (0x43, 0x34),
        (0x40, 0x00),
        (0x40, 0x01),
    ];
    for (port, v) in program {
        assert_eq!(bus.pio_write(port, &[v]), IoAction::Continue);
    }
    // 256 ticks of 1.193182 MHz per period; the default clock runs 10 ns per instruction.
    let first = ns_of_tick(256);
    assert_eq!(bus.next_event_ns(), Some(first));
    assert_eq!(bus.instructions_until_event(), Some(first.div_ceil(10)));
    for k in 1..=5u64 {
        assert!(!bus.interrupt_pending());
        assert!(bus.idle(), "HLT skips to the next tick");
        assert_eq!(bus.clock().now_ns(), ns_of_tick(256 * k), "tick {k}");
        assert!(bus.interrupt_pending());
        assert_eq!(bus.acknowledge_interrupt(), Some(0x08));
        assert_eq!(bus.pio_write(0x20, &[0x20]), IoAction::Continue);
    }
    bus.retire(100);
    let mut c = [0u8; 2];
    bus.pio_write(0x43, &[0x00]).ne(&IoAction::Continue).then(|| panic!("latch"));
    bus.pio_read(0x40, &mut c[..1]);
    bus.pio_read(0x40, &mut c[1..]);
    let now = ticks_at(bus.clock().now_ns());
    assert_eq!(u64::from(u16::from_le_bytes(c)), 256 - (now - 256 * 5), "the counter moves with the clock");
    bus.reset();
    assert!(!bus.interrupt_pending());
    assert_eq!(bus.next_event_ns(), None, "reset stops the timer");
}

/// The accesses `name` served, as `(reads, writes)`.
fn served(bus: &IoBus, name: &str) -> (u64, u64) {
    let s = bus.device_stats().into_iter().find(|d| d.name == name).expect("device registered");
    (s.reads, s.writes)
}

#[test]
fn device_stats_count_what_each_device_served() {
    let mut bus = IoBus::capturing();
    bus.register(MmioConsole::new(0xD0000, Sink::capture())).unwrap();
    assert!(bus.device_stats().iter().all(|d| d.reads == 0 && d.writes == 0));
    assert_eq!(bus.pio_write(0xE9, b"A"), IoAction::Continue);
    assert_eq!(bus.pio_write(0xE9, b"B"), IoAction::Continue);
    // A word write to the byte-wide UART is two accesses as COM1 sees them.
    assert_eq!(bus.pio_write(0x3F8, &[1, 0]), IoAction::Continue);
    let mut b = [0u8];
    bus.pio_read(0x3FD, &mut b);
    assert_eq!(bus.mmio_write(0xD0000, b"Z"), IoAction::Continue);
    let mut cnt = [0u8; 4];
    bus.mmio_read(0xD0004, &mut cnt);
    // Unclaimed space is counted by the bus, not by any device.
    assert_eq!(bus.pio_write(0x1234, &[1]), IoAction::Continue);
    assert_eq!(served(&bus, "debug console"), (0, 2));
    assert_eq!(served(&bus, "16550 UART"), (1, 2));
    assert_eq!(served(&bus, "MMIO console"), (1, 1));
    let total: u64 = bus.device_stats().iter().map(|d| d.reads + d.writes).sum();
    assert_eq!(total, 7);
    bus.reset();
    assert_eq!(served(&bus, "16550 UART"), (0, 0));
}
