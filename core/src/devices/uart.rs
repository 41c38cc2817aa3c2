//! A 16550A UART (COM1 at 0x3F8–0x3FF by default) as a register-level state machine.
//!
//! Transmitted bytes go to a [`Sink`] (the host's stdout by default) the moment they are
//! written, so the line status always reports the transmitter empty. The divisor latch (DLAB),
//! scratch, modem control with loopback, FIFO control and interrupt identification registers
//! behave as on the real part, so BIOS-style detection and polling code works. Received bytes
//! come from an input queue the host fills with [`Uart16550::push_input`]; reading an empty
//! receiver never blocks. No IRQ line is modelled yet (IIR still reports what would be pending).
//! Writes to offset 0 (THR, or DLL with DLAB set) are declared coalescible: their effects are
//! only observable through later accesses to the UART.
use std::collections::VecDeque;

use super::Sink;
use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// First port of COM1.
pub const COM1_BASE: u16 = 0x3F8;

const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IIR_NONE: u8 = 0x01;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_FIFO: u8 = 0xC0;
/// CTS, DSR and DCD asserted: a terminal is attached.
const MSR_DEFAULT: u8 = 0xB0;
/// Most bytes the host input queue holds.
const MAX_INPUT: usize = 65536;
/// Receive FIFO depth of a 16550A.
const RX_FIFO: usize = 16;

/// The 16550A register file and its queues.
#[derive(Debug)]
pub struct Uart16550 {
    /// Where transmitted bytes go.
    pub out: Sink,
    base: u16,
    input: VecDeque<u8>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    fcr: u8,
    divisor: u16,
    thre_pending: bool,
    overrun: bool,
}

impl Uart16550 {
    /// COM1 (ports 0x3F8–0x3FF).
    pub fn new(out: Sink) -> Self {
        Uart16550::at(COM1_BASE, out)
    }

    /// A UART whose eight registers start at port `base`.
    pub fn at(base: u16, out: Sink) -> Self {
        Uart16550 {
            out,
            base,
            input: VecDeque::new(),
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            fcr: 0,
            divisor: 12, // 9600 baud from the 1.8432 MHz clock
            thre_pending: false,
            overrun: false,
        }
    }

    /// Queues bytes for the guest to receive. Bytes beyond a full receive queue of 64 KiB
    /// are dropped and reported as an overrun in LSR, as a real UART would.
    pub fn push_input(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.input.len() >= MAX_INPUT {
                self.overrun = true;
            } else {
                self.input.push_back(b);
            }
        }
    }

    /// The programmed divisor latch (115200 / divisor = baud rate).
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn lsr(&self) -> u8 {
        let mut v = LSR_THRE | LSR_TEMT;
        if !self.input.is_empty() {
            v |= LSR_DR;
        }
        if self.overrun {
            v |= 0x02;
        }
        v
    }

    fn msr(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            // Loopback: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
            let m = self.mcr;
            ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
        } else {
            MSR_DEFAULT
        }
    }

    fn iir(&self) -> u8 {
        let fifo = if self.fcr & 1 != 0 { IIR_FIFO } else { 0 };
        let id = if self.ier & IER_RDA != 0 && !self.input.is_empty() {
            IIR_RDA
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE
        } else {
            IIR_NONE
        };
        fifo | id
    }

    /// First port of the UART.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Reads register `offset` (0–7).
    pub fn read_reg(&mut self, offset: u16) -> u8 {
        match offset {
            0 if self.dlab() => self.divisor as u8,
            0 => self.input.pop_front().unwrap_or(0),
            1 if self.dlab() => (self.divisor >> 8) as u8,
            1 => self.ier,
            2 => {
                let v = self.iir();
                if v & 0x0F == IIR_THRE {
                    self.thre_pending = false;
                }
                v
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let v = self.lsr();
                self.overrun = false;
                v
            }
            6 => self.msr(),
            7 => self.scr,
            _ => 0xFF,
        }
    }

    /// Writes register `offset` (0–7).
    pub fn write_reg(&mut self, offset: u16, value: u8) {
        match offset {
            0 if self.dlab() => self.divisor = (self.divisor & 0xFF00) | value as u16,
            0 => {
                if self.mcr & MCR_LOOP != 0 {
                    if self.input.len() < RX_FIFO {
                        self.input.push_back(value);
                    } else {
                        self.overrun = true;
                    }
                } else {
                    self.out.put(value);
                }
                self.thre_pending = true;
            }
            1 if self.dlab() => self.divisor = (self.divisor & 0x00FF) | ((value as u16) << 8),
            1 => {
                let newly_thre = value & IER_THRE != 0 && self.ier & IER_THRE == 0;
                self.ier = value & 0x0F;
                if newly_thre {
                    self.thre_pending = true;
                }
            }
            2 => {
                self.fcr = value & 0xC9;
                if value & 0x02 != 0 {
                    self.input.clear();
                }
            }
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1F,
            7 => self.scr = value,
            _ => {} // LSR and MSR are read-only
        }
    }
}

impl Device for Uart16550 {
    fn name(&self) -> &'static str {
        "16550 UART"
    }

    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(self.base, 8).coalescible(0..1)]
    }

    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_reg(offset as u16 + i as u16);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8], _ctx: &mut DeviceCtx<'_>) {
        for (i, &b) in data.iter().enumerate() {
            self.write_reg(offset as u16 + i as u16, b);
        }
    }

    /// The registers, the divisor, the pending THRE and overrun conditions and the receive
    /// queue (bytes the guest has not read yet). The port base is checked, not loaded.
    fn save(&self, out: &mut StateWriter) {
        out.u16(self.base);
        for r in [self.ier, self.lcr, self.mcr, self.scr, self.fcr] {
            out.u8(r);
        }
        out.u16(self.divisor);
        out.bool(self.thre_pending);
        out.bool(self.overrun);
        let input: Vec<u8> = self.input.iter().copied().collect();
        out.bytes(&input);
    }

    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        let base = state.u16()?;
        if base != self.base {
            return Err(
                state.invalid(format!("the UART is at port {base:#x}, this machine's at {:#x}", self.base))
            );
        }
        self.ier = state.u8()? & 0x0F;
        self.lcr = state.u8()?;
        self.mcr = state.u8()? & 0x1F;
        self.scr = state.u8()?;
        self.fcr = state.u8()? & 0xC9;
        self.divisor = state.u16()?;
        self.thre_pending = state.bool()?;
        self.overrun = state.bool()?;
        self.input = state.bytes(MAX_INPUT)?.iter().copied().collect();
        Ok(())
    }

    /// Back to the power-on register values, input and capture cleared.
    fn reset(&mut self) {
        let out = std::mem::take(&mut self.out);
        *self = Uart16550::at(self.base, out);
        self.out.reset();
    }

    fn flush(&mut self) {
        self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uart() -> Uart16550 {
        let u = Uart16550::at(0x2F8, Sink::capture());
        assert_eq!(u.claims(), vec![Claim::ports(0x2F8, 8).coalescible(0..1)]);
        Uart16550::new(Sink::capture())
    }

    #[test]
    fn transmit_goes_to_sink_and_lsr_says_empty() {
        let mut u = uart();
        assert_eq!(u.read_reg(5) & 0x60, 0x60);
        u.write_reg(0, b'A');
        u.write_reg(0, b'\n');
        assert_eq!(u.out.captured(), b"A\n");
        assert_eq!(u.read_reg(5) & 0x61, 0x60);
    }

    #[test]
    fn dlab_selects_divisor_latch() {
        let mut u = uart();
        u.write_reg(3, 0x80);
        u.write_reg(0, 0x01);
        u.write_reg(1, 0x00);
        assert_eq!(u.divisor(), 1);
        assert_eq!(u.read_reg(0), 1);
        u.write_reg(3, 0x03);
        assert_eq!(u.read_reg(3), 0x03);
        u.write_reg(0, b'x');
        assert_eq!(u.out.captured(), b"x");
        assert_eq!(u.divisor(), 1);
    }

    #[test]
    fn scratch_and_loopback() {
        let mut u = uart();
        u.write_reg(7, 0x5A);
        assert_eq!(u.read_reg(7), 0x5A);
        u.write_reg(4, 0x1E); // loopback, RTS, OUT1, OUT2
        assert_eq!(u.read_reg(6) & 0xF0, 0xD0);
        u.write_reg(0, 0xAE);
        assert_eq!(u.out.captured(), b"");
        assert_eq!(u.read_reg(5) & 1, 1);
        assert_eq!(u.read_reg(0), 0xAE);
        assert_eq!(u.read_reg(5) & 1, 0);
    }

    #[test]
    fn receive_queue_and_iir() {
        let mut u = uart();
        assert_eq!(u.read_reg(2), 0x01);
        u.write_reg(2, 0x07);
        assert_eq!(u.read_reg(2), 0xC1);
        u.write_reg(1, IER_RDA | IER_THRE);
        assert_eq!(u.read_reg(2), 0xC2);
        assert_eq!(u.read_reg(2), 0xC1);
        u.push_input(b"hi");
        assert_eq!(u.read_reg(2), 0xC4);
        assert_eq!(u.read_reg(0), b'h');
        assert_eq!(u.read_reg(0), b'i');
        assert_eq!(u.read_reg(0), 0);
        assert_eq!(u.read_reg(5) & 1, 0);
    }

    #[test]
    fn reset_restores_defaults() {
        let mut u = uart();
        u.write_reg(3, 0x83);
        u.write_reg(0, 3);
        u.reset();
        assert_eq!(u.read_reg(3), 0);
        assert_eq!(u.divisor(), 12);
        assert_eq!(u.base(), COM1_BASE);
    }
}
