//! The 8253/8254 programmable interval timer of the PC (ports 0x40–0x43) with the system
//! control port B (0x61) that gates its channel 2 and reads its output.
//!
//! The counters run from a 1.193182 MHz input clock derived from the machine's clock, so a
//! counter read gives a value moving with (virtual or real) time, and OUT levels are
//! computed, not simulated. Channel 0's OUT drives IRQ 0: the device declares the clock time
//! of its next rising edge as its event deadline, and [`Device::fire`] pulses IRQ 0 there
//! (edges that fell due together, after the clock jumped, make one request, as a PIC would
//! latch them). Channel 1 (DRAM refresh on the PC) counts but drives nothing; channel 2's
//! gate is port B bit 0 and its OUT is port B bit 5 (the speaker; no sound is produced).
//! All six modes, the counter latch command, the 8254 read-back command (count and status),
//! lobyte/hibyte/both access and BCD counting are modelled (see the `channel` module for the timing
//! choices). Port B also reports the DRAM refresh toggle (bit 4, every 15.085 µs), which BIOS
//! delay loops poll.
mod channel;
mod state;

use channel::{Access, Channel};

use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Input clock of the counters in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Port of counter 0 (counters 1 and 2 follow; 0x43 is the control word).
pub const PIT_BASE: u16 = 0x40;
/// The mode/command register.
pub const PIT_CONTROL: u16 = 0x43;
/// System control port B.
pub const PORT_B: u16 = 0x61;
/// The IRQ line of channel 0.
pub const PIT_IRQ: u8 = 0;
/// Half period of the DRAM refresh toggle of port B bit 4, in ns.
const REFRESH_NS: u64 = 15_085;
const NS_PER_S: u128 = 1_000_000_000;

/// Input clock ticks elapsed at clock time `ns`.
pub fn ticks_at(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / NS_PER_S) as u64
}

/// The first clock time (ns) at which tick `t` has elapsed.
pub fn ns_of_tick(t: u64) -> u64 {
    (u128::from(t) * NS_PER_S).div_ceil(u128::from(PIT_HZ)).min(u128::from(u64::MAX)) as u64
}

/// The 8254 and port B.
#[derive(Debug, Clone)]
pub struct Pit8254 {
    channels: [Channel; 3],
    /// Port B bits 0–3 as written (timer 2 gate, speaker enable, parity/IOCHK enables).
    port_b: u8,
    /// Channel 0: rising edges up to this tick have been signalled.
    fired: u64,
}

impl Default for Pit8254 {
    fn default() -> Self {
        Pit8254 {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: 0,
            fired: 0,
        }
    }
}

impl Pit8254 {
    /// A write of `v` to `port` (0x40–0x43 or 0x61) at clock time `now_ns`.
    pub fn write_port(&mut self, port: u16, v: u8, now_ns: u64) {
        let t = ticks_at(now_ns);
        match port {
            PIT_CONTROL => self.control(v, t),
            PORT_B => {
                self.port_b = v & 0x0F;
                self.channels[2].set_gate(v & 1 != 0, t);
            }
            p @ PIT_BASE..=0x42 => self.channels[usize::from(p - PIT_BASE)].write(v, t),
            _ => {}
        }
    }

    /// A read of `port` (0x40–0x43 or 0x61) at clock time `now_ns`.
    pub fn read_port(&mut self, port: u16, now_ns: u64) -> u8 {
        let t = ticks_at(now_ns);
        match port {
            PORT_B => {
                let refresh = u8::from((now_ns / REFRESH_NS) & 1 == 1) << 4;
                self.channels[2].settle(t);
                let out2 = u8::from(self.channels[2].out(t)) << 5;
                self.port_b | refresh | out2
            }
            p @ PIT_BASE..=0x42 => self.channels[usize::from(p - PIT_BASE)].read(t),
            _ => 0xFF, // the control register cannot be read
        }
    }

    /// The control word: program a counter, latch its count, or read back.
    fn control(&mut self, v: u8, t: u64) {
        let select = usize::from(v >> 6);
        if select == 3 {
            for (c, ch) in self.channels.iter_mut().enumerate() {
                if v & (2 << c) != 0 {
                    if v & 0x20 == 0 {
                        ch.latch_count(t);
                    }
                    if v & 0x10 == 0 {
                        ch.latch_status(t);
                    }
                }
            }
            return;
        }
        let ch = &mut self.channels[select];
        let access = match (v >> 4) & 3 {
            0 => return ch.latch_count(t),
            1 => Access::Lo,
            2 => Access::Hi,
            _ => Access::LoHi,
        };
        ch.program(access, (v >> 1) & 7, v & 1 != 0, t);
    }

    /// Tick of channel 0's next rising edge not yet signalled.
    fn next_edge(&self) -> Option<u64> {
        self.channels[0].next_rise_after(self.fired)
    }
}

impl Device for Pit8254 {
    fn name(&self) -> &'static str {
        "8254 PIT"
    }

    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(PIT_BASE, 4), Claim::ports(PORT_B, 1)]
    }

    fn read(&mut self, base: u64, offset: u64, data: &mut [u8], ctx: &mut DeviceCtx<'_>) {
        let now = ctx.now_ns();
        crate::device::read_byte_ports(base, offset, data, |p| self.read_port(p, now));
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let now = ctx.now_ns();
        crate::device::write_byte_ports(base, offset, data, |p, b| self.write_port(p, b, now));
    }

    fn timed(&self) -> bool {
        true
    }

    fn next_event_ns(&self) -> Option<u64> {
        self.next_edge().map(ns_of_tick)
    }

    fn fire(&mut self, ctx: &mut DeviceCtx<'_>) {
        let t = ticks_at(ctx.now_ns());
        if self.next_edge().is_some_and(|e| e <= t) {
            ctx.pulse_irq(PIT_IRQ);
        }
        self.channels[0].settle(t);
        self.fired = self.fired.max(t);
    }

    /// The three counters (programming, count, origin, latches, gate), port B and the last
    /// signalled tick of channel 0; times are ticks of the machine clock, which is saved too.
    fn save(&self, out: &mut StateWriter) {
        for ch in &self.channels {
            ch.save(out);
        }
        out.u8(self.port_b);
        out.u64(self.fired);
    }
    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        for ch in &mut self.channels {
            *ch = Channel::restore(state)?;
        }
        self.port_b = state.u8()? & 0x0F;
        self.fired = state.u64()?;
        Ok(())
    }
    fn reset(&mut self) {
        *self = Pit8254::default();
    }
}

#[cfg(test)]
mod tests;
