//! The GDB socket: binding `--gdb ADDR:PORT` (a port in use is a clear usage error), the
//! announcement on stderr, and accepting one connection, either before the guest starts
//! (`--gdb-wait`) or while it runs (the attach then kicks the backend, stopping the guest).
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use picoqemu_core::{Backend, Machine, RunLimits, StopReason};

use crate::cli::{report, CliError, EXIT_USAGE};

/// How long the background acceptor sleeps between looks for a connection and its stop flag.
const POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A bound, announced listener.
pub struct Listener {
    inner: TcpListener,
}

/// What happened while the guest ran waiting for GDB.
pub enum Attached {
    /// GDB connected; the guest is stopped where the attach found it.
    Conn(TcpStream),
    /// The guest stopped on its own before any GDB connected.
    Finished(StopReason),
}

/// Binds `addr` and announces the bound address (the real port when `addr` has port 0).
pub fn bind(addr: SocketAddr) -> Result<Listener, CliError> {
    let inner = TcpListener::bind(addr).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            "; another program (or another picoqemu) uses that port: pick another port, or port 0 for a free one"
        } else {
            "; check the address (e.g. 127.0.0.1:1234)"
        };
        CliError::Failed { status: EXIT_USAGE, message: format!("--gdb {addr}: cannot listen: {e}{hint}") }
    })?;
    let bound = inner.local_addr().map_err(|e| CliError::Host(format!("--gdb: {e}")))?;
    report(&format!("picoqemu: gdb: listening on {bound}; connect with: gdb -ex 'target remote {bound}'\n"));
    Ok(Listener { inner })
}

fn accepted(conn: TcpStream) -> Result<TcpStream, CliError> {
    let host = |e: io::Error| CliError::Host(format!("--gdb: {e}"));
    conn.set_nonblocking(false).map_err(host)?;
    conn.set_nodelay(true).map_err(host)?;
    report("picoqemu: gdb: connected\n");
    Ok(conn)
}

impl Listener {
    /// `--gdb-wait`: blocks until GDB connects.
    pub fn accept_blocking(self) -> Result<TcpStream, CliError> {
        let (conn, _) = self.inner.accept().map_err(|e| CliError::Host(format!("--gdb: accept: {e}")))?;
        accepted(conn)
    }

    /// Runs the guest while a thread waits for GDB; a connection kicks the backend.
    pub fn accept_while_running(
        self,
        machine: &mut Machine,
        backend: &mut dyn Backend,
        limits: RunLimits,
    ) -> Result<Attached, CliError> {
        let Some(kick) = backend.kicker() else {
            return Err(CliError::Host("--gdb: this backend cannot be interrupted; use --gdb-wait".into()));
        };
        let done = Arc::new(AtomicBool::new(false));
        let slot: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
        let (done2, slot2) = (done.clone(), slot.clone());
        let listener = self.inner;
        listener.set_nonblocking(true).map_err(|e| CliError::Host(format!("--gdb: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("gdb-accept".into())
            .spawn(move || {
                crate::signals::block_sigint_on_this_thread();
                while !done2.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            *slot2.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
                            kick.kick();
                            return;
                        }
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
            })
            .map_err(|e| CliError::Host(format!("--gdb: starting the acceptor: {e}")))?;
        let stop = backend.run(machine, limits).unwrap_or_else(StopReason::from);
        done.store(true, Ordering::Release);
        let _ = thread.join();
        let conn = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (stop, conn) {
            (StopReason::Interrupted, Some(conn)) if !crate::signals::interrupted() => {
                Ok(Attached::Conn(accepted(conn)?))
            }
            (stop, _) => Ok(Attached::Finished(stop)),
        }
    }
}
