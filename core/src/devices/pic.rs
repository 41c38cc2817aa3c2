//! The PC/AT's two 8259A programmable interrupt controllers: the master at 0x20/0x21 takes
//! IRQ 0–7, the slave at 0xA0/0xA1 takes IRQ 8–15 and drives the master's IR2 (cascade).
//!
//! Modelled: the initialisation sequence ICW1–ICW4 (edge or level triggered, single or
//! cascaded, with or without ICW4, auto-EOI, special fully nested mode), OCW1 (mask), OCW2
//! (non-specific, specific and rotating EOI, set priority, rotate in auto-EOI mode), OCW3
//! (IRR/ISR read select, poll, special mask mode), fixed and rotating priority, and the
//! spurious IRQ 7 (vector base + 7 with no ISR bit set) when INTA finds no request left.
//! Choices of this model: a chip asserts INTR only once it has been initialised (its state
//! before ICW1 is undefined on the real part); the MCS-80/85 mode, buffered mode and the
//! slave identity of ICW3 are accepted and ignored (the slave is wired to IR2 as on the AT);
//! an ISA device on IRQ 2 reaches the slave's IR1 (IRQ 9), as on the AT bus.
use crate::device::{Claim, Device, DeviceCtx, InterruptController};
use crate::irq::IrqLines;
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Ports of the master (command, data).
pub const PIC_MASTER: u16 = 0x20;
/// Ports of the slave (command, data).
pub const PIC_SLAVE: u16 = 0xA0;
/// The master input the slave drives.
pub const CASCADE_IRQ: u8 = 2;

/// Where a chip is in its initialisation sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Init {
    /// Never initialised (power-on): no INTR.
    #[default]
    PowerOn,
    Icw2,
    Icw3,
    Icw4,
    Ready,
}

/// One 8259A.
#[derive(Debug, Clone, Default)]
pub struct Pic8259 {
    irr: u8,
    isr: u8,
    imr: u8,
    /// Input levels (level-triggered mode reads them; edge mode latches rising edges).
    levels: u8,
    /// Vector base from ICW2 (low three bits zero).
    base: u8,
    /// The IR with the highest priority (0 until rotated).
    top: u8,
    init: Init,
    need_icw4: bool,
    single: bool,
    level_mode: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    fully_nested: bool,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
}

impl Pic8259 {
    /// Interrupt request register.
    pub fn irr(&self) -> u8 {
        self.irr
    }
    /// In-service register.
    pub fn isr(&self) -> u8 {
        self.isr
    }
    /// Interrupt mask register.
    pub fn imr(&self) -> u8 {
        self.imr
    }
    /// Vector of IR 0 (from ICW2).
    pub fn vector_base(&self) -> u8 {
        self.base
    }
    /// Whether the initialisation sequence has completed.
    pub fn initialized(&self) -> bool {
        self.init == Init::Ready
    }

    /// Priority level (0 = highest) of the most urgent bit of `mask`.
    fn level_of(&self, mask: u8) -> Option<u8> {
        (0..8).find(|p| mask & (1 << ((p + self.top) & 7)) != 0)
    }

    /// The IR to deliver next, if a request outranks everything in service. `cascade` is
    /// the bit of the IR a slave drives (ignored in service with special fully nested mode).
    fn pending(&self, cascade: u8) -> Option<u8> {
        let p = self.level_of(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.fully_nested {
            in_service &= !cascade;
        }
        match self.level_of(in_service) {
            Some(cur) if cur <= p => None,
            _ => Some((p + self.top) & 7),
        }
    }

    /// The INT output.
    fn intr(&self, cascade: u8) -> bool {
        self.initialized() && self.pending(cascade).is_some()
    }

    /// The vector of `irq`.
    fn vector(&self, irq: u8) -> u8 {
        self.base | (irq & 7)
    }

    /// The acknowledge of `irq` (INTA or a poll read).
    fn ack(&mut self, irq: u8) {
        let bit = 1 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.top = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        self.irr = if self.level_mode { (self.irr & !bit) | (self.levels & bit) } else { self.irr & !bit };
    }

    /// New input levels and the rising edges since the last call.
    fn input(&mut self, levels: u8, rising: u8) {
        self.levels = levels;
        if self.level_mode {
            self.irr = levels;
        } else {
            self.irr |= rising;
        }
    }

    /// Write to the command port (A0 = 0): ICW1, OCW2 or OCW3.
    fn write_command(&mut self, v: u8) {
        if v & 0x10 != 0 {
            *self = Pic8259 {
                levels: self.levels,
                init: Init::Icw2,
                need_icw4: v & 0x01 != 0,
                single: v & 0x02 != 0,
                level_mode: v & 0x08 != 0,
                ..Pic8259::default()
            };
            if self.level_mode {
                self.irr = self.levels;
            }
        } else if v & 0x08 != 0 {
            if v & 0x04 != 0 {
                self.poll = true;
            }
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            self.ocw2(v);
        }
    }

    /// OCW2: end of interrupt and priority commands.
    fn ocw2(&mut self, v: u8) {
        let irq = v & 7;
        match v >> 5 {
            0 => self.rotate_on_auto_eoi = false,
            4 => self.rotate_on_auto_eoi = true,
            cmd @ (1 | 5) => {
                if let Some(p) = self.level_of(self.isr) {
                    let done = (p + self.top) & 7;
                    self.isr &= !(1 << done);
                    if cmd == 5 {
                        self.top = (done + 1) & 7;
                    }
                }
            }
            3 => self.isr &= !(1 << irq),
            6 => self.top = (irq + 1) & 7,
            7 => {
                self.isr &= !(1 << irq);
                self.top = (irq + 1) & 7;
            }
            _ => {} // 2: no operation
        }
    }

    /// Write to the data port (A0 = 1): ICW2–ICW4 during initialisation, else OCW1.
    fn write_data(&mut self, v: u8) {
        self.init = match self.init {
            Init::Icw2 => {
                self.base = v & 0xF8;
                match (self.single, self.need_icw4) {
                    (false, _) => Init::Icw3,
                    (true, true) => Init::Icw4,
                    (true, false) => Init::Ready,
                }
            }
            Init::Icw3 if self.need_icw4 => Init::Icw4,
            Init::Icw3 => Init::Ready,
            Init::Icw4 => {
                self.auto_eoi = v & 0x02 != 0;
                self.fully_nested = v & 0x10 != 0;
                Init::Ready
            }
            state @ (Init::PowerOn | Init::Ready) => {
                self.imr = v;
                state
            }
        };
    }

    /// A read of the command (`a0` false) or data port: the poll word after a poll command,
    /// else IRR/ISR (command port, as OCW3 selected) or IMR.
    fn read(&mut self, a0: bool, cascade: u8) -> u8 {
        if self.poll {
            self.poll = false;
            return match self.pending(cascade) {
                Some(irq) => {
                    self.ack(irq);
                    0x80 | irq
                }
                None => 0,
            };
        }
        match (a0, self.read_isr) {
            (false, false) => self.irr,
            (false, true) => self.isr,
            (true, _) => self.imr,
        }
    }
}

/// The master/slave pair of the PC/AT.
#[derive(Debug, Clone, Default)]
pub struct Pic8259Pair {
    master: Pic8259,
    slave: Pic8259,
    /// The slave's INT output as the master last saw it.
    slave_out: bool,
}

impl Pic8259Pair {
    /// The master (IRQ 0–7).
    pub fn master(&self) -> &Pic8259 {
        &self.master
    }

    /// The slave (IRQ 8–15).
    pub fn slave(&self) -> &Pic8259 {
        &self.slave
    }

    /// The master's IR bit that the slave drives, unless the master runs single.
    fn cascade_bit(&self) -> u8 {
        if self.master.single {
            0
        } else {
            1 << CASCADE_IRQ
        }
    }

    /// Feeds the slave's INT output to the master's IR2.
    fn cascade(&mut self) {
        let out = self.slave.intr(0);
        let rising = if out && !self.slave_out { 1 << CASCADE_IRQ } else { 0 };
        self.slave_out = out;
        let levels = (self.master.levels & !(1 << CASCADE_IRQ)) | if out { 1 << CASCADE_IRQ } else { 0 };
        self.master.input(levels, rising);
    }

    /// New IRQ line levels and rising edges (bit n = IRQ n; IRQ 2 goes to IRQ 9).
    pub fn set_lines(&mut self, levels: u16, rising: u16) {
        let redirect = |x: u16| (x & !0x0004) | ((x & 0x0004) << 7);
        let (levels, rising) = (redirect(levels), redirect(rising));
        self.slave.input((levels >> 8) as u8, (rising >> 8) as u8);
        let keep = self.master.levels & (1 << CASCADE_IRQ);
        self.master.input((levels as u8 & !(1 << CASCADE_IRQ)) | keep, rising as u8 & !(1 << CASCADE_IRQ));
        self.cascade();
    }

    /// A guest write to `port` (0x20, 0x21, 0xA0 or 0xA1; others are ignored).
    pub fn write_port(&mut self, port: u16, v: u8) {
        let chip = match port & !1 {
            PIC_MASTER => &mut self.master,
            PIC_SLAVE => &mut self.slave,
            _ => return,
        };
        if port & 1 == 0 {
            chip.write_command(v);
        } else {
            chip.write_data(v);
        }
        self.cascade();
    }

    /// A guest read of `port` (0x20, 0x21, 0xA0 or 0xA1; others read all ones).
    pub fn read_port(&mut self, port: u16) -> u8 {
        let cascade = self.cascade_bit();
        let v = match port & !1 {
            PIC_MASTER => self.master.read(port & 1 != 0, cascade),
            PIC_SLAVE => self.slave.read(port & 1 != 0, 0),
            _ => return 0xFF,
        };
        self.cascade();
        v
    }
}

impl InterruptController for Pic8259Pair {
    fn update_lines(&mut self, lines: &mut IrqLines) {
        let levels = lines.levels();
        let rising = lines.take_rising();
        self.set_lines(levels, rising);
    }

    fn intr(&self) -> bool {
        self.master.intr(self.cascade_bit())
    }

    fn acknowledge(&mut self) -> u8 {
        let cascade = self.cascade_bit();
        let vector = match self.master.pending(cascade) {
            Some(irq) if cascade & (1 << irq) != 0 => {
                self.master.ack(irq);
                match self.slave.pending(0) {
                    Some(s) => {
                        self.slave.ack(s);
                        self.slave.vector(s)
                    }
                    None => self.slave.vector(7),
                }
            }
            Some(irq) => {
                self.master.ack(irq);
                self.master.vector(irq)
            }
            None => self.master.vector(7),
        };
        self.cascade();
        vector
    }
}

impl Device for Pic8259Pair {
    fn name(&self) -> &'static str {
        "8259A PIC pair"
    }
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(PIC_MASTER, 2), Claim::ports(PIC_SLAVE, 2)]
    }
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        crate::device::read_byte_ports(base, offset, data, |p| self.read_port(p));
    }
    fn write(&mut self, base: u64, offset: u64, data: &[u8], _ctx: &mut DeviceCtx<'_>) {
        crate::device::write_byte_ports(base, offset, data, |p, b| self.write_port(p, b));
    }
    /// Both chips' registers, initialisation state and modes, and the cascade line.
    fn save(&self, out: &mut StateWriter) {
        self.master.save(out);
        self.slave.save(out);
        out.bool(self.slave_out);
    }
    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        self.master = Pic8259::restore(state)?;
        self.slave = Pic8259::restore(state)?;
        self.slave_out = state.bool()?;
        Ok(())
    }
    fn reset(&mut self) {
        *self = Pic8259Pair::default();
    }
    fn interrupt_controller(&mut self) -> Option<&mut dyn InterruptController> {
        Some(self)
    }
}

mod state;
#[cfg(test)]
mod tests;
