//! The Bochs/QEMU debug console at port 0xE9: every byte written is printed on the host
//! (stderr by default); a read returns 0xE9 so guests can detect the port. Writes are
//! output only, so a CPU may coalesce them.
use super::Sink;
use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Port of the debug console.
pub const DEBUGCON_PORT: u16 = 0xE9;

/// The 0xE9 debug console.
#[derive(Debug)]
pub struct DebugCon {
    /// Where the bytes go.
    pub out: Sink,
}

impl DebugCon {
    /// A console writing to `out`.
    pub fn new(out: Sink) -> Self {
        DebugCon { out }
    }
}

impl Device for DebugCon {
    fn name(&self) -> &'static str {
        "debug console"
    }
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(DEBUGCON_PORT, 1).coalescible(0..1)]
    }
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        data.fill(0xE9);
    }
    fn write(&mut self, _base: u64, _offset: u64, data: &[u8], _ctx: &mut DeviceCtx<'_>) {
        for &b in data {
            self.out.put(b);
        }
    }
    /// No state: reads always give 0xE9 and what was written is host output, not machine state.
    fn save(&self, _out: &mut StateWriter) {}
    fn restore(&mut self, _state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        Ok(())
    }
    fn reset(&mut self) {
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
    fn prints_and_identifies() {
        let (clock, mut lines) = (Clock::default(), IrqLines::default());
        let mut ctx = DeviceCtx::new(&clock, &mut lines);
        let mut d = DebugCon::new(Sink::capture());
        d.write(0xE9, 0, b"o", &mut ctx);
        d.write(0xE9, 0, b"k", &mut ctx);
        assert_eq!(d.out.captured(), b"ok");
        let mut b = [0u8];
        d.read(0xE9, 0, &mut b, &mut ctx);
        assert_eq!(b[0], 0xE9);
        d.reset();
        assert!(d.out.captured().is_empty());
    }
}
