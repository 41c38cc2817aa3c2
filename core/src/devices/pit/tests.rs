//! Unit tests of the 8254 and port B, driven through their ports on a virtual clock without
//! any CPU.
use super::*;
use crate::clock::{Clock, TimeMode};
use crate::irq::IrqLines;

/// The PIT with a clock that the test moves and the IRQ lines it drives.
struct Rig {
    pit: Pit8254,
    clock: Clock,
    lines: IrqLines,
}

impl Rig {
    fn new() -> Self {
        Rig {
            pit: Pit8254::default(),
            clock: Clock::new(TimeMode::Virtual { ns_per_instruction: 1 }),
            lines: IrqLines::default(),
        }
    }

    /// Moves the clock to the start of input tick `t`.
    fn at_tick(&mut self, t: u64) -> &mut Self {
        self.clock.skip_to(ns_of_tick(t));
        self
    }

    fn out(&mut self, port: u16, v: u8) {
        let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
        self.pit.write(u64::from(port), 0, &[v], &mut ctx);
    }

    fn inb(&mut self, port: u16) -> u8 {
        let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
        let mut b = [0u8];
        self.pit.read(u64::from(port), 0, &mut b, &mut ctx);
        b[0]
    }

    /// Reads a 16-bit count as low then high byte.
    fn count(&mut self, port: u16) -> u16 {
        let lo = self.inb(port);
        u16::from_le_bytes([lo, self.inb(port)])
    }

    /// Fires if the deadline has come, as the bus does; true when IRQ 0 was pulsed.
    fn service(&mut self) -> bool {
        if self.pit.next_event_ns().is_some_and(|d| d <= self.clock.now_ns()) {
            let mut ctx = DeviceCtx::new(&self.clock, &mut self.lines);
            self.pit.fire(&mut ctx);
            assert!(
                self.pit.next_event_ns().is_none_or(|d| d > self.clock.now_ns()),
                "fire moves the deadline on"
            );
        }
        self.lines.take_rising() & 1 != 0
    }

    /// Ticks of channel 0's next IRQ edge.
    fn next_edge_tick(&self) -> Option<u64> {
        self.pit.next_event_ns().map(ticks_at)
    }

    /// Read-back status of channel `c`.
    fn status(&mut self, c: u8) -> u8 {
        self.out(PIT_CONTROL, 0xE0 | (2 << c));
        self.inb(PIT_BASE + u16::from(c))
    }
}

#[test]
fn tick_and_nanosecond_conversions_agree() {
    for t in [1, 2, 3, 1000, 65_536, 1_193_182, 10_000_000_000] {
        let ns = ns_of_tick(t);
        assert_eq!(ticks_at(ns), t, "tick {t}");
        assert_eq!(ticks_at(ns - 1), t - 1, "tick {t} has not elapsed 1 ns earlier");
    }
    assert_eq!(ticks_at(1_000_000_000), PIT_HZ);
    assert_eq!(ns_of_tick(0x1_0000), 54_925_402, "18.2 Hz: 65536 ticks");
}

#[test]
fn powered_on_timer_has_no_event() {
    let mut r = Rig::new();
    assert_eq!(r.pit.next_event_ns(), None);
    r.at_tick(1_000_000);
    assert!(!r.service());
    assert_eq!(r.inb(PIT_CONTROL), 0xFF, "the control register cannot be read");
}

#[test]
fn mode2_rate_generator_pulses_irq0_every_period() {
    let mut r = Rig::new();
    r.at_tick(10);
    r.out(PIT_CONTROL, 0x34); // counter 0, lobyte/hibyte, mode 2, binary
    assert_eq!(r.pit.next_event_ns(), None, "no count yet");
    r.out(PIT_BASE, 0xE8);
    assert_eq!(r.pit.next_event_ns(), None, "half a count");
    r.out(PIT_BASE, 0x03); // 1000
    assert_eq!(r.next_edge_tick(), Some(1010));
    r.at_tick(1009);
    assert!(!r.service());
    assert_eq!(r.count(PIT_BASE), 1, "the counter reaches 1 before it reloads");
    assert!(r.status(0) & 0x80 == 0, "OUT is low for the last tick of the period");
    r.at_tick(1010);
    assert!(r.service());
    assert_eq!(r.count(PIT_BASE), 1000);
    assert_eq!(r.next_edge_tick(), Some(2010));
    r.at_tick(1260);
    assert_eq!(r.count(PIT_BASE), 750, "a moving counter");
    r.at_tick(5500);
    assert!(r.service(), "missed edges make one request");
    assert_eq!(r.next_edge_tick(), Some(6010));
}

#[test]
fn mode3_square_wave_at_the_bios_rate() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x36);
    r.out(PIT_BASE, 0);
    r.out(PIT_BASE, 0); // 0 means 65536: 18.2 Hz
    assert_eq!(r.pit.next_event_ns(), Some(54_925_402));
    r.at_tick(100);
    assert_eq!(r.count(PIT_BASE), 0xFFFF - 199, "mode 3 counts down by two");
    assert!(r.status(0) & 0x80 != 0, "high in the first half");
    r.at_tick(32_768);
    assert!(r.status(0) & 0x80 == 0, "low in the second half");
    r.at_tick(65_536);
    assert!(r.service());
    assert!(r.status(0) & 0x80 != 0);
    assert_eq!(r.next_edge_tick(), Some(131_072));
}

#[test]
fn mode0_interrupts_once_on_terminal_count() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x30);
    assert_eq!(r.status(0) & 0x80, 0, "mode 0 starts with OUT low");
    assert_eq!(r.status(0) & 0x40, 0x40, "null count until a count is written");
    r.out(PIT_BASE, 100);
    r.out(PIT_BASE, 0);
    assert_eq!(r.status(0), 0x30, "OUT low, count loaded, lobyte/hibyte, mode 0, binary");
    r.at_tick(99);
    assert_eq!(r.count(PIT_BASE), 1);
    assert!(!r.service());
    r.at_tick(100);
    assert!(r.service());
    assert_eq!(r.status(0) & 0x80, 0x80);
    assert_eq!(r.pit.next_event_ns(), None, "one shot");
    r.at_tick(101);
    assert_eq!(r.count(PIT_BASE), 0xFFFF, "the counter wraps and keeps counting");
    r.at_tick(200_000);
    assert!(!r.service());
    assert_eq!(r.status(0) & 0x80, 0x80, "OUT stays high");
}

#[test]
fn mode0_first_byte_stops_the_count() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x30);
    r.out(PIT_BASE, 50);
    r.out(PIT_BASE, 0);
    r.at_tick(20);
    r.out(PIT_BASE, 10);
    assert_eq!(r.pit.next_event_ns(), None, "counting stopped by the first byte");
    r.at_tick(40);
    assert_eq!(r.count(PIT_BASE), 30, "the counter holds");
    r.out(PIT_BASE, 0);
    assert_eq!(r.next_edge_tick(), Some(50));
}

#[test]
fn lobyte_and_hibyte_only_access() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x14); // lobyte only, mode 2
    r.out(PIT_BASE, 0x50);
    assert_eq!(r.next_edge_tick(), Some(0x50));
    r.at_tick(0x10);
    assert_eq!((r.inb(PIT_BASE), r.inb(PIT_BASE)), (0x40, 0x40), "each read gives the low byte");
    r.out(PIT_CONTROL, 0x24); // hibyte only
    r.out(PIT_BASE, 0x02);
    assert_eq!(r.next_edge_tick(), Some(0x10 + 0x200));
    r.at_tick(0x10 + 0x100);
    assert_eq!(r.inb(PIT_BASE), 0x01, "the high byte of 0x100");
}

#[test]
fn counter_latch_holds_a_value_for_two_reads() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x34);
    r.out(PIT_BASE, 0x00);
    r.out(PIT_BASE, 0x10); // 4096
    r.at_tick(0x123);
    r.out(PIT_CONTROL, 0x00); // latch counter 0
    r.at_tick(0x500);
    r.out(PIT_CONTROL, 0x00); // a second latch before reading is ignored
    assert_eq!(r.count(PIT_BASE), 0x1000 - 0x123);
    assert_eq!(r.count(PIT_BASE), 0x1000 - 0x500, "released after the high byte");
    r.inb(PIT_BASE); // a lone low-byte read leaves the flip-flop on the high byte
    r.out(PIT_CONTROL, 0x00);
    assert_eq!(r.inb(PIT_BASE), 0x0B, "high byte of the latched 0xB00");
    r.at_tick(0x600);
    assert_eq!(r.inb(PIT_BASE), 0x00, "then its low byte: the latch holds for two reads");
    assert_eq!(r.inb(PIT_BASE), 0x0A, "released: the high byte of the moving 0xA00");
}

#[test]
fn read_back_latches_status_and_count() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x74); // counter 1, lobyte/hibyte, mode 2
    r.out(PIT_BASE + 1, 18);
    r.out(PIT_BASE + 1, 0);
    r.out(PIT_CONTROL, 0x96); // counter 2, lobyte, mode 3
    r.out(PIT_BASE + 2, 8);
    r.at_tick(5);
    r.out(PIT_CONTROL, 0xC0 | 0x04 | 0x08); // count and status of counters 1 and 2
    r.at_tick(9);
    assert_eq!(r.inb(PIT_BASE + 1), 0xB4, "OUT high, lobyte/hibyte, mode 2");
    assert_eq!(r.count(PIT_BASE + 1), 13);
    assert_eq!(r.inb(PIT_BASE + 2), 0x96 & 0x3F | 0x80 | 0x40, "gate low: count not loaded, OUT high");
    assert_eq!(r.inb(PIT_BASE + 2), 0, "counter 2 never started: its idle value");
    r.out(PIT_CONTROL, 0xD0 | 0x02); // count only, counter 0 (unprogrammed)
    assert_eq!(r.count(PIT_BASE), 0);
}

#[test]
fn bcd_counting() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x35); // mode 2, BCD
    r.out(PIT_BASE, 0x00);
    r.out(PIT_BASE, 0x10); // 1000 decimal
    assert_eq!(r.next_edge_tick(), Some(1000));
    r.at_tick(1);
    assert_eq!(r.count(PIT_BASE), 0x0999);
    r.out(PIT_CONTROL, 0x31); // mode 0, BCD, count 0 = 10000
    r.out(PIT_BASE, 0);
    r.out(PIT_BASE, 0);
    assert_eq!(r.next_edge_tick(), Some(10_001));
    r.at_tick(10_002);
    assert_eq!(r.count(PIT_BASE), 0x9999, "BCD wraps at 10000");
}

#[test]
fn new_count_in_mode2_waits_for_the_period_end() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x34);
    r.out(PIT_BASE, 100);
    r.out(PIT_BASE, 0);
    r.at_tick(100);
    assert!(r.service());
    r.at_tick(150);
    r.out(PIT_BASE, 40);
    r.out(PIT_BASE, 0);
    assert_eq!(r.status(0) & 0x40, 0x40, "null count while the new count waits");
    assert_eq!(r.count(PIT_BASE), 50, "still counting the old period");
    assert_eq!(r.next_edge_tick(), Some(200));
    r.at_tick(200);
    assert!(r.service());
    assert_eq!(r.next_edge_tick(), Some(240));
    assert_eq!(r.count(PIT_BASE), 40);
}

#[test]
fn mode4_strobe_rises_one_tick_after_the_count() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x38);
    r.out(PIT_BASE, 10);
    r.out(PIT_BASE, 0);
    r.at_tick(10);
    assert_eq!(r.status(0) & 0x80, 0, "low for one tick");
    assert!(!r.service());
    r.at_tick(11);
    assert!(r.service());
    assert_eq!(r.status(0) & 0x80, 0x80);
    assert_eq!(r.pit.next_event_ns(), None);
}

#[test]
fn channel2_gate_and_output_through_port_b() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0xB6); // counter 2, lobyte/hibyte, mode 3
    r.out(PIT_BASE + 2, 4);
    r.out(PIT_BASE + 2, 0);
    r.at_tick(3);
    assert_eq!(r.inb(PORT_B) & 0x21, 0x20, "gate low: OUT held high");
    r.out(PORT_B, 0x03); // gate on, speaker on
    assert_eq!(r.inb(PORT_B) & 0x0F, 0x03);
    r.at_tick(5);
    assert_eq!(r.inb(PORT_B) & 0x20, 0, "second half of the period started at tick 3");
    r.at_tick(7);
    assert_eq!(r.inb(PORT_B) & 0x20, 0x20);
    assert_eq!(r.pit.next_event_ns(), None, "channel 2 raises no IRQ");
    r.out(PORT_B, 0x00);
    r.at_tick(9);
    assert_eq!(r.inb(PORT_B) & 0x20, 0x20, "gate low forces OUT high in mode 3");
}

#[test]
fn gate_suspends_mode0_and_triggers_modes_1_and_5() {
    let mut r = Rig::new();
    r.out(PORT_B, 0x01);
    r.out(PIT_CONTROL, 0xB0); // counter 2, mode 0
    r.out(PIT_BASE + 2, 10);
    r.out(PIT_BASE + 2, 0);
    r.at_tick(5);
    r.out(PORT_B, 0x00);
    r.at_tick(20);
    assert_eq!(r.count(PIT_BASE + 2), 5, "suspended while the gate is low");
    r.out(PORT_B, 0x01);
    r.at_tick(24);
    assert_eq!(r.inb(PORT_B) & 0x20, 0);
    r.at_tick(25);
    assert_eq!(r.inb(PORT_B) & 0x20, 0x20, "terminal count after 10 counted ticks");

    r.out(PIT_CONTROL, 0xB2); // mode 1: hardware retriggerable one-shot
    r.out(PIT_BASE + 2, 5);
    r.out(PIT_BASE + 2, 0);
    r.at_tick(30);
    assert_eq!(r.inb(PORT_B) & 0x20, 0x20, "no trigger yet (the gate was already high)");
    r.out(PORT_B, 0x00);
    r.out(PORT_B, 0x01);
    r.at_tick(34);
    assert_eq!(r.inb(PORT_B) & 0x20, 0, "low during the one-shot");
    r.at_tick(35);
    assert_eq!(r.inb(PORT_B) & 0x20, 0x20);

    r.out(PIT_CONTROL, 0xBA); // mode 5: hardware triggered strobe
    r.out(PIT_BASE + 2, 3);
    r.out(PIT_BASE + 2, 0);
    r.out(PORT_B, 0x00);
    r.at_tick(40);
    r.out(PORT_B, 0x01);
    r.at_tick(43);
    assert_eq!(r.inb(PORT_B) & 0x20, 0, "the strobe");
    r.at_tick(44);
    assert_eq!(r.inb(PORT_B) & 0x20, 0x20);
}

#[test]
fn refresh_toggle_follows_time() {
    let mut r = Rig::new();
    let mut seen = Vec::new();
    for i in 0..4 {
        r.clock.skip_to(i * REFRESH_NS);
        seen.push(r.inb(PORT_B) & 0x10);
    }
    assert_eq!(seen, [0x00, 0x10, 0x00, 0x10]);
}

#[test]
fn reset_forgets_programming() {
    let mut r = Rig::new();
    r.out(PIT_CONTROL, 0x34);
    r.out(PIT_BASE, 10);
    r.out(PIT_BASE, 0);
    r.out(PORT_B, 0x03);
    r.pit.reset();
    assert_eq!(r.pit.next_event_ns(), None);
    assert_eq!(r.inb(PORT_B) & 0x0F, 0);
    assert_eq!(r.pit.claims(), vec![Claim::ports(0x40, 4), Claim::ports(0x61, 1)]);
}
