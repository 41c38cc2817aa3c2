//! The Bochs/QEMU debug console at port 0xE9: every byte written is printed on the host
//! (stderr by default); a read returns 0xE9 so guests can detect the port.
use super::Sink;

/// Port of the debug console.
pub const DEBUGCON_PORT: u16 = 0xE9;

/// The 0xE9 debug console.
#[derive(Debug)]
pub struct DebugCon {
    pub out: Sink,
}

impl DebugCon {
    pub fn new(out: Sink) -> Self {
        DebugCon { out }
    }
    pub fn read(&mut self) -> u8 {
        0xE9
    }
    pub fn write(&mut self, value: u8) {
        self.out.put(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_identifies() {
        let mut d = DebugCon::new(Sink::capture());
        d.write(b'o');
        d.write(b'k');
        assert_eq!(d.out.captured(), b"ok");
        assert_eq!(d.read(), 0xE9);
    }
}
