//! Each device's snapshot round trip without a CPU: a device driven into a busy state is saved
//! ([`Device::save`]), restored into a fresh device ([`Device::restore`]), and from then on both
//! behave identically under the same accesses at the same times (a PIT mid-count keeps
//! counting and interrupting the same, a PIC keeps its requests in service, a UART its
//! registers and unread input). Payloads that do not fit are refused, never a panic.
use picoqemu_core::devices::{
    DebugCon, DebugExit, MmioConsole, Pic8259Pair, Pit8254, PostPort, Sink, Uart16550, VgaText,
};
use picoqemu_core::irq::IrqLines;
use picoqemu_core::snapshot::{SnapshotError, StateReader, StateWriter};
use picoqemu_core::{Clock, Device, DeviceCtx, InterruptController, TimeMode};

fn saved(d: &dyn Device) -> Vec<u8> {
    let mut w = StateWriter::new();
    d.save(&mut w);
    w.into_vec()
}

/// Restores `state` into `fresh`, checking that the whole payload was taken.
fn restored<D: Device>(mut fresh: D, state: &[u8]) -> D {
    let mut r = StateReader::new("test", state);
    fresh.restore(&mut r).expect("restore");
    r.finish().expect("the whole payload is read");
    fresh
}

/// Every strict prefix of `state` is refused as truncated.
fn prefixes_refused<D: Device>(make: impl Fn() -> D, state: &[u8]) {
    for cut in 0..state.len() {
        let mut r = StateReader::new("test", &state[..cut]);
        let e = make().restore(&mut r).expect_err("a truncated payload");
        assert!(matches!(e, SnapshotError::Truncated { .. }), "cut at {cut}: {e}");
    }
}

/// The claimed range's base and the offset of `port` (COM1 takes offsets; the byte-port
/// devices add them back up).
fn at(port: u16) -> (u64, u64) {
    if (0x3F8..0x400).contains(&port) {
        (0x3F8, u64::from(port - 0x3F8))
    } else {
        (u64::from(port), 0)
    }
}

struct Bench {
    clock: Clock,
    lines: IrqLines,
}

impl Bench {
    fn new() -> Self {
        Bench { clock: Clock::new(TimeMode::Virtual { ns_per_instruction: 10 }), lines: IrqLines::default() }
    }
    fn write(&mut self, d: &mut dyn Device, port: u16, v: u8) {
        let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
        let (base, offset) = at(port);
        d.write(base, offset, &[v], &mut ctx);
    }
    fn read(&mut self, d: &mut dyn Device, port: u16) -> u8 {
        let mut b = [0u8];
        let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
        let (base, offset) = at(port);
        d.read(base, offset, &mut b, &mut ctx);
        b[0]
    }
    /// Time moves on by `ns`; a due event fires. Returns the IRQ lines' rising edges.
    fn advance(&mut self, d: &mut dyn Device, ns: u64) -> u16 {
        self.clock.retire(ns / 10);
        if d.next_event_ns().is_some_and(|t| t <= self.clock.now_ns()) {
            let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
            d.fire(&mut ctx);
        }
        self.lines.take_rising()
    }
}

#[test]
fn a_pit_mid_count_counts_and_interrupts_the_same_after_a_round_trip() {
    let mut bench = Bench::new();
    let mut pit = Pit8254::default();
    // Channel 0: mode 2, divisor 1000; channel 2: mode 3 gated on, lobyte/hibyte half written.
    for (port, v) in [(0x43, 0x34), (0x40, 0xE8), (0x40, 0x03), (0x61, 0x01), (0x43, 0xB6), (0x42, 0x21)] {
        bench.write(&mut pit, port, v);
    }
    bench.advance(&mut pit, 1_234_567);
    bench.write(&mut pit, 0x43, 0x00); // latch channel 0's count
    let state = saved(&pit);
    let mut copy = restored(Pit8254::default(), &state);
    let mut bench2 = Bench { clock: bench.clock.clone(), lines: bench.lines };
    assert_eq!(copy.next_event_ns(), pit.next_event_ns());
    for step in [0u64, 3_000, 838_000, 1_000_000, 5] {
        assert_eq!(bench.advance(&mut pit, step), bench2.advance(&mut copy, step), "IRQ 0 at +{step} ns");
        for port in [0x40, 0x40, 0x42, 0x61] {
            assert_eq!(bench.read(&mut pit, port), bench2.read(&mut copy, port), "port {port:#x}");
        }
        bench.write(&mut pit, 0x42, 0x10);
        bench2.write(&mut copy, 0x42, 0x10);
        assert_eq!(copy.next_event_ns(), pit.next_event_ns());
    }
    prefixes_refused(Pit8254::default, &state);
    let mut bad = state.clone();
    bad[0] = 7; // mode 7 does not exist
    let e = Pit8254::default().restore(&mut StateReader::new("t", &bad)).unwrap_err();
    assert!(matches!(e, SnapshotError::Invalid { .. }), "{e}");
}

fn pic_ready(bench: &mut Bench, pic: &mut Pic8259Pair) {
    for (port, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0xA0, 0x11), (0xA1, 0x70)] {
        bench.write(pic, port, v);
    }
    for (port, v) in [(0xA1, 0x02), (0xA1, 0x01), (0x21, 0x00), (0xA1, 0x00)] {
        bench.write(pic, port, v);
    }
}

#[test]
fn a_pic_keeps_its_requests_in_service_and_priorities() {
    let mut bench = Bench::new();
    let mut pic = Pic8259Pair::default();
    pic_ready(&mut bench, &mut pic);
    pic.set_lines(0b0000_0010_0000_1001, 0b0000_0010_0000_1001); // IRQ 0, 3, 9
    assert_eq!(pic.acknowledge(), 0x08, "IRQ 0 in service");
    bench.write(&mut pic, 0x20, 0x0B); // OCW3: read ISR
    let state = saved(&pic);
    let mut copy = restored(Pic8259Pair::default(), &state);
    assert_eq!(copy.intr(), pic.intr());
    assert_eq!(bench.read(&mut copy, 0x20), bench.read(&mut pic, 0x20), "ISR");
    assert_eq!(copy.master().isr(), 0x01);
    for _ in 0..3 {
        assert_eq!(copy.intr(), pic.intr());
        bench.write(&mut pic, 0x20, 0x20);
        bench.write(&mut copy, 0x20, 0x20);
        assert_eq!(copy.acknowledge(), pic.acknowledge());
    }
    prefixes_refused(Pic8259Pair::default, &state);
}

#[test]
fn a_uart_keeps_registers_divisor_and_unread_input() {
    let mut bench = Bench::new();
    let mut uart = Uart16550::new(Sink::capture());
    for (port, v) in
        [(0x3FB, 0x80), (0x3F8, 0x03), (0x3F9, 0x00), (0x3FB, 0x03), (0x3FF, 0x5A), (0x3F9, 0x03)]
    {
        bench.write(&mut uart, port, v);
    }
    bench.write(&mut uart, 0x3FA, 0x01);
    uart.push_input(b"abc");
    assert_eq!(bench.read(&mut uart, 0x3F8), b'a');
    let state = saved(&uart);
    let mut copy = restored(Uart16550::new(Sink::capture()), &state);
    assert_eq!(copy.divisor(), 3);
    for port in [0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x3F9, 0x3F8, 0x3F8, 0x3FD, 0x3F8] {
        assert_eq!(bench.read(&mut copy, port), bench.read(&mut uart, port), "port {port:#x}");
    }
    prefixes_refused(|| Uart16550::new(Sink::capture()), &state);
    let e = Uart16550::at(0x2F8, Sink::capture()).restore(&mut StateReader::new("t", &state)).unwrap_err();
    assert!(e.to_string().contains("0x3f8"), "a UART elsewhere is refused: {e}");
}

#[test]
fn vga_post_debug_exit_and_console_round_trip() {
    let mut bench = Bench::new();
    let mut vga = VgaText::default();
    for (port, v) in [(0x3D4, 0x0E), (0x3D5, 0x07), (0x3D4, 0x0F), (0x3D5, 0xD0), (0x3D4, 0x0C)] {
        bench.write(&mut vga, port, v);
    }
    bench.read(&mut vga, 0x3DA);
    let mut copy = restored(VgaText::default(), &saved(&vga));
    assert_eq!(copy.cursor(), vga.cursor());
    for port in [0x3D4, 0x3D5, 0x3DA, 0x3DA] {
        assert_eq!(bench.read(&mut copy, port), bench.read(&mut vga, port));
    }
    prefixes_refused(VgaText::default, &saved(&vga));

    let mut post = PostPort::default();
    bench.write(&mut post, 0x80, 0x55);
    assert_eq!(restored(PostPort::default(), &saved(&post)).code(), 0x55);

    let mut exit = DebugExit::default();
    exit.record(&[0x34, 0x12]);
    assert_eq!(restored(DebugExit::default(), &saved(&exit)).last(), Some(0x1234));
    assert_eq!(restored(DebugExit::default(), &saved(&DebugExit::default())).last(), None);

    let mut console = MmioConsole::new(0xD0000, Sink::capture());
    let mut ctx_clock = Bench::new();
    let mut ctx = DeviceCtx::new(&ctx_clock.clock, &mut ctx_clock.lines);
    console.write(0xD0000, 0, b"x", &mut ctx);
    console.write(0xD0000, 0, b"y", &mut ctx);
    assert_eq!(restored(MmioConsole::new(0xD0000, Sink::capture()), &saved(&console)).count(), 2);
    let e = MmioConsole::new(0xE0000, Sink::capture()).restore(&mut StateReader::new("t", &saved(&console)));
    assert!(matches!(e, Err(SnapshotError::ConfigMismatch(_))), "{e:?}");

    // The debug console has no state: it saves nothing.
    let mut con = DebugCon::new(Sink::capture());
    bench.write(&mut con, 0xE9, b'z');
    assert!(saved(&con).is_empty());
    restored(DebugCon::new(Sink::capture()), &[]);
}
