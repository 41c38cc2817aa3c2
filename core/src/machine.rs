//! The [`Machine`]: guest RAM plus the device bus, independent of which CPU runs it.
use crate::clock::{Clock, TimeMode};
use crate::devices::vga::{SCREEN_BYTES, TEXT_BASE};
use crate::irq::InterruptQueue;
use crate::{CoreError, GuestRam, IoBus};

/// How to build a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// Guest RAM in bytes (default 2 MiB, at least 1 MiB + 64 KiB).
    pub mem_size: usize,
    /// Wrap physical addresses at 1 MiB like an 8086 (A20 gate disabled). Off by default:
    /// FFFF:0010 and above reach the high memory area.
    pub a20_wrap: bool,
    /// Virtual (deterministic, the default) or real time for the devices.
    pub time: TimeMode,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig { mem_size: crate::DEFAULT_MEM_SIZE, a20_wrap: false, time: TimeMode::default() }
    }
}

/// Guest RAM and devices.
#[derive(Debug)]
pub struct Machine {
    ram: GuestRam,
    bus: IoBus,
    config: MachineConfig,
    clock: Clock,
    interrupts: InterruptQueue,
    /// The text buffer as it was when the image was loaded, to tell whether the guest wrote it.
    screen_at_load: Vec<u8>,
}

impl Machine {
    pub fn new(config: MachineConfig, bus: IoBus) -> Result<Self, CoreError> {
        let ram = GuestRam::new(config.mem_size)?;
        let mut m = Machine {
            ram,
            bus,
            config,
            clock: Clock::new(config.time),
            interrupts: InterruptQueue::default(),
            screen_at_load: Vec::new(),
        };
        m.mark_screen();
        Ok(m)
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Guest RAM, for writing.
    pub fn ram_mut(&mut self) -> &mut GuestRam {
        &mut self.ram
    }

    /// The device bus.
    pub fn bus(&self) -> &IoBus {
        &self.bus
    }

    /// The device bus, for accesses and configuration.
    pub fn bus_mut(&mut self) -> &mut IoBus {
        &mut self.bus
    }

    /// RAM and bus at once (a CPU reads and writes both during a run).
    pub fn ram_and_bus_mut(&mut self) -> (&mut GuestRam, &mut IoBus) {
        (&mut self.ram, &mut self.bus)
    }

    /// How the machine was built (fixed for its lifetime).
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// The machine's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Queues an external interrupt with `vector` for the CPU (an embedder's or a test's
    /// interrupt request; see [`crate::irq`]). False when too many are already waiting.
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
    /// due are serviced (they may raise interrupts).
    pub fn retire(&mut self, n: u64) {
        self.clock.retire(n);
        self.service_events();
    }

    /// How many instructions the CPU may retire before the next device event is due, in
    /// virtual time; `None` when no event is scheduled or time is real (then see
    /// [`Machine::event_deadline`]).
    pub fn instructions_until_event(&self) -> Option<u64> {
        self.bus.next_event_ns().and_then(|d| self.clock.instructions_until(d))
    }

    /// The host instant of the next device event in real-time mode.
    pub fn event_deadline(&self) -> Option<std::time::Instant> {
        self.bus.next_event_ns().and_then(|d| self.clock.wall_instant(d))
    }

    /// HLT with IF=1: in virtual time, skip to the next device event and service it. Returns
    /// false when nothing can ever wake the CPU (no pending request and no event scheduled),
    /// so the run ends with [`crate::StopReason::Halted`]. In real-time mode it does not
    /// wait: the CPU waits until [`Machine::event_deadline`] and calls [`Machine::retire`].
    pub fn idle(&mut self) -> bool {
        if self.interrupts.pending() {
            return true;
        }
        let Some(deadline) = self.bus.next_event_ns() else { return false };
        self.clock.skip_to(deadline);
        self.service_events();
        true
    }

    /// Runs the device events due at the clock's current time.
    fn service_events(&mut self) {
        let now = self.clock.now_ns();
        if self.bus.next_event_ns().is_some_and(|d| d <= now) {
            self.bus.service_events(now, &mut self.interrupts);
        }
    }

    /// Remembers the current text buffer as the "untouched" screen.
    pub fn mark_screen(&mut self) {
        self.screen_at_load = self.text_buffer().to_vec();
    }

    fn text_buffer(&self) -> &[u8] {
        &self.ram.as_slice()[TEXT_BASE..TEXT_BASE + SCREEN_BYTES]
    }

    /// True when the guest changed the text buffer since the image was loaded.
    pub fn screen_written(&self) -> bool {
        self.text_buffer() != self.screen_at_load.as_slice()
    }

    /// The visible text screen as plain text.
    pub fn screen_text(&self) -> String {
        self.bus.vga.render_text(self.ram.as_slice())
    }

    /// The visible text screen with ANSI colours.
    pub fn screen_ansi(&self) -> String {
        self.bus.vga.render_ansi(self.ram.as_slice())
    }

    /// Zeroes RAM and resets every device, for reusing the machine.
    pub fn reset(&mut self) {
        self.ram.clear();
        self.bus.reset();
        self.clock.reset();
        self.interrupts.clear();
        self.mark_screen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_written_tracks_text_buffer() {
        let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
        assert!(!m.screen_written());
        m.ram_mut().write(0xB8000, b"H\x0a").unwrap();
        assert!(m.screen_written());
        assert_eq!(m.screen_text(), "H\n");
        m.reset();
        assert!(!m.screen_written());
        assert_eq!(m.ram().len(), 2 << 20);
    }
}
