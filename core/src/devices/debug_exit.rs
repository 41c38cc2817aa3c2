//! QEMU's `isa-debug-exit` at port 0xF4: a guest write of value `v` ends the run with
//! process exit status `(v << 1) | 1`.
/// Port of the debug-exit device.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;

/// The debug-exit device. It has no state but the last value written.
#[derive(Debug, Default)]
pub struct DebugExit {
    last: Option<u32>,
}

impl DebugExit {
    /// Records a write of `data` (1, 2 or 4 bytes, little endian) and returns the exit code.
    pub fn write(&mut self, data: &[u8]) -> u32 {
        let v = data.iter().rev().fold(0u32, |acc, &b| (acc << 8) | b as u32);
        self.last = Some(v);
        v
    }
    /// The value of the last write, if any.
    pub fn last(&self) -> Option<u32> {
        self.last
    }
    /// Reads return all ones, like an unclaimed port.
    pub fn read(&self) -> u8 {
        0xFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_little_endian() {
        let mut d = DebugExit::default();
        assert_eq!(d.write(&[0x21]), 0x21);
        assert_eq!(d.write(&[0x34, 0x12]), 0x1234);
        assert_eq!(d.last(), Some(0x1234));
    }
}
