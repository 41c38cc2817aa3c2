//! A memory-mapped console: one 4 KiB page of MMIO (not RAM) where a byte stored at offset 0
//! is printed and the 32-bit word at offset 4 counts the bytes printed so far. It exists to
//! exercise and measure the trapping MMIO path of both backends (`--mmio-console ADDR`).

/// Size of the console's MMIO window.
pub const MMIO_CONSOLE_SIZE: u64 = 0x1000;

/// Offsets of the output-only data register: writes there only print (and count), reads give
/// 0 whatever was written. A CPU may batch writes to these bytes (KVM's coalesced MMIO) as
/// long as it delivers them in order before serving any later access that can observe them
/// (a read of the count at offset 4).
pub const MMIO_CONSOLE_OUTPUT: std::ops::Range<u64> = 0..4;

/// The MMIO console.
#[derive(Debug)]
pub struct MmioConsole {
    pub base: u64,
    pub out: super::Sink,
    count: u32,
}

impl MmioConsole {
    pub fn new(base: u64, out: super::Sink) -> Self {
        MmioConsole { base, out, count: 0 }
    }

    /// Reads `data.len()` bytes at `offset` within the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        let word = self.count.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset + i as u64;
            *b = if (4..8).contains(&o) { word[(o - 4) as usize] } else { 0 };
        }
    }

    /// Writes at `offset`: the low byte of a store to offset 0 is printed.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 {
            if let Some(&b) = data.first() {
                self.out.put(b);
                self.count = self.count.wrapping_add(1);
            }
        }
    }

    pub fn reset(&mut self) {
        self.count = 0;
        self.out.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_counts() {
        let mut c = MmioConsole::new(0xD0000, super::super::Sink::capture());
        c.write(0, &[b'a', 0]);
        c.write(0, b"b");
        c.write(8, b"z");
        assert_eq!(c.out.captured(), b"ab");
        let mut w = [0u8; 4];
        c.read(4, &mut w);
        assert_eq!(u32::from_le_bytes(w), 2);
    }
}
