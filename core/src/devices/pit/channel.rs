//! One counter of the 8254: its programming (mode, access, BCD), the count it runs, latches
//! and status, and its counter value and OUT level computed from the tick at which counting
//! started, so time is never simulated tick by tick.
//!
//! Times here are counts of the 1.193182 MHz input clock ("ticks") since power-on. A count
//! starts at the tick it is written (the real part loads it on the next clock edge; the
//! difference is one tick and is not modelled). In modes 2 and 3 a count written while the
//! counter runs takes effect at the end of the current period (the next rising edge of OUT).

/// How the counter's 16 bits are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    Lo,
    Hi,
    #[default]
    LoHi,
}

impl Access {
    fn bits(self) -> u8 {
        match self {
            Access::Lo => 1,
            Access::Hi => 2,
            Access::LoHi => 3,
        }
    }
}

/// Every field of a [`Channel`], for its snapshot encoding (`super::state`).
#[derive(Debug, Clone)]
pub struct Fields {
    pub mode: u8,
    pub access: Access,
    pub bcd: bool,
    pub count: u32,
    pub origin: Option<u64>,
    pub paused_at: Option<u64>,
    pub pending: Option<(u32, u64)>,
    pub gate: bool,
    pub idle_value: u32,
    pub write_lo: Option<u8>,
    pub read_hi: bool,
    pub latched: Option<(u32, u8)>,
    pub status: Option<u8>,
    pub null_count: bool,
}

/// One counter.
#[derive(Debug, Clone)]
pub struct Channel {
    mode: u8,
    access: Access,
    bcd: bool,
    /// The initial count in clock ticks (1..=65536, or 1..=10000 in BCD); 0 before any.
    count: u32,
    /// Tick at which the current count started; `None` while the counter does not run.
    origin: Option<u64>,
    /// Tick at which a low gate suspended counting (modes 0, 2, 3, 4).
    paused_at: Option<u64>,
    /// Modes 2/3: a count written while running and the tick it takes effect.
    pending: Option<(u32, u64)>,
    gate: bool,
    /// The counter's value while it does not run.
    idle_value: u32,
    /// LoHi writes: the low byte, waiting for the high byte.
    write_lo: Option<u8>,
    /// LoHi reads: the next read gives the high byte.
    read_hi: bool,
    /// A latched count and how many reads of it are left.
    latched: Option<(u32, u8)>,
    status: Option<u8>,
    null_count: bool,
}

impl Channel {
    /// All fields (see [`Fields`]).
    pub fn fields(&self) -> Fields {
        Fields {
            mode: self.mode,
            access: self.access,
            bcd: self.bcd,
            count: self.count,
            origin: self.origin,
            paused_at: self.paused_at,
            pending: self.pending,
            gate: self.gate,
            idle_value: self.idle_value,
            write_lo: self.write_lo,
            read_hi: self.read_hi,
            latched: self.latched,
            status: self.status,
            null_count: self.null_count,
        }
    }

    /// A counter with exactly these fields (checked by the caller).
    pub fn from_fields(f: Fields) -> Self {
        Channel {
            mode: f.mode,
            access: f.access,
            bcd: f.bcd,
            count: f.count,
            origin: f.origin,
            paused_at: f.paused_at,
            pending: f.pending,
            gate: f.gate,
            idle_value: f.idle_value,
            write_lo: f.write_lo,
            read_hi: f.read_hi,
            latched: f.latched,
            status: f.status,
            null_count: f.null_count,
        }
    }

    /// Power-on state with the given gate level.
    pub fn new(gate: bool) -> Self {
        Channel {
            mode: 0,
            access: Access::LoHi,
            bcd: false,
            count: 0,
            origin: None,
            paused_at: None,
            pending: None,
            gate,
            idle_value: 0,
            write_lo: None,
            read_hi: false,
            latched: None,
            status: None,
            null_count: false,
        }
    }

    /// The counting modulus (the counter wraps at it).
    fn modulus(&self) -> u32 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// A control word with RW != 0: new mode, access and BCD; counting stops until a count
    /// is written.
    pub fn program(&mut self, access: Access, mode: u8, bcd: bool, t: u64) {
        self.settle(t);
        let value = self.value(t);
        *self = Channel {
            mode: if mode >= 6 { mode - 4 } else { mode },
            access,
            bcd,
            idle_value: value,
            null_count: true,
            ..Channel::new(self.gate)
        };
    }

    /// Counter latch command: the value now is held for the next reads.
    pub fn latch_count(&mut self, t: u64) {
        if self.latched.is_none() {
            self.settle(t);
            let reads = if self.access == Access::LoHi { 2 } else { 1 };
            self.latched = Some((self.value(t), reads));
        }
    }

    /// Read-back status latch.
    pub fn latch_status(&mut self, t: u64) {
        if self.status.is_none() {
            self.settle(t);
            let out = u8::from(self.out(t)) << 7;
            let null = u8::from(self.null_count) << 6;
            self.status =
                Some(out | null | (self.access.bits() << 4) | (self.mode << 1) | u8::from(self.bcd));
        }
    }

    /// A read of the counter's port.
    pub fn read(&mut self, t: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        let value = match self.latched {
            Some((v, reads)) => {
                self.latched = (reads > 1).then_some((v, reads - 1));
                v
            }
            None => {
                self.settle(t);
                self.value(t)
            }
        };
        let encoded = if self.bcd { to_bcd(value) } else { value as u16 };
        let hi = match self.access {
            Access::Lo => false,
            Access::Hi => true,
            Access::LoHi => {
                self.read_hi = !self.read_hi;
                !self.read_hi
            }
        };
        if hi {
            (encoded >> 8) as u8
        } else {
            encoded as u8
        }
    }

    /// A write of the counter's port.
    pub fn write(&mut self, v: u8, t: u64) {
        self.settle(t);
        match self.access {
            Access::Lo => self.load(u16::from(v), t),
            Access::Hi => self.load(u16::from(v) << 8, t),
            Access::LoHi => match self.write_lo.take() {
                None => {
                    self.write_lo = Some(v);
                    if self.mode == 0 {
                        // Writing the first byte stops a mode 0 count (OUT low).
                        self.idle_value = self.value(t);
                        self.origin = None;
                    }
                }
                Some(lo) => self.load(u16::from(lo) | (u16::from(v) << 8), t),
            },
        }
    }

    /// A complete count was written.
    fn load(&mut self, raw: u16, t: u64) {
        let n = match (raw, self.bcd) {
            (0, _) => self.modulus(),
            (r, true) => from_bcd(r),
            (r, false) => u32::from(r),
        };
        self.null_count = true;
        match self.mode {
            2 | 3 if self.running() => {
                let o = self.origin.unwrap_or(t);
                let period_end =
                    o + (t.saturating_sub(o) / u64::from(self.count) + 1) * u64::from(self.count);
                self.pending = Some((n, period_end));
            }
            1 | 5 => self.count = n,
            2 | 3 if !self.gate => self.count = n, // loaded when the gate rises
            _ => self.start(n, t),
        }
    }

    /// Counting of `n` starts at tick `t` (suspended at once in modes 0 and 4 if the gate is
    /// low).
    fn start(&mut self, n: u32, t: u64) {
        self.count = n;
        self.origin = Some(t);
        self.pending = None;
        self.null_count = false;
        self.paused_at = (!self.gate && matches!(self.mode, 0 | 4)).then_some(t);
    }

    /// Counting and not suspended.
    fn running(&self) -> bool {
        self.origin.is_some() && self.paused_at.is_none()
    }

    /// A new gate level at tick `t`.
    pub fn set_gate(&mut self, gate: bool, t: u64) {
        self.settle(t);
        let rising = gate && !self.gate;
        let falling = !gate && self.gate;
        self.gate = gate;
        match self.mode {
            1 | 5 if rising && self.count != 0 => self.start(self.count, t),
            2 | 3 if rising && self.count != 0 => {
                let n = self.pending.map_or(self.count, |(n, _)| n);
                self.start(n, t);
            }
            0 | 4 if rising => {
                if let (Some(o), Some(p)) = (self.origin, self.paused_at.take()) {
                    self.origin = Some(o + t.saturating_sub(p));
                }
            }
            0 | 2 | 3 | 4 if falling && self.origin.is_some() => self.paused_at = Some(t),
            _ => {}
        }
    }

    /// Applies a pending count whose time has come.
    pub fn settle(&mut self, t: u64) {
        if let Some((n, at)) = self.pending.filter(|&(_, at)| at <= t && self.paused_at.is_none()) {
            self.start(n, at);
        }
    }

    /// Ticks counted by `t` since the count started.
    fn elapsed(&self, t: u64) -> Option<u64> {
        self.origin.map(|o| self.paused_at.unwrap_or(t).saturating_sub(o))
    }

    /// The counter's value at `t` (binary, below the modulus).
    pub fn value(&self, t: u64) -> u32 {
        let Some(d) = self.elapsed(t) else { return self.idle_value };
        let (n, m) = (u64::from(self.count), u64::from(self.modulus()));
        let v = match self.mode {
            2 => n - d % n,
            3 => {
                let p = d % n;
                let high = n.div_ceil(2);
                let q = if p < high { p } else { p - high };
                (n - (n & 1)).saturating_sub(2 * q)
            }
            _ => (n + m - d % m) % m,
        };
        (v % m) as u32
    }

    /// The OUT level at `t`.
    pub fn out(&self, t: u64) -> bool {
        let Some(d) = self.elapsed(t) else { return self.mode != 0 };
        let n = u64::from(self.count);
        match self.mode {
            0 => d >= n,
            1 => d >= n,
            2 => !self.gate || d % n != n - 1,
            3 => !self.gate || d % n < n.div_ceil(2),
            _ => d != n, // 4, 5: low for one tick at the end of the count
        }
    }

    /// The first tick after `t` at which OUT rises, if counting goes on.
    pub fn next_rise_after(&self, t: u64) -> Option<u64> {
        let o = self.origin.filter(|_| self.paused_at.is_none())?;
        let n = u64::from(self.count);
        let first = match self.mode {
            2 | 3 => {
                let k = if t < o { 1 } else { (t - o) / n + 1 };
                return Some(o + k * n);
            }
            0 | 1 => o + n,
            _ => o + n + 1,
        };
        (first > t).then_some(first)
    }
}

/// A BCD count (digits above 9 count as their value, as the hardware's decades do).
fn from_bcd(raw: u16) -> u32 {
    (0..4).rev().fold(0, |acc, i| acc * 10 + u32::from((raw >> (4 * i)) & 0xF))
}

/// `v` (below 10000) as four BCD digits.
fn to_bcd(v: u32) -> u16 {
    (0..4).rev().fold(0, |acc, i| (acc << 4) | ((v / 10u32.pow(i)) % 10) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_conversions() {
        assert_eq!(from_bcd(0x1234), 1234);
        assert_eq!(from_bcd(0x0010), 10);
        assert_eq!(to_bcd(1234), 0x1234);
        assert_eq!(to_bcd(9999), 0x9999);
        assert_eq!(to_bcd(0), 0);
    }

    #[test]
    fn mode3_values_count_down_by_two() {
        let mut c = Channel::new(true);
        c.program(Access::Lo, 3, false, 0);
        c.write(6, 0);
        let values: Vec<u32> = (0..6).map(|t| c.value(t)).collect();
        assert_eq!(values, [6, 4, 2, 6, 4, 2]);
        let outs: Vec<bool> = (0..6).map(|t| c.out(t)).collect();
        assert_eq!(outs, [true, true, true, false, false, false]);
        c.write(5, 6);
        c.settle(12);
        let values: Vec<u32> = (12..17).map(|t| c.value(t)).collect();
        assert_eq!(values, [4, 2, 0, 4, 2], "odd counts: N-1 down by two, high for (N+1)/2 ticks");
        let outs: Vec<bool> = (12..17).map(|t| c.out(t)).collect();
        assert_eq!(outs, [true, true, true, false, false]);
    }
}
