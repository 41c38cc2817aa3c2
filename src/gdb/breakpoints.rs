//! GDB's breakpoints (`Z0`/`Z1`: `break`, `hbreak`) and watchpoints (`Z2`-`Z4`: `watch`,
//! `rwatch`, `awatch`) as the backend's own lists ([`picoqemu_core::Backend::set_breakpoints`],
//! [`picoqemu_core::Backend::set_watchpoints`]): no INT3 byte is written into guest RAM, so
//! reading memory shows the guest's bytes and both CPUs behave the same. Addresses are
//! linear. A backend's limit (KVM: four breakpoints of either kind, in DR0-DR3) is reported
//! to GDB as an error for the breakpoint that exceeds it.
use gdbstub::target::ext::breakpoints::{
    Breakpoints, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps,
    WatchKind as GdbWatch,
};
use gdbstub::target::{TargetError, TargetResult};
use picoqemu_core::{Breakpoint, BreakpointKind, WatchKind, Watchpoint};

use super::target::GdbTarget;
use crate::cli::report;

impl GdbTarget<'_> {
    /// Adds a breakpoint (`false` to GDB when the backend refuses it).
    fn add_breakpoint(&mut self, linear: u32, kind: BreakpointKind) -> TargetResult<bool, Self> {
        let bp = Breakpoint { linear, kind };
        if self.breakpoints.contains(&bp) {
            return Ok(true);
        }
        self.breakpoints.push(bp);
        if let Err(e) = self.backend.set_breakpoints(&self.breakpoints) {
            self.breakpoints.pop();
            report(&format!("picoqemu: gdb: {e}\n"));
            return Ok(false);
        }
        Ok(true)
    }

    fn remove_breakpoint(&mut self, linear: u32, kind: BreakpointKind) -> TargetResult<bool, Self> {
        let Some(i) = self.breakpoints.iter().position(|b| *b == Breakpoint { linear, kind }) else {
            return Ok(false);
        };
        self.breakpoints.remove(i);
        self.backend.set_breakpoints(&self.breakpoints).map_err(TargetError::Fatal)?;
        Ok(true)
    }

    fn change_watchpoint(&mut self, w: Watchpoint, add: bool) -> TargetResult<bool, Self> {
        let before = self.watchpoints.clone();
        if add {
            self.watchpoints.push(w);
        } else if let Some(i) = self.watchpoints.iter().position(|x| *x == w) {
            self.watchpoints.remove(i);
        } else {
            return Ok(false);
        }
        if let Err(e) = self.backend.set_watchpoints(&self.watchpoints) {
            self.watchpoints = before;
            report(&format!("picoqemu: gdb: {e}\n"));
            return Ok(false);
        }
        Ok(true)
    }
}

fn watchpoint(addr: u32, len: u32, kind: GdbWatch) -> Watchpoint {
    let kind = match kind {
        GdbWatch::Write => WatchKind::Write,
        GdbWatch::Read => WatchKind::Read,
        GdbWatch::ReadWrite => WatchKind::Access,
    };
    Watchpoint { linear: addr, len: len.max(1), kind }
}

impl Breakpoints for GdbTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        self.add_breakpoint(addr, BreakpointKind::Software)
    }

    fn remove_sw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        self.remove_breakpoint(addr, BreakpointKind::Software)
    }
}

impl HwBreakpoint for GdbTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        self.add_breakpoint(addr, BreakpointKind::Hardware)
    }

    fn remove_hw_breakpoint(&mut self, addr: u32, _kind: usize) -> TargetResult<bool, Self> {
        self.remove_breakpoint(addr, BreakpointKind::Hardware)
    }
}

impl HwWatchpoint for GdbTarget<'_> {
    fn add_hw_watchpoint(&mut self, addr: u32, len: u32, kind: GdbWatch) -> TargetResult<bool, Self> {
        self.change_watchpoint(watchpoint(addr, len, kind), true)
    }

    fn remove_hw_watchpoint(&mut self, addr: u32, len: u32, kind: GdbWatch) -> TargetResult<bool, Self> {
        self.change_watchpoint(watchpoint(addr, len, kind), false)
    }
}
