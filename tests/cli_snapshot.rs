//! `--save-state` / `--load-state` through the binary, the acceptance test: run N
//! instructions on one backend with `--max-instructions N --save-state s`, resume on the other
//! with `--load-state s`, and get the same final registers (`--regs`), screen and output as an
//! uninterrupted run — COM1 on stdout and port 0xE9 on stderr, the two parts put together.
//! Guests: the built-in hello (the demo, no command) and the serial boot sector. (The PC
//! platform with its timer has no command-line switch; its cross-backend resume is tested at
//! library level in `tests/snapshot_resume.rs`.)
use std::path::PathBuf;

mod common;
use common::{kvm_usable, picoqemu};

/// A line of picoqemu's register dump (`EAX=…`, `CS=… base=…`, `CR0=…`).
fn dump_line(l: &str) -> bool {
    l.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    })
}

/// A line of a stop report's context: the `at`/`next` disassembly, the last instructions.
fn report_line(l: &str) -> bool {
    l.starts_with("  ") || l.starts_with("last instructions")
}

/// Exit status, stdout, stderr without picoqemu's own lines (`picoqemu:` messages and a
/// stop's report and register dump: what is left is what the guest wrote to 0xE9; the
/// guests here write no line starting with two spaces), and the whole stderr.
fn outputs(args: &[&str]) -> (Option<i32>, String, String, String) {
    let out = picoqemu(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let guest: String = stderr
        .lines()
        .filter(|l| !l.starts_with("picoqemu: ") && !dump_line(l) && !report_line(l))
        .map(|l| format!("{l}\n"))
        .collect();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), guest, stderr)
}

fn state_file(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_snapshot_{name}"));
    p.to_str().unwrap().to_string()
}

/// Cuts `guest` (args before the machine options) after `n` instructions on `first` and
/// resumes on `second`; compares with the uninterrupted run on `second`.
fn cut_and_resume(guest: &[&str], n: u64, first: &str, second: &str) {
    let whole = [guest, &["--backend", second, "--regs"]].concat();
    let (status, stdout, debug, _) = outputs(&whole);
    let file = state_file(&format!("{}_{n}_{first}_{second}", guest.last().unwrap_or(&"hello")));
    let n = n.to_string();
    let cut =
        [guest, &["--backend", first, "--max-instructions", &n, "--screen", "none", "--save-state", &file]]
            .concat();
    let (status1, stdout1, debug1, stderr) = outputs(&cut);
    assert_eq!(status1, Some(4), "the cut at {n} is mid-program: {stderr}");
    assert!(stderr.contains(&format!("picoqemu: machine state saved to '{file}'")), "{stderr}");
    let resume = [guest, &["--backend", second, "--regs", "--load-state", &file]].concat();
    let (status2, stdout2, debug2, _) = outputs(&resume);
    let what = format!("{guest:?} cut at {n} on {first}, resumed on {second}");
    assert_eq!(status2, status, "{what}: exit status");
    assert_eq!(stdout1 + &stdout2, stdout, "{what}: COM1, screen and registers");
    assert_eq!(debug1 + &debug2, debug, "{what}: port 0xE9");
}

#[test]
fn interp_to_interp() {
    cut_and_resume(&[], 25, "interp", "interp");
    cut_and_resume(&["run", "--builtin", "serial-hello"], 30, "interp", "interp");
}

#[test]
fn interp_to_kvm_and_back() {
    if !kvm_usable("interp_to_kvm_and_back") {
        return;
    }
    for n in [3, 25, 60] {
        cut_and_resume(&[], n, "interp", "kvm");
        cut_and_resume(&[], n, "kvm", "interp");
    }
    for n in [12, 30, 45] {
        cut_and_resume(&["run", "--builtin", "serial-hello"], n, "interp", "kvm");
        cut_and_resume(&["run", "--builtin", "serial-hello"], n, "kvm", "interp");
    }
}

#[test]
fn a_halted_machine_stays_halted_when_resumed() {
    let file = state_file("halted");
    let out = picoqemu(&["--backend", "interp", "--screen", "none", "--save-state", &file]);
    assert_eq!(out.status.code(), Some(0));
    let backends: &[&str] = if kvm_usable("a_halted_machine_stays_halted_when_resumed") {
        &["interp", "kvm"]
    } else {
        &["interp"]
    };
    let (_, reference, _, _) = outputs(&["--backend", "interp", "--regs"]);
    for b in backends {
        let (status, stdout, _, _) = outputs(&["--backend", b, "--regs", "--load-state", &file]);
        assert_eq!(status, Some(0), "{b}");
        assert_eq!(stdout, reference, "{b}: resumed at the HLT, nothing more runs");
    }
}
