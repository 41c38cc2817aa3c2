//! Unit tests of the 8259A pair, driven through its ports and IRQ lines without any CPU.
use super::*;
use crate::{Clock, IoBus};

/// The pair with the IRQ lines that feed it.
struct Rig {
    pic: Pic8259Pair,
    lines: IrqLines,
}

impl Rig {
    fn new() -> Self {
        Rig { pic: Pic8259Pair::default(), lines: IrqLines::default() }
    }

    /// Initialised as a PC BIOS does: vectors 0x08 and 0x70, cascade on IR2, 8086 mode.
    fn pc() -> Self {
        let mut r = Rig::new();
        r.init(0x11, 0x01);
        r
    }

    fn init(&mut self, icw1: u8, icw4: u8) {
        for (cmd, data, base, icw3) in [(0x20, 0x21, 0x08, 0x04), (0xA0, 0xA1, 0x70, 0x02)] {
            self.out(cmd, icw1);
            self.out(data, base);
            self.out(data, icw3);
            self.out(data, icw4);
        }
    }

    fn out(&mut self, port: u16, v: u8) {
        self.pic.write_port(port, v);
    }

    fn inb(&mut self, port: u16) -> u8 {
        self.pic.read_port(port)
    }

    fn sync(&mut self) {
        self.pic.update_lines(&mut self.lines);
    }

    fn raise(&mut self, line: u8) {
        self.lines.raise(line);
        self.sync();
    }

    fn lower(&mut self, line: u8) {
        self.lines.lower(line);
        self.sync();
    }

    fn pulse(&mut self, line: u8) {
        self.lines.pulse(line);
        self.sync();
    }

    /// INTA if INTR is asserted.
    fn take(&mut self) -> Option<u8> {
        self.pic.intr().then(|| self.pic.acknowledge())
    }
}

#[test]
fn pc_initialisation_delivers_irq0_on_vector_8() {
    let mut r = Rig::pc();
    assert!(r.pic.master().initialized() && r.pic.slave().initialized());
    assert_eq!((r.pic.master().vector_base(), r.pic.slave().vector_base()), (0x08, 0x70));
    assert_eq!(r.inb(0x21), 0, "ICW1 clears the mask");
    assert!(!r.pic.intr());
    r.pulse(0);
    assert!(r.pic.intr());
    assert_eq!(r.pic.master().irr(), 0x01);
    assert_eq!(r.pic.acknowledge(), 0x08);
    assert_eq!((r.pic.master().irr(), r.pic.master().isr()), (0x00, 0x01));
    assert!(!r.pic.intr());
    r.pulse(0);
    assert!(!r.pic.intr(), "IRQ 0 waits while IRQ 0 is in service");
    r.out(0x20, 0x20); // non-specific EOI
    assert_eq!(r.pic.master().isr(), 0);
    assert_eq!(r.take(), Some(0x08), "the edge latched during service is delivered after EOI");
}

#[test]
fn nothing_is_asserted_before_or_during_initialisation() {
    let mut r = Rig::new();
    r.pulse(1);
    assert_eq!(r.pic.master().irr(), 0x02, "edges latch at power-on");
    assert!(!r.pic.intr(), "an uninitialised chip does not interrupt");
    r.out(0x20, 0x11);
    assert_eq!(r.pic.master().irr(), 0, "ICW1 resets the edge latches");
    r.pulse(1);
    assert!(!r.pic.intr(), "still waiting for ICW2-4");
    r.out(0x21, 0x08);
    r.out(0x21, 0x04);
    assert!(!r.pic.intr());
    r.out(0x21, 0x01);
    assert_eq!(r.take(), Some(0x09));
}

#[test]
fn icw_sequences_without_icw3_or_icw4() {
    // Single, no ICW4: ICW2 then straight to OCW1.
    let mut r = Rig::new();
    r.out(0x20, 0x12);
    r.out(0x21, 0x40);
    assert!(r.pic.master().initialized());
    r.out(0x21, 0x02);
    assert_eq!(r.inb(0x21), 0x02, "the byte after ICW2 is OCW1");
    r.pulse(1);
    assert!(!r.pic.intr(), "masked");
    r.out(0x21, 0x00);
    assert_eq!(r.take(), Some(0x41));
    // Single with ICW4: ICW2, ICW4 (auto-EOI).
    let mut r = Rig::new();
    r.out(0x20, 0x13);
    r.out(0x21, 0x50);
    r.out(0x21, 0x03);
    assert!(r.pic.master().initialized());
    r.pulse(2);
    assert_eq!(r.take(), None, "IRQ 2 goes to the slave's IR1, and the slave is not initialised");
    r.pulse(1);
    assert_eq!(r.take(), Some(0x51));
    assert_eq!(r.pic.master().isr(), 0, "auto-EOI");
    // Cascade without ICW4: ICW2, ICW3, then OCW1.
    let mut r = Rig::new();
    r.out(0x20, 0x10);
    r.out(0x21, 0x20);
    r.out(0x21, 0x04);
    assert!(r.pic.master().initialized());
    r.out(0x21, 0x7F);
    assert_eq!(r.inb(0x21), 0x7F);
}

#[test]
fn masks_hold_requests_back() {
    let mut r = Rig::pc();
    r.out(0x21, 0xFE);
    r.pulse(3);
    assert!(!r.pic.intr());
    assert_eq!(r.pic.master().irr(), 0x08, "a masked request stays in IRR");
    r.pulse(0);
    assert_eq!(r.take(), Some(0x08));
    r.out(0x20, 0x20);
    r.out(0x21, 0x00);
    assert_eq!(r.take(), Some(0x0B), "unmasking releases the held request");
}

#[test]
fn fixed_priority_and_nesting() {
    let mut r = Rig::pc();
    r.pulse(3);
    r.pulse(1);
    assert_eq!(r.take(), Some(0x09), "IRQ 1 outranks IRQ 3");
    assert_eq!(r.take(), None, "IRQ 3 waits for IRQ 1's EOI");
    r.pulse(0);
    assert_eq!(r.take(), Some(0x08), "IRQ 0 preempts IRQ 1");
    assert_eq!(r.pic.master().isr(), 0x03);
    r.out(0x20, 0x20);
    assert_eq!(r.pic.master().isr(), 0x02, "non-specific EOI ends the highest in service");
    assert_eq!(r.take(), None);
    r.out(0x20, 0x20);
    assert_eq!(r.take(), Some(0x0B));
}

#[test]
fn specific_eoi_ends_the_named_level() {
    let mut r = Rig::pc();
    r.pulse(4);
    r.take();
    r.pulse(3);
    r.take();
    assert_eq!(r.pic.master().isr(), 0x18);
    r.out(0x20, 0x64); // specific EOI for IR4
    assert_eq!(r.pic.master().isr(), 0x08);
    r.out(0x20, 0x65); // IR5 is not in service: nothing changes
    assert_eq!(r.pic.master().isr(), 0x08);
    r.out(0x20, 0x40); // OCW2 no-op
    assert_eq!(r.pic.master().isr(), 0x08);
}

#[test]
fn ocw3_selects_irr_or_isr_and_polls() {
    let mut r = Rig::pc();
    r.out(0x21, 0xFF);
    r.pulse(5);
    r.pulse(6);
    assert_eq!(r.inb(0x20), 0x60, "IRR is read by default");
    r.out(0x20, 0x0B);
    assert_eq!(r.inb(0x20), 0x00, "ISR");
    r.out(0x20, 0x08); // OCW3 without RR: selection unchanged
    assert_eq!(r.inb(0x20), 0x00);
    r.out(0x20, 0x0A);
    assert_eq!(r.inb(0x20), 0x60);
    assert_eq!(r.inb(0x21), 0xFF, "the data port reads IMR");
    r.out(0x21, 0x00);
    r.out(0x20, 0x0C); // poll
    assert_eq!(r.inb(0x20), 0x85, "poll word: request on IR5");
    assert_eq!(r.pic.master().isr(), 0x20, "a poll read acknowledges");
    r.out(0x20, 0x0C);
    assert_eq!(r.inb(0x21), 0x00, "IR6 is blocked by IR5 in service: no request");
    assert_eq!(r.inb(0x21), 0x00, "and the poll mode ends after one read (IMR)");
}

#[test]
fn cascade_delivers_slave_vectors() {
    let mut r = Rig::pc();
    r.pulse(12);
    assert!(r.pic.intr());
    assert_eq!(r.pic.master().irr(), 0x04, "the slave raises IR2 on the master");
    assert_eq!(r.pic.acknowledge(), 0x74);
    assert_eq!((r.pic.master().isr(), r.pic.slave().isr()), (0x04, 0x10));
    r.pulse(8);
    assert!(!r.pic.intr(), "IR2 is in service on the master (no special fully nested mode)");
    r.out(0xA0, 0x20);
    assert!(!r.pic.intr(), "still in service on the master");
    r.out(0x20, 0x20);
    assert_eq!(r.take(), Some(0x70), "after both EOIs IRQ 8 comes through");
    r.out(0xA0, 0x20);
    r.out(0x20, 0x20);
    r.out(0xA1, 0xFF);
    r.pulse(15);
    assert_eq!(r.take(), None, "masked on the slave");
}

#[test]
fn isa_irq2_is_irq9() {
    let mut r = Rig::pc();
    r.pulse(2);
    assert_eq!(r.pic.slave().irr(), 0x02);
    assert_eq!(r.take(), Some(0x71));
}

#[test]
fn spurious_irq7_on_both_chips() {
    let mut r = Rig::pc();
    assert_eq!(r.pic.acknowledge(), 0x0F, "INTA without a request: master IR7");
    assert_eq!(r.pic.master().isr(), 0, "a spurious IRQ 7 sets no ISR bit");
    r.pulse(12);
    assert!(r.pic.intr());
    r.out(0xA1, 0x10); // the slave's request goes away, the master's edge stays latched
    assert!(r.pic.intr());
    assert_eq!(r.pic.acknowledge(), 0x77, "the slave answers with its IR7");
    assert_eq!((r.pic.master().isr(), r.pic.slave().isr()), (0x04, 0x00));
}

#[test]
fn auto_eoi_and_rotation_in_auto_eoi() {
    let mut r = Rig::new();
    r.init(0x11, 0x03);
    r.pulse(3);
    assert_eq!(r.take(), Some(0x0B));
    assert_eq!(r.pic.master().isr(), 0, "auto-EOI sets no ISR bit");
    r.pulse(3);
    assert_eq!(r.take(), Some(0x0B), "and needs no EOI");
    r.out(0x20, 0x80); // rotate in auto-EOI mode
    r.pulse(3);
    assert_eq!(r.take(), Some(0x0B));
    r.pulse(3);
    r.pulse(4);
    assert_eq!(r.take(), Some(0x0C), "IR3 served last has the lowest priority now");
    assert_eq!(r.take(), Some(0x0B));
    r.out(0x20, 0x00); // rotation off
    r.pulse(3);
    r.pulse(4);
    assert_eq!(r.take(), Some(0x0C), "the priority stays where the last rotation left it (IR4 highest)");
}

#[test]
fn rotating_priority_commands() {
    let mut r = Rig::pc();
    r.out(0x20, 0xC3); // set priority: IR3 lowest, IR4 highest
    r.pulse(3);
    r.pulse(4);
    r.pulse(0);
    assert_eq!(r.take(), Some(0x0C));
    r.out(0x20, 0xA0); // rotate on non-specific EOI: IR4 done, IR4 becomes lowest
    assert_eq!(r.pic.master().isr(), 0);
    assert_eq!(r.take(), Some(0x08), "IR5 is highest now, IR0 next among the requests");
    r.out(0x20, 0xE0); // rotate on specific EOI of IR0: IR1 highest
    assert_eq!(r.pic.master().isr(), 0);
    r.pulse(0);
    assert_eq!(r.take(), Some(0x0B), "IR3 outranks IR0 after the rotation");
}

#[test]
fn level_triggered_mode_follows_the_line() {
    let mut r = Rig::new();
    r.init(0x19, 0x01);
    r.raise(5);
    assert_eq!(r.take(), Some(0x0D));
    r.out(0x20, 0x20);
    assert_eq!(r.take(), Some(0x0D), "still high after EOI: interrupts again");
    r.lower(5);
    r.out(0x20, 0x20);
    assert_eq!(r.take(), None);
    assert_eq!(r.pic.master().irr(), 0);
    r.raise(5);
    r.lower(5);
    assert_eq!(r.take(), None, "a pulse is not held in level mode");
}

#[test]
fn edge_mode_needs_a_new_edge() {
    let mut r = Rig::pc();
    r.raise(6);
    assert_eq!(r.take(), Some(0x0E));
    r.out(0x20, 0x20);
    assert_eq!(r.take(), None, "a line held high does not interrupt again");
    r.lower(6);
    r.raise(6);
    assert_eq!(r.take(), Some(0x0E));
}

#[test]
fn special_mask_mode_enables_lower_levels() {
    let mut r = Rig::pc();
    r.pulse(1);
    assert_eq!(r.take(), Some(0x09));
    r.pulse(5);
    assert_eq!(r.take(), None);
    r.out(0x21, 0x02); // mask IR1
    r.out(0x20, 0x68); // set special mask mode
    assert_eq!(r.take(), Some(0x0D), "IR5 is enabled while IR1 is masked in service");
    r.out(0x20, 0x48); // reset special mask mode
    r.out(0x20, 0x65);
    r.pulse(6);
    assert_eq!(r.take(), None, "IR1 in service blocks again");
}

#[test]
fn special_fully_nested_mode_lets_the_slave_nest() {
    for (icw4, nested) in [(0x01, false), (0x11, true)] {
        let mut r = Rig::new();
        r.init(0x11, icw4);
        r.pulse(12);
        assert_eq!(r.take(), Some(0x74));
        r.pulse(9);
        assert_eq!(r.take(), nested.then_some(0x71), "icw4 {icw4:#x}");
    }
}

#[test]
fn device_interface_and_bus() {
    let mut bus = IoBus::capturing();
    bus.register(Pic8259Pair::default()).unwrap();
    let e = bus.register(Pic8259Pair::default()).unwrap_err();
    assert!(e.to_string().contains("already is the machine's"), "{e}");
    for (port, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFA)] {
        assert_eq!(bus.pio_write(port, &[v]), crate::IoAction::Continue);
    }
    let mut b = [0u8; 2];
    bus.pio_read(0x20, &mut b);
    assert_eq!(b, [0x00, 0xFA], "a word read gives IRR then IMR");
    let pic = bus.find::<Pic8259Pair>().unwrap();
    assert_eq!(pic.master().imr(), 0xFA);
    let clock = Clock::default();
    let mut lines = IrqLines::default();
    let mut ctx = DeviceCtx::new(&clock, &mut lines);
    let mut p = Pic8259Pair::default();
    p.write(0xA0, 1, &[0x5A], &mut ctx);
    let mut d = [0u8];
    p.read(0xA0, 1, &mut d, &mut ctx);
    assert_eq!(d[0], 0x5A);
    p.reset();
    assert_eq!(p.slave().imr(), 0);
}
