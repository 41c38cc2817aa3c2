//! Machine time: virtual time that advances with retired instructions (deterministic, the
//! default for tests and `diff`) or the host's wall clock (interactive use), and the
//! deadlines of timed devices.
//!
//! A CPU tells the machine how many instructions it retired ([`crate::Machine::retire`]) and
//! asks how many it may retire before the next device event is due
//! ([`crate::Machine::instructions_until_event`]), so a run returns to service devices exactly
//! when an event is due. HLT with IF=1 skips virtual time to the next event
//! ([`crate::Machine::idle`]) instead of ending the run.
use std::time::{Duration, Instant};

/// Nanoseconds of virtual time per retired instruction by default (a 100 MIPS machine).
pub const DEFAULT_NS_PER_INSTRUCTION: u64 = 10;

/// Which time the machine's devices see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// Time advances by `ns_per_instruction` per retired instruction and jumps to the next
    /// event while the CPU halts: the same program gives the same result on every run.
    Virtual {
        /// Nanoseconds each retired instruction takes.
        ns_per_instruction: u64,
    },
    /// Time is the host's monotonic clock since the machine started.
    Realtime,
}

impl Default for TimeMode {
    fn default() -> Self {
        TimeMode::Virtual { ns_per_instruction: DEFAULT_NS_PER_INSTRUCTION }
    }
}

/// The machine's clock.
#[derive(Debug, Clone)]
pub struct Clock {
    mode: TimeMode,
    /// Virtual time in nanoseconds (virtual mode), or the offset added to the wall clock
    /// (real-time mode: time skipped while halted is not needed there).
    virtual_ns: u64,
    start: Instant,
}

impl Clock {
    /// A clock at time 0 in `mode`.
    pub fn new(mode: TimeMode) -> Self {
        Clock { mode, virtual_ns: 0, start: Instant::now() }
    }

    /// The clock's mode.
    pub fn mode(&self) -> TimeMode {
        self.mode
    }

    /// Time since power-on in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        match self.mode {
            TimeMode::Virtual { .. } => self.virtual_ns,
            TimeMode::Realtime => (self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64)
                .saturating_add(self.virtual_ns),
        }
    }

    /// The CPU retired `n` instructions (no effect in real-time mode).
    pub fn retire(&mut self, n: u64) {
        if let TimeMode::Virtual { ns_per_instruction } = self.mode {
            self.virtual_ns = self.virtual_ns.saturating_add(n.saturating_mul(ns_per_instruction));
        }
    }

    /// Instructions that can retire before `deadline_ns` is reached (virtual mode; at least
    /// 1 so a CPU always makes progress), `None` in real-time mode.
    pub fn instructions_until(&self, deadline_ns: u64) -> Option<u64> {
        match self.mode {
            TimeMode::Virtual { ns_per_instruction } => {
                let left = deadline_ns.saturating_sub(self.virtual_ns);
                Some(left.div_ceil(ns_per_instruction.max(1)).max(1))
            }
            TimeMode::Realtime => None,
        }
    }

    /// The host instant at which `deadline_ns` is reached (real-time mode), `None` in
    /// virtual mode.
    pub fn wall_instant(&self, deadline_ns: u64) -> Option<Instant> {
        match self.mode {
            TimeMode::Virtual { .. } => None,
            TimeMode::Realtime => {
                let since_start = deadline_ns.saturating_sub(self.virtual_ns);
                self.start.checked_add(Duration::from_nanos(since_start))
            }
        }
    }

    /// Moves time forward to `deadline_ns` while the CPU is halted (virtual mode); in
    /// real-time mode the caller waits on the host instead.
    pub fn skip_to(&mut self, deadline_ns: u64) {
        if let TimeMode::Virtual { .. } = self.mode {
            self.virtual_ns = self.virtual_ns.max(deadline_ns);
        }
    }

    /// Sets the time to `ns` (a snapshot being loaded): virtual time is `ns`; real time goes
    /// on from `ns`.
    pub fn restore_ns(&mut self, ns: u64) {
        self.virtual_ns = ns;
        self.start = Instant::now();
    }

    /// Back to time zero (machine reset).
    pub fn reset(&mut self) {
        self.virtual_ns = 0;
        self.start = Instant::now();
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(TimeMode::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_follows_instructions() {
        let mut c = Clock::new(TimeMode::Virtual { ns_per_instruction: 10 });
        assert_eq!(c.now_ns(), 0);
        c.retire(5);
        assert_eq!(c.now_ns(), 50);
        assert_eq!(c.instructions_until(100), Some(5));
        assert_eq!(c.instructions_until(101), Some(6));
        assert_eq!(c.instructions_until(10), Some(1), "a due deadline still lets one instruction run");
        c.skip_to(1_000);
        assert_eq!(c.now_ns(), 1_000);
        c.skip_to(10);
        assert_eq!(c.now_ns(), 1_000, "time never goes back");
        assert!(c.wall_instant(2_000).is_none());
        c.reset();
        assert_eq!(c.now_ns(), 0);
    }

    #[test]
    fn realtime_follows_the_host() {
        let mut c = Clock::new(TimeMode::Realtime);
        let a = c.now_ns();
        c.retire(1_000_000);
        assert!(c.instructions_until(5).is_none());
        let b = c.now_ns();
        assert!(b >= a);
        assert!(c.wall_instant(b + 1_000).is_some());
    }
}
