//! `picoqemu diff` on guests that never end: a timeout or budget on either side is "no verdict"
//! (status 4, naming the side and the instruction count), never a divergence; a guest flooding
//! port 0xE9 is compared with bounded memory (the capture keeps a capped head plus a digest).
//! Run through the binary; no timings are asserted. Skipped without KVM unless
//! `PICOQEMU_REQUIRE_KVM=1`.
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;
use common::{kvm_usable, picoqemu};

/// A boot sector starting with `code`, with the 55 AA signature.
fn boot_sector(name: &str, code: &[u8]) -> PathBuf {
    let mut b = vec![0u8; 512];
    b[..code.len()].copy_from_slice(code);
    b[510] = 0x55;
    b[511] = 0xAA;
    let path =
        std::env::temp_dir().join(format!("picoqemu-cli-diff-limits-{}-{name}.bin", std::process::id()));
    std::fs::write(&path, b).expect("writing the boot sector");
    path
}

const JMP_SELF: &[u8] = &[0xEB, 0xFE];
/// `mov al, 'A'; out 0xE9, al; jmp short -4`: floods the debug console.
const FLOOD_E9: &[u8] = &[0xB0, 0x41, 0xE6, 0xE9, 0xEB, 0xFC];

fn diff(args: &[&str], image: &std::path::Path) -> (Option<i32>, String) {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    all.push(image.to_str().unwrap());
    let out = picoqemu(&all);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "{text}");
    (out.status.code(), text)
}

#[test]
fn lockstep_jmp_self_at_the_timeout_is_no_verdict() {
    if !kvm_usable("lockstep_jmp_self_at_the_timeout_is_no_verdict") {
        return;
    }
    let image = boot_sector("jmp-lockstep", JMP_SELF);
    let (code, text) = diff(&["--lockstep", "--timeout", "1s"], &image);
    assert_eq!(code, Some(4), "{text}");
    assert!(!text.contains("DIVERGENT"), "{text}");
    assert!(text.contains("no verdict") && text.contains("ran out of time"), "{text}");
    assert!(text.contains("identical instructions in lockstep"), "{text}");
    let _ = std::fs::remove_file(image);
}

#[test]
fn whole_run_jmp_self_is_no_verdict_at_the_timeout_and_at_the_budget() {
    if !kvm_usable("whole_run_jmp_self_is_no_verdict_at_the_timeout_and_at_the_budget") {
        return;
    }
    let image = boot_sector("jmp-whole", JMP_SELF);
    let (code, text) = diff(&["--timeout", "1s"], &image);
    assert_eq!(code, Some(4), "{text}");
    assert!(!text.contains("DIVERGENT"), "{text}");
    assert!(text.contains("ran out of time (--timeout)"), "{text}");
    assert!(text.contains("interp: timeout") || text.contains("interp: instruction budget"), "{text}");
    // A budget stops both sides at the same count: still compared, no difference, status 4.
    let (code, text) = diff(&["--max-instructions", "5000", "--timeout", "60s"], &image);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("instruction budget (5000 instructions each)"), "{text}");
    let _ = std::fs::remove_file(image);
}

/// Runs `picoqemu diff <args>` and returns (status, output, peak resident set in KiB), the
/// peak read from the child's own rusage when it is reaped.
// The child is reaped by `wait4` (which also gives its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn diff_with_peak_rss(args: &[&str]) -> (Option<i32>, String, i64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_picoqemu"))
        .arg("diff")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning picoqemu");
    let mut text = String::new();
    child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child (not yet reaped: `Child::wait` is never called) and
    // writes into the two locals, which live across the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, text, usage.ru_maxrss)
}

#[test]
fn e9_flood_is_no_verdict_with_bounded_memory() {
    if !kvm_usable("e9_flood_is_no_verdict_with_bounded_memory") {
        return;
    }
    let image = boot_sector("flood", FLOOD_E9);
    for lockstep in [false, true] {
        let mut args = vec!["--timeout", "5s"];
        if lockstep {
            args.push("--lockstep");
        }
        args.push(image.to_str().unwrap());
        let (code, text, peak_kib) = diff_with_peak_rss(&args);
        assert_eq!(code, Some(4), "lockstep={lockstep}: {text}");
        assert!(!text.contains("DIVERGENT"), "{text}");
        assert!(text.contains("ran out of time"), "{text}");
        // The capture keeps at most 1 MiB per device; unbounded capture took gigabytes.
        assert!(peak_kib < 64 * 1024, "lockstep={lockstep}: peak RSS {peak_kib} KiB: {text}");
    }
    let _ = std::fs::remove_file(image);
}
