//! The run watchdog: every run with a deadline ends by it, even when `KVM_RUN` never returns
//! on its own (a guest `vmcall` hangs it on PVM hosts).
//!
//! Design: a kernel POSIX timer per backend (`timer_create` with `SIGEV_THREAD_ID`) aimed at
//! the thread that runs the vCPU. When it expires, the kernel sends a real-time signal
//! (`SIGRTMIN + 5`) to that thread; its handler is installed once per process without
//! `SA_RESTART`, so a blocked `KVM_RUN` returns `EINTR`. The handler also sets this backend's
//! `fired` flag and, when the signal lands while the vCPU thread is in user space between two
//! `KVM_RUN`s, `kvm_run.immediate_exit`, so the next `KVM_RUN` returns `EINTR` at once.
//!
//! This is the "timer thread + signal + immediate_exit" scheme with the kernel as the timer
//! thread: nothing is spawned, the run loop takes no lock and allocates nothing (arming is one
//! `timer_settime`, disarming another), and disarming is synchronous: a signal generated before
//! `timer_settime` returns is delivered on the return from that syscall, so no stale signal
//! can reach a later run. Each backend has its own timer and flag (the signal's `sival_ptr`
//! names the flag), so several backends on one thread do not disturb each other.
//!
//! The run loop re-arms the timer as a one-shot at the next instant it must look at the vCPU:
//! the run's deadline, a device event (real time), or the next 100 ms hang-check tick of a
//! free run (see the crate docs); an expiry that is not yet the deadline is handled and the
//! run goes on.
//!
//! Kicks ([`Kicker`], the `Backend::kicker` handle) use the same signal, sent with `tgkill`
//! from any thread to the vCPU thread while a run is active (`si_code` `SI_TKILL`, which the
//! handler tells from a timer's `SI_TIMER`): the handler sets `immediate_exit` of the run on
//! that thread, and the kick's own flag (set by the kicking thread before it signals) makes
//! the run stop with `Interrupted`. A kick while no run is active only sets the flag, and
//! [`Watchdog::enter`] turns it into `immediate_exit` for the next run (both sides use
//! sequentially consistent atomics, so one of them always sees the other).
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use libc::{c_int, c_void, siginfo_t};

use crate::KvmError;

/// Offset of our signal above `SIGRTMIN` (away from the low ones other VMMs use).
const SIGNAL_OFFSET: c_int = 5;

thread_local! {
    /// The `fired` flag of the backend running on this thread, or null.
    static CURRENT_FLAG: Cell<*const AtomicBool> = const { Cell::new(ptr::null()) };
    /// `&kvm_run.immediate_exit` of the backend running on this thread, or null.
    static CURRENT_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
    /// This thread's kernel thread id, 0 until asked.
    static TID: Cell<libc::pid_t> = const { Cell::new(0) };
}

static SIGNAL: OnceLock<Result<c_int, String>> = OnceLock::new();

/// The watchdog signal number, installing the handler on first use.
fn signal() -> Result<c_int, KvmError> {
    SIGNAL
        .get_or_init(|| {
            let sig = vmm_sys_util::signal::SIGRTMIN() + SIGNAL_OFFSET;
            if sig > vmm_sys_util::signal::SIGRTMAX() {
                return Err(format!("signal SIGRTMIN+{SIGNAL_OFFSET} does not exist"));
            }
            vmm_sys_util::signal::register_signal_handler(sig, on_signal)
                .map(|_| sig)
                .map_err(|e| format!("sigaction({sig}): {e}"))
        })
        .clone()
        .map_err(|e| KvmError::Watchdog {
            what: "installing the signal handler",
            source: std::io::Error::other(e),
        })
}

/// The signal handler. Async-signal-safe: it touches only atomics, const-initialised
/// thread-locals without destructors and one byte of the `kvm_run` page.
extern "C" fn on_signal(_sig: c_int, info: *mut siginfo_t, _ctx: *mut c_void) {
    if info.is_null() {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    if unsafe { (*info).si_code } == libc::SI_TKILL {
        // A kick (`Kicker::kick`): stop the run on this thread, if any.
        let exit = CURRENT_EXIT.try_with(Cell::get).unwrap_or(ptr::null_mut());
        if !exit.is_null() {
            // SAFETY: as below: `exit` is `immediate_exit` of the vCPU running on this thread.
            unsafe { ptr::write_volatile(exit, 1) };
        }
        return;
    }
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler; our timers put the
    // address of their backend's `fired` flag in `sival_ptr`.
    let flag = unsafe { (*info).si_value().sival_ptr } as *const AtomicBool;
    if flag.is_null() {
        return;
    }
    // SAFETY: a flag lives until its timer is deleted on the timer's own thread (after which no
    // signal of that timer can be delivered), or is leaked when that is not possible
    // (see `Watchdog::drop`), so the pointer is valid whenever this signal arrives.
    unsafe { (*flag).store(true, Ordering::SeqCst) };
    let current = CURRENT_FLAG.try_with(Cell::get).unwrap_or(ptr::null());
    if current == flag {
        let exit = CURRENT_EXIT.try_with(Cell::get).unwrap_or(ptr::null_mut());
        if !exit.is_null() {
            // SAFETY: `exit` points at `immediate_exit` of the vCPU currently running on this
            // thread (set by `Watchdog::enter`, cleared by `leave` before the vCPU can go
            // away). The interrupted code is the same thread, between two KVM_RUNs; a volatile
            // byte store is what the kernel reads at the next KVM_RUN (Firecracker's pattern).
            unsafe { ptr::write_volatile(exit, 1) };
        }
    }
}

fn current_tid() -> libc::pid_t {
    TID.with(|t| {
        if t.get() == 0 {
            // SAFETY: gettid has no arguments and cannot fail.
            t.set(unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t);
        }
        t.get()
    })
}

/// The shared half of a backend's kick handle.
#[derive(Debug, Default)]
struct KickState {
    /// A kick waits to stop a run.
    kicked: AtomicBool,
    /// Kernel thread id of the thread running the vCPU now, 0 while no run is active.
    tid: AtomicI32,
}

/// The thread-safe kick handle of one backend (see the module docs).
#[derive(Debug, Clone)]
pub struct Kicker {
    state: Arc<KickState>,
}

impl picoqemu_core::Kick for Kicker {
    fn kick(&self) {
        self.state.kicked.store(true, Ordering::SeqCst);
        let tid = self.state.tid.load(Ordering::SeqCst);
        if tid != 0 {
            // SAFETY: getpid and tgkill take plain integers. The handler is installed
            // (`Watchdog::kicker` checked it) before any run publishes its tid; if the thread
            // left its run meanwhile, the handler finds no run and does nothing, and a thread
            // id reused by another thread of this process only costs that thread a spurious
            // EINTR, which run loops treat as "go on".
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal_number()) };
        }
    }
}

/// The installed signal's number (0 before installation; only used after it).
fn signal_number() -> c_int {
    SIGNAL.get().and_then(|r| r.as_ref().ok().copied()).unwrap_or(0)
}

/// A POSIX timer aimed at one thread.
#[derive(Debug)]
struct Timer {
    id: libc::timer_t,
    tid: libc::pid_t,
}

/// Sets `immediate_exit` of the vCPU that is running on the calling thread, if any, so its
/// `KVM_RUN` returns `EINTR` at once (or is not entered). Async-signal-safe: meant for a
/// signal handler (Ctrl-C) that has already set the flag given to
/// [`crate::KvmBackend::with_interrupt`]; a signal landing inside `KVM_RUN` ends it by itself.
pub fn kick_current_thread() {
    let exit = CURRENT_EXIT.try_with(Cell::get).unwrap_or(ptr::null_mut());
    if !exit.is_null() {
        // SAFETY: as in `on_signal`: `exit` is the live `immediate_exit` of the vCPU between
        // `Watchdog::enter` and `leave` on this thread, and this code interrupts that thread.
        unsafe { ptr::write_volatile(exit, 1) };
    }
}

/// One backend's deadline watchdog, and the outside stop request (Ctrl-C) it watches too.
#[derive(Debug)]
pub struct Watchdog {
    /// Heap flag whose address the timer's signal carries (from `Box::into_raw`).
    fired: *const AtomicBool,
    timer: Option<Timer>,
    armed: Option<Instant>,
    kick: Arc<KickState>,
    /// Set from outside to end the run (see [`kick_current_thread`]).
    interrupt: Option<&'static AtomicBool>,
}

// SAFETY: the timer id is a process-wide kernel handle usable from any thread, and `fired` is
// an atomic that is only freed in `drop`. Moving the watchdog to another thread re-creates the
// timer for that thread before the next arming (see `arm`).
unsafe impl Send for Watchdog {}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            fired: Box::into_raw(Box::new(AtomicBool::new(false))),
            timer: None,
            armed: None,
            kick: Arc::default(),
            interrupt: None,
        }
    }
}

impl Watchdog {
    fn flag(&self) -> &AtomicBool {
        // SAFETY: `fired` comes from `Box::into_raw` in `new` and is freed only in `drop`.
        unsafe { &*self.fired }
    }

    /// True when the armed deadline has passed.
    pub fn fired(&self) -> bool {
        self.flag().load(Ordering::SeqCst)
    }

    /// A handle that kicks this backend's runs from any thread (installs the signal handler).
    pub fn kicker(&self) -> Result<Kicker, KvmError> {
        signal()?;
        Ok(Kicker { state: Arc::clone(&self.kick) })
    }

    /// Takes a pending kick (true once per kick), or true while the outside stop flag
    /// ([`Watchdog::set_interrupt`]) is set.
    pub fn take_kick(&self) -> bool {
        self.kick.kicked.swap(false, Ordering::SeqCst) || self.interrupted()
    }

    /// True while a kick waits.
    pub fn kicked(&self) -> bool {
        self.kick.kicked.load(Ordering::SeqCst)
    }

    /// Watches `flag`: once it is set the run ends (see [`Watchdog::interrupted`]).
    pub fn set_interrupt(&mut self, flag: &'static AtomicBool) {
        self.interrupt = Some(flag);
    }

    /// True when the outside stop flag is set.
    pub fn interrupted(&self) -> bool {
        self.interrupt.is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// The deadline armed now, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.armed
    }

    /// Arms the watchdog to fire at `deadline` on the calling thread (re-arming replaces the
    /// previous deadline and clears `fired`).
    pub fn arm(&mut self, deadline: Instant) -> Result<(), KvmError> {
        let tid = current_tid();
        if self.timer.as_ref().is_some_and(|t| t.tid != tid) {
            self.delete_timer();
        }
        if self.timer.is_none() {
            self.timer = Some(self.create_timer(tid)?);
        }
        self.flag().store(false, Ordering::SeqCst);
        let left = deadline.saturating_duration_since(Instant::now());
        let nanos = if left.is_zero() { 1 } else { left.subsec_nanos() as libc::c_long };
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: left.as_secs() as libc::time_t, tv_nsec: nanos },
        };
        self.settime(&spec, "timer_settime (arm)")?;
        self.armed = Some(deadline);
        Ok(())
    }

    /// Stops the timer and clears `fired`. After this returns no signal of this watchdog
    /// reaches this thread.
    pub fn disarm(&mut self) -> Result<(), KvmError> {
        if self.armed.take().is_some() {
            // SAFETY: all-zero is a valid (disarming) itimerspec.
            let zero: libc::itimerspec = unsafe { std::mem::zeroed() };
            self.settime(&zero, "timer_settime (disarm)")?;
        }
        self.flag().store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Marks this backend as the one running on this thread, with `immediate_exit` at `exit`.
    /// If the deadline already passed or a kick waits, sets `immediate_exit` right away.
    pub fn enter(&self, exit: *mut u8) {
        CURRENT_EXIT.with(|c| c.set(exit));
        CURRENT_FLAG.with(|c| c.set(self.fired));
        compiler_fence(Ordering::SeqCst);
        self.kick.tid.store(current_tid(), Ordering::SeqCst);
        if self.fired() || self.kicked() || self.interrupted() {
            // SAFETY: `exit` is the caller's live `kvm_run.immediate_exit`.
            unsafe { ptr::write_volatile(exit, 1) };
        }
    }

    /// Clears `immediate_exit` (after the run loop used it to complete an I/O), without losing
    /// a watchdog expiry that races with the clearing.
    pub fn clear_immediate_exit(&self, exit: *mut u8) {
        // SAFETY: `exit` is the caller's live `kvm_run.immediate_exit`.
        unsafe { ptr::write_volatile(exit, 0) };
        compiler_fence(Ordering::SeqCst);
        if self.fired() || self.kicked() || self.interrupted() {
            // SAFETY: as above.
            unsafe { ptr::write_volatile(exit, 1) };
        }
    }

    /// Ends the section started by [`Watchdog::enter`].
    pub fn leave(&self) {
        self.kick.tid.store(0, Ordering::SeqCst);
        compiler_fence(Ordering::SeqCst);
        CURRENT_FLAG.with(|c| c.set(ptr::null()));
        CURRENT_EXIT.with(|c| c.set(ptr::null_mut()));
    }

    fn create_timer(&self, tid: libc::pid_t) -> Result<Timer, KvmError> {
        let sig = signal()?;
        // SAFETY: sigevent is a plain C struct; all-zero is a valid starting value.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = sig;
        ev.sigev_value = libc::sigval { sival_ptr: self.fired as *mut c_void };
        ev.sigev_notify_thread_id = tid;
        let mut id: libc::timer_t = ptr::null_mut();
        // SAFETY: `ev` and `id` are valid for the call; the kernel copies `ev`.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut id) } != 0 {
            return Err(KvmError::Watchdog { what: "timer_create", source: std::io::Error::last_os_error() });
        }
        Ok(Timer { id, tid })
    }

    fn settime(&self, spec: &libc::itimerspec, what: &'static str) -> Result<(), KvmError> {
        let Some(t) = &self.timer else { return Ok(()) };
        // SAFETY: `t.id` is a live timer created by `create_timer`; `spec` is valid.
        if unsafe { libc::timer_settime(t.id, 0, spec, ptr::null_mut()) } != 0 {
            return Err(KvmError::Watchdog { what, source: std::io::Error::last_os_error() });
        }
        Ok(())
    }

    fn delete_timer(&mut self) {
        if let Some(t) = self.timer.take() {
            // SAFETY: `t.id` is a live timer; it is deleted once (taken out of `self.timer`).
            unsafe { libc::timer_delete(t.id) };
        }
        self.armed = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let same_thread = match &self.timer {
            Some(t) => t.tid == current_tid(),
            None => true,
        };
        if same_thread {
            // Disarming here delivers any pending signal before returning, so nothing refers
            // to the flag afterwards.
            let _ = self.disarm();
        }
        self.delete_timer();
        if same_thread {
            // SAFETY: `fired` came from `Box::into_raw` and no signal can refer to it any more.
            drop(unsafe { Box::from_raw(self.fired as *mut AtomicBool) });
        }
        // Otherwise a signal may still be pending on the timer's old thread: the flag (one
        // byte) is leaked on purpose so the handler never reads freed memory.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_after_deadline_and_disarm_stops_it() {
        let mut w = Watchdog::default();
        w.arm(Instant::now() + Duration::from_millis(1)).unwrap();
        let mut exit = 0u8;
        w.enter(&mut exit);
        // Sleep is interrupted by the signal (no SA_RESTART); loop until the flag is set.
        let start = Instant::now();
        while !w.fired() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        w.leave();
        assert!(w.fired());
        assert_eq!(exit, 1, "the handler sets immediate_exit of the running vCPU");
        w.arm(Instant::now() + Duration::from_secs(3600)).unwrap();
        assert!(!w.fired());
        w.disarm().unwrap();
        assert_eq!(w.deadline(), None);
    }

    #[test]
    fn an_interrupt_sets_immediate_exit_on_entry_and_survives_clearing() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let mut w = Watchdog::default();
        w.set_interrupt(&FLAG);
        let mut exit = 0u8;
        w.enter(&mut exit);
        assert_eq!(exit, 0);
        kick_current_thread();
        assert_eq!(exit, 1, "a kick sets immediate_exit of the vCPU entered on this thread");
        w.clear_immediate_exit(&mut exit);
        assert_eq!(exit, 0, "a kick without the flag set is not sticky");
        FLAG.store(true, Ordering::SeqCst);
        w.clear_immediate_exit(&mut exit);
        assert_eq!(exit, 1);
        w.leave();
        let mut fresh = 0u8;
        w.enter(&mut fresh);
        assert_eq!(fresh, 1, "entering with the flag set exits at once");
        w.leave();
        exit = 0;
        kick_current_thread();
        assert_eq!(exit, 0, "no vCPU entered: nothing to kick");
    }

    #[test]
    fn clear_keeps_a_fired_exit() {
        let w = Watchdog::default();
        let mut exit = 1u8;
        w.clear_immediate_exit(&mut exit);
        assert_eq!(exit, 0);
        w.flag().store(true, Ordering::SeqCst);
        w.clear_immediate_exit(&mut exit);
        assert_eq!(exit, 1);
    }
}
