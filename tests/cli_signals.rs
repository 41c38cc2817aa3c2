//! Ctrl-C and unwritable output through the `picoqemu` binary: a real SIGINT sent to a running
//! `picoqemu run` stops the guest on both backends with its output flushed, the register dump
//! on stderr and exit status 130; output to `/dev/full` or a closed pipe is reported with a
//! `picoqemu:` line and exit status 5. The KVM test skips (printed reason) without /dev/kvm.
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};

use iced_x86::code_asm::{al, dx, CodeAssembler};
use picoqemu::guests;

mod common;
use common::kvm_usable;

/// A boot sector that writes "A\n" then "B" to COM1 and loops forever: the "B" has no newline,
/// so it reaches stdout only if the run's output is flushed when it is stopped.
fn chatty_loop() -> std::path::PathBuf {
    let mut a = CodeAssembler::new(16).unwrap();
    a.mov(dx, u32::from(guests::COM1)).unwrap();
    for byte in [b'A', b'\n', b'B'] {
        a.mov(al, u32::from(byte)).unwrap();
        a.out(dx, al).unwrap();
    }
    let mut here = a.create_label();
    a.set_label(&mut here).unwrap();
    a.jmp(here).unwrap();
    let code = a.assemble(u64::from(guests::BOOT_ORIGIN)).unwrap();
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli_signals_chatty.img");
    std::fs::write(&path, guests::boot_sector(&code).unwrap()).unwrap();
    path
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_picoqemu"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning picoqemu")
}

/// Waits (by reading /proc, not by sleeping a fixed time) until `pid` catches SIGINT, i.e. its
/// handler is installed and the guest is about to run or running.
fn wait_for_sigint_handler(pid: u32) {
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).expect("SigCgt mask"))
            .expect("SigCgt line");
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        std::thread::yield_now();
    }
}

fn sigint(child: &Child) {
    // SAFETY: kill has no memory effects; the pid is our own live (not yet waited) child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
}

/// Sends SIGINT and checks the clean stop: status 130, the reason and the registers on stderr.
fn interrupt_and_check(mut child: Child, stdout_so_far: Vec<u8>) -> String {
    sigint(&child);
    let mut stdout = stdout_so_far;
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.starts_with("picoqemu: "), "{stderr}");
    assert!(stderr.contains("stopped by Ctrl-C (SIGINT)"), "{stderr}");
    assert!(stderr.contains("EAX=") && stderr.contains("CS:IP="), "register dump missing: {stderr}");
    String::from_utf8(stdout).unwrap()
}

#[test]
fn ctrl_c_stops_the_interpreter_with_output_flushed() {
    let image = chatty_loop();
    let mut child = spawn(&["run", "--backend", "interp", image.to_str().unwrap()]);
    // The guest is running once its first line arrived; read exactly that line.
    let mut first = vec![0u8; 2];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(first, b"A\n");
    let stdout = interrupt_and_check(child, first);
    assert_eq!(stdout, "A\nB", "the pending \"B\" must be flushed when Ctrl-C stops the guest");
}

#[test]
fn ctrl_c_stops_the_interpreter_running_jmp_self() {
    let child = spawn(&["run", "--backend", "interp", "--builtin", "jmp-self"]);
    wait_for_sigint_handler(child.id());
    assert_eq!(interrupt_and_check(child, Vec::new()), "");
}

#[test]
fn ctrl_c_stops_kvm_running_jmp_self_and_vmcall() {
    if !kvm_usable("ctrl_c_stops_kvm_running_jmp_self_and_vmcall") {
        return;
    }
    // `vmcall` hangs inside KVM_RUN on PVM hosts: the signal itself must end it.
    for guest in ["jmp-self", "vmcall"] {
        let child = spawn(&["run", "--backend", "kvm", "--builtin", guest]);
        wait_for_sigint_handler(child.id());
        let stdout = interrupt_and_check(child, Vec::new());
        assert_eq!(stdout, "", "{guest}");
    }
}

fn unwritable_stdout_is_reported(stdout: impl Into<Stdio>, args: &[&str], what: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_picoqemu"))
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("spawning picoqemu");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("picoqemu: ")).unwrap_or_default();
    assert!(line.contains(&format!("cannot write {what}")), "{args:?}: {stderr}");
}

#[test]
fn output_to_dev_full_is_reported() {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("opening /dev/full");
    for backend in ["interp", "auto"] {
        let serial = ["run", "--backend", backend, "--builtin", "serial-hello"];
        unwritable_stdout_is_reported(full(), &serial, "COM1 output to stdout: No space left on device");
        let screen = ["--backend", backend];
        unwritable_stdout_is_reported(full(), &screen, "the screen and registers to stdout");
    }
}

#[test]
fn output_to_a_closed_pipe_is_reported() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created by pipe and are owned by nothing else.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    let args = ["run", "--backend", "interp", "--builtin", "serial-hello"];
    unwritable_stdout_is_reported(writer, &args, "COM1 output to stdout: Broken pipe");
}
