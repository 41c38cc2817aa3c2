//! KVM-specific behaviour of the `picoqemu` binary: guests that never stop on their own
//! (`jmp $`, and `vmcall`, which can hang `KVM_RUN` on our hosts) end at `--timeout` with
//! status 4, or 3 when KVM reports an emulation failure; `daa` (which KVM's emulator here
//! cannot run) is reported with its address, bytes and disassembly. No timings are asserted.
use std::process::Output;

mod common;
use common::{kvm_usable, picoqemu};

/// Status 4 with a timeout message, or 3 with an emulation-failure message naming the
/// instruction; always a register dump and never a panic.
fn assert_timeout_or_emulation_failure(out: &Output, mnemonic: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    match out.status.code() {
        Some(4) => assert!(stderr.starts_with("picoqemu: kvm backend: timeout"), "{stderr}"),
        Some(3) => {
            assert!(stderr.starts_with("picoqemu: kvm backend: KVM could not emulate"), "{stderr}");
            assert!(stderr.contains(mnemonic), "disassembly missing: {stderr}");
        }
        other => panic!("expected status 4 or 3, got {other:?}: {stderr}"),
    }
    assert!(stderr.contains("EIP="), "register dump missing: {stderr}");
}

#[test]
fn jmp_self_ends_at_the_timeout() {
    if !kvm_usable("jmp_self_ends_at_the_timeout") {
        return;
    }
    let out = picoqemu(&["run", "--backend", "kvm", "--timeout", "1s", "--builtin", "jmp-self"]);
    assert_timeout_or_emulation_failure(&out, "jmp");
}

#[test]
fn vmcall_ends_at_the_timeout_or_is_reported() {
    if !kvm_usable("vmcall_ends_at_the_timeout_or_is_reported") {
        return;
    }
    let out = picoqemu(&["run", "--backend", "kvm", "--timeout", "1s", "--builtin", "vmcall"]);
    assert_timeout_or_emulation_failure(&out, "vmcall");
}

#[test]
fn daa_is_an_emulation_failure_with_disassembly() {
    if !kvm_usable("daa_is_an_emulation_failure_with_disassembly") {
        return;
    }
    let out = picoqemu(&["run", "--backend", "kvm", "--timeout", "5s", "--builtin", "daa"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        // Where KVM's emulator implements DAA the guest exits with the BCD result.
        Some(code) if code == i32::from(picoqemu::guests::DAA_RESULT) << 1 | 1 => {
            eprintln!("note: KVM ran daa on this host")
        }
        Some(3) => {
            assert!(stderr.contains("KVM could not emulate the instruction at 0000:7c04"), "{stderr}");
            assert!(stderr.contains("0000:7c04  27"), "bytes missing: {stderr}");
            assert!(stderr.contains("daa"), "disassembly missing: {stderr}");
            assert!(stderr.contains("try --backend interp"), "{stderr}");
        }
        other => panic!("unexpected status {other:?}: {stderr}"),
    }
}

/// Runs `picoqemu args`, killing it after `limit` (a safety net: the test fails then).
fn picoqemu_within(args: &[&str], limit: std::time::Duration) -> Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_picoqemu"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning picoqemu");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            child.kill().expect("kill");
            let out = child.wait_with_output().expect("output");
            panic!("picoqemu {args:?} still ran after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn vmcall_without_a_timeout_stops_with_status_3() {
    if !kvm_usable("vmcall_without_a_timeout_stops_with_status_3") {
        return;
    }
    // No --timeout: the backend's hang check must end the run by itself.
    let out = picoqemu_within(
        &["run", "--backend", "kvm", "--builtin", "vmcall"],
        std::time::Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("KVM could not emulate the instruction at 0000:7c00"), "{stderr}");
    assert!(stderr.contains("vmcall"), "disassembly missing: {stderr}");
    assert!(stderr.contains("try --backend interp"), "{stderr}");
    assert!(stderr.contains("EIP="), "register dump missing: {stderr}");
}
