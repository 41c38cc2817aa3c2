//! The POST diagnostic port 0x80: writes are remembered (BIOSes report progress there), reads
//! give the last value written.
use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};

/// Port 0x80.
pub const POST_PORT: u16 = 0x80;

/// The POST code latch.
#[derive(Debug, Default)]
pub struct PostPort {
    code: u8,
}

impl PostPort {
    /// The last value written.
    pub fn code(&self) -> u8 {
        self.code
    }
}

impl Device for PostPort {
    fn name(&self) -> &'static str {
        "POST port"
    }
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(POST_PORT, 1)]
    }
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        data.fill(self.code);
    }
    fn write(&mut self, _base: u64, _offset: u64, data: &[u8], _ctx: &mut DeviceCtx<'_>) {
        if let Some(&b) = data.last() {
            self.code = b;
        }
    }
    /// The POST code.
    fn save(&self, out: &mut StateWriter) {
        out.u8(self.code);
    }
    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        self.code = state.u8()?;
        Ok(())
    }
    fn reset(&mut self) {
        self.code = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{irq::IrqLines, Clock};

    #[test]
    fn remembers_the_last_write() {
        let (clock, mut lines) = (Clock::default(), IrqLines::default());
        let mut ctx = DeviceCtx::new(&clock, &mut lines);
        let mut p = PostPort::default();
        p.write(0x80, 0, &[0x12], &mut ctx);
        p.write(0x80, 0, &[0x34], &mut ctx);
        let mut b = [0u8];
        p.read(0x80, 0, &mut b, &mut ctx);
        assert_eq!((b[0], p.code()), (0x34, 0x34));
        p.reset();
        assert_eq!(p.code(), 0);
    }
}
