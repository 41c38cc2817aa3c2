//! The README's bad-input table, row by row, through the `picoqemu` binary: each bad input
//! gives one `picoqemu:` line naming the problem and the documented exit status (and nothing
//! on stdout). KVM availability problems are simulated with `PICOQEMU_FAKE_KVM_ERROR`, so these
//! tests need no /dev/kvm.
use std::path::PathBuf;
use std::process::{Command, Output};

use picoqemu::guests;

fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_picoqemu"))
        .args(args)
        .env_remove("PICOQEMU_FAKE_KVM_ERROR")
        .envs(env.iter().copied())
        .output()
        .expect("spawning picoqemu")
}

/// Checks one row: `status`, exactly one `picoqemu:` line on stderr containing `message`, and
/// an empty stdout.
fn row(env: &[(&str, &str)], args: &[&str], status: i32, message: &str) {
    let out = run(env, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("picoqemu: ")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one picoqemu: line expected: {stderr}");
    assert!(lines[0].contains(message), "{args:?}: expected {message:?} in {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout: {}", String::from_utf8_lossy(&out.stdout));
}

fn file(name: &str, bytes: &[u8]) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_bad_input_{name}"));
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn bad_option_values() {
    row(&[], &["run", "--mem", "2X", "x"], 2, "'2X' is not a size");
    row(&[], &["run", "--mem", "1M", "x"], 2, "guest RAM must be between 1088K and 1024M");
    row(&[], &["run", "--timeout", "fast", "x"], 2, "'fast' is not a duration");
    row(&[], &["run", "--backend", "fast", "x"], 2, "invalid value 'fast' for '--backend");
    row(&[], &["run", "--raw", "--rom", "x"], 2, "'--raw' cannot be used with '--rom'");
    row(&[], &["run"], 2, "required arguments were not provided");
    row(&[], &["run", "--builtin", "nope"], 2, "no built-in guest 'nope'");
    row(&[], &["bogus"], 2, "unrecognized subcommand 'bogus'");
    // The same parser everywhere: diff rejects the same size the same way.
    row(&[], &["diff", "--mem", "1M", "x"], 2, "guest RAM must be between 1088K and 1024M");
}

/// `--timeout 0` is bad usage on both backends (it used to halt on one and time out on the other).
#[test]
fn timeout_zero_is_rejected_on_both_backends() {
    for backend in ["interp", "kvm", "auto"] {
        for zero in ["0", "0s", "0ms"] {
            let args = ["run", "--backend", backend, "--timeout", zero, "--builtin", "jmp-self"];
            row(&[], &args, 2, "is no time at all; give a timeout of more than 0");
        }
    }
    row(&[], &["diff", "--timeout", "0", "x"], 2, "is no time at all");
}

#[test]
fn bad_images() {
    row(&[], &["run", "/nonexistent/picoqemu.img"], 2, "cannot read the image '/nonexistent/picoqemu.img'");
    row(&[], &["run", env!("CARGO_TARGET_TMPDIR")], 2, "it is a directory, not an image file");
    row(&[], &["run", &file("short", &[0x90; 100])], 2, "a boot sector must be exactly 512 bytes");
    row(&[], &["run", &file("nosig", &[0; 512])], 2, "does not end with the signature 0x55 0xAA");
    row(&[], &["run", "--raw", &file("empty", &[])], 2, "the image is empty");
    row(
        &[],
        &["run", "--raw", &file("big", &vec![0; 3 << 20])],
        2,
        "more than the 2097152 bytes of guest RAM",
    );
    row(
        &[],
        &["run", "--rom", &file("bigrom", &vec![0; 70_000])],
        2,
        "a ROM image must be 16 to 65536 bytes",
    );
}

#[test]
fn mmio_console_placement() {
    let hello = ["--builtin", "serial-hello"];
    let cases = [
        ("0xd0010", "is not 4 KiB-aligned"),
        ("0xb8000", "would cover the VGA text buffer"),
        ("0x0", "would cover the interrupt vector table"),
        ("0x100000", "is beyond the 1 MiB a real-mode guest can address"),
        ("0x7000", "would cover the image loaded at 0x7c00-0x7dff"),
    ];
    for backend in ["interp", "kvm"] {
        for (addr, message) in cases {
            let args = [&["run", "--backend", backend, "--mmio-console", addr][..], &hello[..]].concat();
            row(&[], &args, 2, message);
        }
    }
    let rom = file("rom16", &[0xF4; 16]);
    row(
        &[],
        &["run", "--rom", "--mmio-console", "0xff000", &rom],
        2,
        "would cover the image loaded at 0xffff0-0xfffff",
    );
}

const ADVICE: [(&str, &str); 3] = [
    ("absent", "No such file or directory (os error 2); /dev/kvm does not exist"),
    ("denied", "Permission denied (os error 13); this user may not open /dev/kvm"),
    ("busy", "Device or resource busy (os error 16); the CPU's virtualisation extensions are held"),
];

#[test]
fn kvm_requested_but_unavailable_exits_2() {
    for (fake, message) in ADVICE {
        let env = [("PICOQEMU_FAKE_KVM_ERROR", fake)];
        row(&env, &["run", "--backend", "kvm", "--builtin", "hello"], 2, message);
        row(&env, &["run", "--backend", "kvm", "--builtin", "hello"], 2, "use --backend interp");
    }
}

#[test]
fn auto_falls_back_to_the_interpreter_and_says_so() {
    let status = i32::from(guests::SERIAL_HELLO_EXIT_CODE) << 1 | 1;
    for (fake, message) in ADVICE {
        let out = run(&[("PICOQEMU_FAKE_KVM_ERROR", fake)], &["run", "--builtin", "serial-hello"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{fake}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), guests::SERIAL_HELLO_TEXT);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("picoqemu: KVM unavailable (") && first.contains(message),
            "{fake}: {stderr}"
        );
        assert!(first.ends_with("); using the interpreter"), "{fake}: {stderr}");
    }
}

#[test]
fn diff_and_fuzz_without_kvm_exit_5() {
    let env = [("PICOQEMU_FAKE_KVM_ERROR", "absent")];
    let hello = file("hello", &guests::hello().unwrap());
    row(&env, &["diff", "--raw", &hello], 5, "diff compares KVM with the interpreter and needs /dev/kvm");
    row(&env, &["fuzz", "--count", "1"], 5, "fuzz compares KVM with the interpreter and needs /dev/kvm");
}

#[test]
fn bad_fake_kvm_value_is_named() {
    let env = [("PICOQEMU_FAKE_KVM_ERROR", "sometimes")];
    row(&env, &["run", "--backend", "kvm", "--builtin", "hello"], 2, "is not one of absent, denied, busy");
}

#[test]
fn bad_inputs_of_the_other_commands() {
    row(&[], &["sst", "/nonexistent/sst"], 2, "cannot open /nonexistent/sst");
    row(&[], &["diff", "/nonexistent/picoqemu.img"], 2, "cannot read /nonexistent/picoqemu.img");
    let not_a_dir = file("not_a_dir", b"x");
    row(&[], &["fuzz", "--count", "1", "--out", &not_a_dir], 2, "exists and is not a directory");
    row(&[], &["fuzz", "--count", "0x"], 2, "invalid value '0x' for '--count");
}

/// `--load-state` with a file that is not a snapshot of this machine, and `--save-state` to a
/// place that cannot be written.
#[test]
fn bad_snapshots() {
    let good = file("snap_good", b"");
    let out = run(&[], &["--backend", "interp", "--max-instructions", "10", "--save-state", &good]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&good).unwrap();
    let load = |path: &str, extra: &[&str], status: i32, message: &str| {
        let mut args = vec!["--backend", "interp", "--load-state", path];
        args.extend_from_slice(extra);
        row(&[], &args, status, message);
    };
    load(&file("snap_garbage", b"PK\x03\x04 a zip file"), &[], 2, "not a picoqemu snapshot");
    load(&file("snap_cut", &bytes[..bytes.len() / 2]), &[], 2, "the snapshot is truncated");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 1;
    load(&file("snap_flipped", &flipped), &[], 2, "the snapshot is corrupt: its checksum");
    let mut v9 = bytes.clone();
    v9[8] = 9;
    load(&file("snap_v9", &v9), &[], 2, "snapshot format version 9 is not supported");
    load(
        &good,
        &["--mem", "4M"],
        2,
        "saved on another machine: it has 2048 KiB of guest RAM, this machine 4096 KiB",
    );
    load(&good, &["--mmio-console", "0xd0000"], 2, "lacks the state of this machine's device 'MMIO console'");
    load("/nonexistent/snap", &[], 2, "cannot read the snapshot '/nonexistent/snap'");
    load(env!("CARGO_TARGET_TMPDIR"), &[], 2, "it is a directory");
    let args = ["--backend", "interp", "--max-instructions", "10", "--save-state", "/nonexistent/dir/s"];
    row(&[], &args, 5, "cannot write the snapshot '/nonexistent/dir/s'");
}
