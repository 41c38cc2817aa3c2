//! A memory-mapped console: one 4 KiB page of MMIO (not RAM) where a byte stored at offset 0
//! is printed and the 32-bit word at offset 4 counts the bytes printed so far. It exists to
//! exercise and measure the trapping MMIO path of both backends (`--mmio-console ADDR`).
use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Size of the console's MMIO window.
pub const MMIO_CONSOLE_SIZE: u64 = 0x1000;

/// Offsets of the output-only data register: writes there only print (and count), reads give
/// 0 whatever was written. The console declares them coalescible: a CPU may batch writes to
/// these bytes (KVM's coalesced MMIO) as long as it delivers them in order before serving
/// any later access that can observe them (a read of the count at offset 4).
pub const MMIO_CONSOLE_OUTPUT: std::ops::Range<u64> = 0..4;

/// The MMIO console.
#[derive(Debug)]
pub struct MmioConsole {
    base: u64,
    /// Where the bytes go.
    pub out: super::Sink,
    count: u32,
}

impl MmioConsole {
    /// A console whose window starts at guest-physical `base`.
    pub fn new(base: u64, out: super::Sink) -> Self {
        MmioConsole { base, out, count: 0 }
    }

    /// Guest-physical base of the window.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes printed so far (the register at offset 4).
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl Device for MmioConsole {
    fn name(&self) -> &'static str {
        "MMIO console"
    }

    fn claims(&self) -> Vec<Claim> {
        vec![Claim::mmio(self.base, MMIO_CONSOLE_SIZE).coalescible(MMIO_CONSOLE_OUTPUT)]
    }

    /// Reads `data.len()` bytes at `offset` within the window.
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        let word = self.count.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset + i as u64;
            *b = if (4..8).contains(&o) { word[(o - 4) as usize] } else { 0 };
        }
    }

    /// Writes at `offset`: the low byte of a store to offset 0 is printed.
    fn write(&mut self, _base: u64, offset: u64, data: &[u8], _ctx: &mut DeviceCtx<'_>) {
        if offset == 0 {
            if let Some(&b) = data.first() {
                self.out.put(b);
                self.count = self.count.wrapping_add(1);
            }
        }
    }

    /// The window's address (checked on restore: it is fixed at registration) and the count.
    fn save(&self, out: &mut StateWriter) {
        out.u64(self.base);
        out.u32(self.count);
    }
    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        let base = state.u64()?;
        if base != self.base {
            return Err(SnapshotError::ConfigMismatch(format!(
                "its MMIO console is at {base:#x}, this machine's at {:#x} (--mmio-console)",
                self.base
            )));
        }
        self.count = state.u32()?;
        Ok(())
    }

    fn reset(&mut self) {
        self.count = 0;
        self.out.reset();
    }

    fn flush(&mut self) {
        self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{irq::IrqLines, Clock};

    #[test]
    fn prints_and_counts() {
        let (clock, mut lines) = (Clock::default(), IrqLines::default());
        let mut ctx = DeviceCtx::new(&clock, &mut lines);
        let mut c = MmioConsole::new(0xD0000, super::super::Sink::capture());
        c.write(0xD0000, 0, &[b'a', 0], &mut ctx);
        c.write(0xD0000, 0, b"b", &mut ctx);
        c.write(0xD0000, 8, b"z", &mut ctx);
        assert_eq!(c.out.captured(), b"ab");
        let mut w = [0u8; 4];
        c.read(0xD0000, 4, &mut w, &mut ctx);
        assert_eq!(u32::from_le_bytes(w), 2);
        assert_eq!((c.count(), c.base()), (2, 0xD0000));
        c.reset();
        assert_eq!(c.count(), 0);
    }
}
