//! Ctrl-C: a process-wide stop flag set by a SIGINT handler, which every backend built by
//! [`crate::backends`] watches. The interpreter sees it at its next time check (every 64 Ki
//! instructions); the KVM backend sees it at once, because the signal ends a running
//! `KVM_RUN` with `EINTR` and the handler also sets `immediate_exit` of a vCPU that is between
//! two `KVM_RUN`s on the interrupted thread ([`picoqemu_kvm::kick_current_thread`]).
//!
//! The handler is installed with `SA_RESETHAND`: a second Ctrl-C, should the first not stop
//! the guest, ends the process the default way. Threads other than the vCPU's must not take
//! the signal (the kick only reaches the vCPU on the interrupted thread): they call
//! [`block_sigint_on_this_thread`].
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set when SIGINT arrived (Ctrl-C); never cleared.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Async-signal-safe: an atomic store and a volatile byte store.
extern "C" fn on_sigint(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    picoqemu_kvm::kick_current_thread();
}

/// Installs the SIGINT handler for the calling process (once is enough; again is harmless).
pub fn install_sigint_handler() -> io::Result<()> {
    // SAFETY: sigaction is a plain C struct; all-zero is a valid starting value (empty mask,
    // no flags), filled in below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESETHAND;
    // SAFETY: `action.sa_mask` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialised and the handler is async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Keeps SIGINT away from the calling thread, so it is delivered to the vCPU thread.
pub fn block_sigint_on_this_thread() {
    // SAFETY: sigset_t is plain data; it is initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame; pthread_sigmask only changes the
    // calling thread's mask. Failure (impossible with these arguments) would only leave
    // SIGINT deliverable here, so its result is not needed.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
