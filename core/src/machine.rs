//! The [`Machine`]: guest RAM plus the device bus, independent of which CPU runs it.
use crate::clock::{Clock, TimeMode};
use crate::devices::vga::{SCREEN_BYTES, TEXT_BASE};
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
    /// The text buffer as it was when the image was loaded, to tell whether the guest wrote it.
    screen_at_load: Vec<u8>,
}

impl Machine {
    pub fn new(config: MachineConfig, bus: IoBus) -> Result<Self, CoreError> {
        let ram = GuestRam::new(config.mem_size)?;
        let mut bus = bus;
        bus.set_clock(Clock::new(config.time));
        let mut m = Machine { ram, bus, config, screen_at_load: Vec::new() };
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

    /// The machine's clock (kept by the bus, whose devices read it).
    pub fn clock(&self) -> &Clock {
        self.bus.clock()
    }

    /// Queues an external interrupt with `vector` for the CPU (see [`crate::irq`]).
    pub fn raise_interrupt(&mut self, vector: u8) -> bool {
        self.bus.raise_interrupt(vector)
    }

    /// True while an external interrupt request waits (the CPU's INTR pin).
    pub fn interrupt_pending(&self) -> bool {
        self.bus.interrupt_pending()
    }

    /// The INTA cycle: the vector the CPU must deliver now, if a request still waits.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.bus.acknowledge_interrupt()
    }

    /// The CPU retired `n` instructions (see [`IoBus::retire`]).
    pub fn retire(&mut self, n: u64) {
        self.bus.retire(n)
    }

    /// Instructions until the next device event (see [`IoBus::instructions_until_event`]).
    pub fn instructions_until_event(&self) -> Option<u64> {
        self.bus.instructions_until_event()
    }

    /// Host instant of the next device event in real time (see [`IoBus::event_deadline`]).
    pub fn event_deadline(&self) -> Option<std::time::Instant> {
        self.bus.event_deadline()
    }

    /// HLT with IF=1 (see [`IoBus::idle`]).
    pub fn idle(&mut self) -> bool {
        self.bus.idle()
    }

    /// Remembers the current text buffer as the "untouched" screen.
    pub fn mark_screen(&mut self) {
        let mut now = std::mem::take(&mut self.screen_at_load);
        now.resize(SCREEN_BYTES, 0);
        // RAM is at least MIN_MEM_SIZE, which contains the text buffer.
        let _ = self.ram.read(TEXT_BASE as u64, &mut now);
        self.screen_at_load = now;
    }

    /// True when the guest changed the text buffer since the image was loaded.
    pub fn screen_written(&self) -> bool {
        let mut now = [0u8; SCREEN_BYTES];
        let _ = self.ram.read(TEXT_BASE as u64, &mut now);
        now.as_slice() != self.screen_at_load.as_slice()
    }

    /// The visible screen's bytes (a copy; blank if RAM could not hold it).
    fn visible_screen(&self) -> [u8; SCREEN_BYTES] {
        let mut screen = [0u8; SCREEN_BYTES];
        let _ = self.ram.read(self.bus.vga.screen_addr() as u64, &mut screen);
        screen
    }

    /// The visible text screen as plain text.
    pub fn screen_text(&self) -> String {
        crate::devices::vga::VgaText::text_of(&self.visible_screen())
    }

    /// The visible text screen with ANSI colours.
    pub fn screen_ansi(&self) -> String {
        crate::devices::vga::VgaText::ansi_of(&self.visible_screen())
    }

    /// Zeroes RAM and resets every device, for reusing the machine.
    pub fn reset(&mut self) {
        self.ram.clear();
        self.bus.reset();
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
