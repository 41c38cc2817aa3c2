//! [`PortHook`]: a device made of two closures, for programs that embed picoqemu and want to
//! see or answer a guest's port I/O (unicorn's `UC_HOOK_INSN` for IN/OUT) without writing a
//! [`Device`] of their own.
//!
//! The hook claims a range of ports; the bus hands it one byte at a time, as on the ISA bus
//! (a 16-bit `out dx, ax` to port P calls the write hook for P and then P + 1).
use std::fmt;
use std::ops::RangeInclusive;

use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

type ReadHook = Box<dyn FnMut(u16) -> u8 + Send>;
type WriteHook = Box<dyn FnMut(u16, u8) + Send>;

/// Port I/O hooks on a range of ports. Reads without a read hook give 0xFF (a port nothing
/// drives); writes without a write hook are ignored.
pub struct PortHook {
    name: &'static str,
    first: u16,
    len: u16,
    on_read: Option<ReadHook>,
    on_write: Option<WriteHook>,
}

impl PortHook {
    /// Hooks on `ports` (at least one port; `name` appears in bus errors and `--stats`).
    pub fn new(name: &'static str, ports: RangeInclusive<u16>) -> Self {
        let (first, last) = (*ports.start(), *ports.end().max(ports.start()));
        PortHook { name, first, len: last - first + 1, on_read: None, on_write: None }
    }

    /// Calls `f(port)` for every byte the guest reads; its result is what the guest gets.
    pub fn on_read(mut self, f: impl FnMut(u16) -> u8 + Send + 'static) -> Self {
        self.on_read = Some(Box::new(f));
        self
    }

    /// Calls `f(port, byte)` for every byte the guest writes.
    pub fn on_write(mut self, f: impl FnMut(u16, u8) + Send + 'static) -> Self {
        self.on_write = Some(Box::new(f));
        self
    }

    fn port(&self, base: u64, offset: u64) -> u16 {
        (base + offset) as u16
    }
}

impl fmt::Debug for PortHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortHook")
            .field("name", &self.name)
            .field("first", &self.first)
            .field("len", &self.len)
            .field("on_read", &self.on_read.is_some())
            .field("on_write", &self.on_write.is_some())
            .finish()
    }
}

impl Device for PortHook {
    fn name(&self) -> &'static str {
        self.name
    }
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(self.first, self.len)]
    }
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        let port = self.port(base, offset);
        for (i, b) in data.iter_mut().enumerate() {
            *b = match self.on_read.as_mut() {
                Some(f) => f(port.wrapping_add(i as u16)),
                None => 0xFF,
            };
        }
    }
    fn write(&mut self, base: u64, offset: u64, data: &[u8], _ctx: &mut DeviceCtx<'_>) {
        let port = self.port(base, offset);
        if let Some(f) = self.on_write.as_mut() {
            for (i, &b) in data.iter().enumerate() {
                f(port.wrapping_add(i as u16), b);
            }
        }
    }
    /// The hook's state is the embedder's; a machine reset does not touch it.
    fn reset(&mut self) {}
    /// Stateless as far as the machine knows: whatever the closures keep belongs to the
    /// embedder, who saves it alongside the snapshot if it matters.
    fn save(&self, _out: &mut StateWriter) {}
    fn restore(&mut self, _state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{IoAction, IoBus};

    #[test]
    fn reads_and_writes_reach_the_closures_byte_by_byte() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let hook = PortHook::new("test hook", 0x300..=0x301)
            .on_read(|port| port as u8 ^ 0x5A)
            .on_write(move |port, byte| log.lock().unwrap().push((port, byte)));
        let mut bus = IoBus::capturing();
        bus.register(hook).unwrap();
        assert_eq!(bus.pio_write(0x300, &[0x34, 0x12]), IoAction::Continue);
        let mut word = [0u8; 2];
        bus.pio_read(0x300, &mut word);
        assert_eq!(*seen.lock().unwrap(), vec![(0x300, 0x34), (0x301, 0x12)]);
        assert_eq!(word, [0x5A, 0x5B]); // low byte of the port XOR 0x5A
    }

    #[test]
    fn without_closures_reads_float_high_and_writes_vanish() {
        let mut bus = IoBus::capturing();
        bus.register(PortHook::new("silent", 0x310..=0x310)).unwrap();
        assert_eq!(bus.pio_write(0x310, &[1]), IoAction::Continue);
        let mut b = [0u8];
        bus.pio_read(0x310, &mut b);
        assert_eq!(b, [0xFF]);
    }

    #[test]
    fn a_hook_over_a_claimed_port_is_refused() {
        let mut bus = IoBus::capturing();
        // COM1 is on every machine.
        assert!(bus.register(PortHook::new("over COM1", 0x3F8..=0x3F8)).is_err());
    }
}
