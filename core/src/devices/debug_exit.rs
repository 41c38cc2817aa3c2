//! QEMU's `isa-debug-exit` at port 0xF4: a guest write of value `v` ends the run with
//! process exit status `(v << 1) | 1`. The port is one wide register: a 16- or 32-bit write
//! gives the whole value.
use crate::device::{Claim, Device, DeviceCtx};
use crate::snapshot::{SnapshotError, StateReader, StateWriter};
use crate::StopReason;

/// Port of the debug-exit device.
pub const DEBUG_EXIT_PORT: u16 = 0xF4;

/// The debug-exit device. It has no state but the last value written.
#[derive(Debug, Default)]
pub struct DebugExit {
    last: Option<u32>,
}

impl DebugExit {
    /// Records a write of `data` (1, 2 or 4 bytes, little endian) and returns the exit code.
    pub fn record(&mut self, data: &[u8]) -> u32 {
        let v = data.iter().take(4).rev().fold(0u32, |acc, &b| (acc << 8) | b as u32);
        self.last = Some(v);
        v
    }
    /// The value of the last write, if any.
    pub fn last(&self) -> Option<u32> {
        self.last
    }
}

impl Device for DebugExit {
    fn name(&self) -> &'static str {
        "debug-exit port"
    }
    fn claims(&self) -> Vec<Claim> {
        vec![Claim::ports(DEBUG_EXIT_PORT, 1).whole_access()]
    }
    /// Reads return all ones, like an unclaimed port.
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8], _ctx: &mut DeviceCtx<'_>) {
        data.fill(0xFF);
    }
    fn write(&mut self, _base: u64, _offset: u64, data: &[u8], ctx: &mut DeviceCtx<'_>) {
        let code = self.record(data);
        ctx.stop(StopReason::DebugExit(code));
    }
    /// The last value written.
    fn save(&self, out: &mut StateWriter) {
        out.opt_u64(self.last.map(u64::from));
    }
    fn restore(&mut self, state: &mut StateReader<'_>) -> Result<(), SnapshotError> {
        self.last = match state.opt_u64()? {
            None => None,
            Some(v) => {
                Some(u32::try_from(v).map_err(|_| state.invalid(format!("{v:#x} is not a 32-bit value")))?)
            }
        };
        Ok(())
    }
    fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{irq::IrqLines, Clock};

    #[test]
    fn value_is_little_endian_and_stops() {
        let (clock, mut lines) = (Clock::default(), IrqLines::default());
        let mut ctx = DeviceCtx::new(&clock, &mut lines);
        let mut d = DebugExit::default();
        assert_eq!(d.record(&[0x21]), 0x21);
        d.write(0xF4, 0, &[0x34, 0x12], &mut ctx);
        assert_eq!(ctx.take_stop(), Some(StopReason::DebugExit(0x1234)));
        assert_eq!(d.last(), Some(0x1234));
        let mut b = [0u8; 2];
        d.read(0xF4, 0, &mut b, &mut ctx);
        assert_eq!((b, ctx.take_stop()), ([0xFF, 0xFF], None));
        d.reset();
        assert_eq!(d.last(), None);
    }
}
