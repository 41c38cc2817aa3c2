//! Running the guest for GDB: a single step, or a `continue` that GDB's Ctrl-C can break into.
//!
//! During a `continue` the backend runs on this thread while a watcher thread peeks at the
//! socket; the first byte GDB sends (its interrupt, 0x03) makes the watcher kick the backend
//! (`Backend::kicker`), the run returns `Interrupted` at an instruction boundary and the byte
//! goes to `gdbstub`, which asks [`Loop::on_interrupt`] for the stop to report (SIGINT).
//! Ctrl-C in picoqemu's own terminal ends the guest as without GDB (status 130).
use std::io;
use std::marker::PhantomData;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::breakpoints::WatchKind as GdbWatch;
use picoqemu_core::{BackendError, BreakpointKind, Kick, StopReason, WatchKind};

use super::target::{final_report, GdbTarget, Resume};

/// How long the watcher blocks in one peek before it looks at its stop flag again.
const PEEK_TIMEOUT: Duration = Duration::from_millis(20);

/// The event loop `gdbstub::stub::GdbStub::run_blocking` drives.
pub struct Loop<'a>(PhantomData<&'a ()>);

type WaitResult = Result<Event<SingleThreadStopReason<u32>>, WaitForStopReasonError<BackendError, io::Error>>;

impl<'a> BlockingEventLoop for Loop<'a> {
    type Target = GdbTarget<'a>;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u32>;

    fn wait_for_stop_reason(target: &mut GdbTarget<'a>, conn: &mut TcpStream) -> WaitResult {
        match target.resume.take() {
            Some(Resume::Step) => {
                let stop = target.backend.step(target.machine).map_err(WaitForStopReasonError::Target)?;
                Ok(Event::TargetStopped(report(target, stop)))
            }
            Some(Resume::Continue) | None => continue_run(target, conn),
        }
    }

    fn on_interrupt(
        _target: &mut GdbTarget<'a>,
    ) -> Result<Option<SingleThreadStopReason<u32>>, BackendError> {
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// The stop GDB is told about for `stop`; a stop that ends the guest is kept as final.
fn report(target: &mut GdbTarget<'_>, stop: StopReason) -> SingleThreadStopReason<u32> {
    match stop {
        StopReason::StepDone => SingleThreadStopReason::DoneStep,
        StopReason::Breakpoint { .. } => {
            let pc = target.backend.state().map(|s| s.pc_linear()).unwrap_or(0);
            let hw = target.breakpoints.iter().any(|b| b.linear == pc && b.kind == BreakpointKind::Hardware);
            if hw {
                SingleThreadStopReason::HwBreak(())
            } else {
                SingleThreadStopReason::SwBreak(())
            }
        }
        StopReason::Watchpoint { addr, kind, .. } => {
            let kind = match kind {
                WatchKind::Write => GdbWatch::Write,
                WatchKind::Read => GdbWatch::Read,
                WatchKind::Access => GdbWatch::ReadWrite,
            };
            SingleThreadStopReason::Watch { tid: (), kind, addr }
        }
        stop => {
            let r = final_report(&stop);
            target.final_stop = Some(stop);
            r
        }
    }
}

/// Steps over a breakpoint at the current instruction (as GDB's own step-over would), so a
/// `continue` from a breakpoint leaves it. `Some` when that step already stopped the guest.
fn step_off_breakpoint(target: &mut GdbTarget<'_>) -> Result<Option<StopReason>, BackendError> {
    let pc = target.backend.state()?.pc_linear();
    if !target.breakpoints.iter().any(|b| b.linear == pc) {
        return Ok(None);
    }
    let others: Vec<_> = target.breakpoints.iter().copied().filter(|b| b.linear != pc).collect();
    target.backend.set_breakpoints(&others)?;
    let stop = target.backend.step(target.machine);
    target.backend.set_breakpoints(&target.breakpoints)?;
    match stop? {
        StopReason::StepDone => Ok(None),
        stop => Ok(Some(stop)),
    }
}

/// A `continue`: runs until a stop, GDB's interrupt or Ctrl-C.
fn continue_run(target: &mut GdbTarget<'_>, conn: &mut TcpStream) -> WaitResult {
    if let Some(stop) = step_off_breakpoint(target).map_err(WaitForStopReasonError::Target)? {
        return Ok(Event::TargetStopped(report(target, stop)));
    }
    loop {
        let watcher =
            Watcher::start(conn, target.backend.kicker()).map_err(WaitForStopReasonError::Connection)?;
        let stop = target.backend.run(target.machine, target.limits);
        watcher.stop(conn).map_err(WaitForStopReasonError::Connection)?;
        let stop = stop.map_err(WaitForStopReasonError::Target)?;
        if stop != StopReason::Interrupted || crate::signals::interrupted() {
            return Ok(Event::TargetStopped(report(target, stop)));
        }
        if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
            let byte = conn.read().map_err(WaitForStopReasonError::Connection)?;
            return Ok(Event::IncomingData(byte));
        }
        // A kick left over from a watcher whose byte was already read: run on.
    }
}

/// The thread that kicks the backend when GDB sends something during a run.
struct Watcher {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(conn: &TcpStream, kick: Option<Arc<dyn Kick>>) -> io::Result<Watcher> {
        let done = Arc::new(AtomicBool::new(false));
        let Some(kick) = kick else { return Ok(Watcher { done, thread: None }) };
        let peer = conn.try_clone()?;
        peer.set_read_timeout(Some(PEEK_TIMEOUT))?;
        let flag = done.clone();
        let thread = std::thread::Builder::new().name("gdb-watch".into()).spawn(move || {
            crate::signals::block_sigint_on_this_thread();
            let mut b = [0u8; 1];
            while !flag.load(Ordering::Acquire) {
                match peer.peek(&mut b) {
                    Ok(_) => return kick.kick(),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(_) => return kick.kick(),
                }
            }
        })?;
        Ok(Watcher { done, thread: Some(thread) })
    }

    /// Ends the watcher and restores blocking reads on `conn`.
    fn stop(mut self, conn: &TcpStream) -> io::Result<()> {
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        conn.set_read_timeout(None)
    }
}
