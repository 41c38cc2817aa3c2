//! `--trace`, `--break`, `--magic-break`, `--stats` and the abnormal-stop report, on the
//! interpreter and on KVM, through the `picoqemu` binary. The guest is assembled here with
//! iced-x86's `code_asm`. KVM runs skip with a printed reason without /dev/kvm (and fail
//! instead under `PICOQEMU_REQUIRE_KVM=1`).
use std::path::PathBuf;
use std::process::Output;

use iced_x86::code_asm::*;
use picoqemu::guests::boot_sector;

mod common;
use common::{kvm_usable, picoqemu};

/// The guest: AX = 0x40 + 1, `xchg bx, bx`, two 'A's to port 0xE9, `hlt`.
///
/// ```text
/// 7c00 mov ax, 40h   7c03 mov bx, 1   7c06 add ax, bx   7c08 xchg bx, bx
/// 7c0a mov dx, 0E9h  7c0d out dx, al  7c0e out dx, al   7c0f hlt
/// ```
fn guest() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE.get_or_init(build_guest).clone()
}

fn build_guest() -> String {
    let mut a = CodeAssembler::new(16).unwrap();
    let build = |a: &mut CodeAssembler| -> Result<(), IcedError> {
        a.mov(ax, 0x40)?;
        a.mov(bx, 1)?;
        a.add(ax, bx)?;
        a.xchg(bx, bx)?;
        a.mov(dx, 0xE9)?;
        a.out(dx, al)?;
        a.out(dx, al)?;
        a.hlt()
    };
    build(&mut a).unwrap();
    let code = a.assemble(0x7C00).unwrap();
    assert_eq!(&code[8..10], &[0x87, 0xDB], "xchg bx, bx must be the magic encoding");
    file("guest.img", &boot_sector(&code).unwrap())
}

fn file(name: &str, bytes: &[u8]) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_trace_{name}"));
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn backends(test: &str) -> Vec<&'static str> {
    let mut v = vec!["interp"];
    if kvm_usable(test) {
        v.push("kvm");
    }
    v
}

fn run(backend: &str, extra: &[&str]) -> (Output, String, String) {
    let image = guest();
    let mut args = vec!["run", "--backend", backend];
    args.extend_from_slice(extra);
    args.push(&image);
    let out = picoqemu(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

const INTEL: [&str; 8] = [
    "       1 0000:7c00  b8 40 00             mov ax, 40h                      ax=0040",
    "       2 0000:7c03  bb 01 00             mov bx, 1                        bx=0001",
    "       3 0000:7c06  01 d8                add ax, bx                       ax=0041 flags=0006",
    "       4 0000:7c08  87 db                xchg bx, bx",
    "       5 0000:7c0a  ba e9 00             mov dx, 0E9h                     dx=00e9",
    "       6 0000:7c0d  ee                   out dx, al",
    "       7 0000:7c0e  ee                   out dx, al",
    "       8 0000:7c0f  f4                   hlt                                -> halted",
];

/// The trace lines of `text`; each 'A' the guest writes to port 0xE9 (also stderr, written
/// as each OUT runs) precedes the line after its OUT.
fn trace_lines(text: &str) -> Vec<&str> {
    text.lines().map(|l| l.trim_start_matches('A')).filter(|l| l.starts_with("       ")).collect()
}

#[test]
fn trace_intel_on_both_backends() {
    for b in backends("trace_intel_on_both_backends") {
        let (out, _, stderr) = run(b, &["--trace"]);
        assert_eq!(out.status.code(), Some(0), "{b}: {stderr}");
        assert_eq!(trace_lines(&stderr), INTEL, "{b}: {stderr}");
        assert_eq!(stderr.matches('A').count(), 2, "{b}: the guest's 0xE9 output: {stderr}");
    }
}

#[test]
fn trace_att_to_a_file_and_to_stdout() {
    for b in backends("trace_att_to_a_file_and_to_stdout") {
        let path = file(&format!("{b}.trace"), b"old contents\n");
        let arg = format!("--trace={path}");
        let (out, stdout, stderr) = run(b, &[&arg, "--trace-syntax", "att"]);
        assert_eq!(out.status.code(), Some(0), "{b}: {stderr}");
        assert!(trace_lines(&stderr).is_empty() && stdout.is_empty(), "{b}: {stderr}");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{b}: {text}");
        assert_eq!(
            lines[0],
            "       1 0000:7c00  b8 40 00             mov $0x40,%ax                    ax=0040"
        );
        assert_eq!(
            lines[2],
            "       3 0000:7c06  01 d8                add %bx,%ax                      ax=0041 flags=0006"
        );
        assert_eq!(lines[3], "       4 0000:7c08  87 db                xchg %bx,%bx");
        let (out, stdout, _) = run(b, &["--trace=-"]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(trace_lines(&stdout), INTEL, "{b}: {stdout}");
    }
}

#[test]
fn break_stops_with_status_0_and_the_registers() {
    for b in backends("break_stops_with_status_0_and_the_registers") {
        for tracing in [false, true] {
            let mut args = vec!["--break", "0000:7c06", "--break", "0x7c0e"];
            if tracing {
                args.push("--trace");
            }
            let (out, _, stderr) = run(b, &args);
            assert_eq!(out.status.code(), Some(0), "{b}: {stderr}");
            assert!(
                stderr.contains(
                    "picoqemu: {b} backend: breakpoint at 0000:7c06 (--break)".replace("{b}", b).as_str()
                ),
                "{b}: {stderr}"
            );
            assert!(stderr.contains("  at   0000:7c06  01 d8                add ax, bx"), "{b}: {stderr}");
            assert!(stderr.contains("EAX=00000040 EBX=00000001"), "{b}: {stderr}");
            assert!(
                !stderr.contains('A'.to_string().repeat(2).as_str()),
                "{b}: ran past the break: {stderr}"
            );
            assert_eq!(trace_lines(&stderr).len(), if tracing { 2 } else { 0 }, "{b}: {stderr}");
        }
    }
}

#[test]
fn more_than_four_breaks_on_kvm_are_refused() {
    if !kvm_usable("more_than_four_breaks_on_kvm_are_refused") {
        return;
    }
    let many = ["--break", "0x7c00", "--break", "0x7c03", "--break", "0x7c06", "--break", "0x7c08"];
    let mut args = many.to_vec();
    args.extend(["--break", "0x7c0a"]);
    let (out, stdout, stderr) = run("kvm", &args);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("5 breakpoints requested") && stderr.contains("at most 4"), "{stderr}");
    assert!(stdout.is_empty());
    // The interpreter takes any number.
    let (out, _, stderr) = run("interp", &args);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("breakpoint at 0000:7c00"), "{stderr}");
}

#[test]
fn magic_break_stops_after_xchg_bx_bx() {
    for b in backends("magic_break_stops_after_xchg_bx_bx") {
        for tracing in [false, true] {
            let mut args = vec!["--magic-break"];
            if tracing {
                args.push("--trace");
            }
            let (out, _, stderr) = run(b, &args);
            assert_eq!(out.status.code(), Some(0), "{b}: {stderr}");
            assert!(
                stderr.contains("magic breakpoint: xchg bx, bx ran; stopped at 0000:7c0a"),
                "{b}: {stderr}"
            );
            assert!(stderr.contains("EAX=00000041 EBX=00000001"), "{b}: {stderr}");
            assert!(!stderr.contains("AA"), "{b}: ran past the magic breakpoint: {stderr}");
            assert_eq!(trace_lines(&stderr), if tracing { &INTEL[..4] } else { &[] }, "{b}: {stderr}");
        }
        // Without the option, xchg bx, bx is an ordinary instruction.
        let (out, _, stderr) = run(b, &[]);
        assert_eq!(out.status.code(), Some(0), "{b}: {stderr}");
        assert!(stderr.contains("AA") && !stderr.contains("breakpoint"), "{b}: {stderr}");
    }
}

#[test]
fn stats_show_instructions_exits_and_devices() {
    for b in backends("stats_show_instructions_exits_and_devices") {
        let (out, _, stderr) = run(b, &["--stats"]);
        assert_eq!(out.status.code(), Some(0), "{b}: {stderr}");
        assert!(stderr.contains(&format!("stats ({b} backend):")), "{b}: {stderr}");
        assert!(stderr.contains("    debug console        0 reads, 2 writes"), "{b}: {stderr}");
        assert!(stderr.contains("  bios: none loaded"), "{b}: {stderr}");
        assert!(stderr.contains("  wall time: "), "{b}: {stderr}");
        if b == "interp" {
            assert!(stderr.contains("  instructions retired: 8\n"), "{stderr}");
            assert!(!stderr.contains("exits:"), "{stderr}");
        } else {
            assert!(stderr.contains("instructions retired: not counted"), "{stderr}");
            let exits = stderr.lines().find(|l| l.starts_with("  exits: ")).expect("exits line");
            assert!(exits.contains("io 1") && exits.contains("hlt 1"), "{exits}");
            // Traced, KVM counts what it stepped.
            let (_, _, stderr) = run(b, &["--stats", "--trace"]);
            assert!(stderr.contains("  instructions retired: 8\n"), "{stderr}");
        }
    }
}

#[test]
fn an_abnormal_stop_shows_registers_disassembly_and_last_instructions() {
    for b in backends("an_abnormal_stop_shows_registers_disassembly_and_last_instructions") {
        let mut args = vec!["--max-instructions", "5"];
        if b == "kvm" {
            args.push("--trace=/dev/null");
        }
        let (out, _, stderr) = run(b, &args);
        assert_eq!(out.status.code(), Some(4), "{b}: {stderr}");
        assert!(stderr.contains("instruction budget exhausted after 5 instructions"), "{b}: {stderr}");
        assert!(stderr.contains("  at   0000:7c0d  ee                   out dx, al"), "{b}: {stderr}");
        assert!(stderr.contains("  next 0000:7c0e  ee                   out dx, al"), "{b}: {stderr}");
        assert!(stderr.contains("EAX=00000041 EBX=00000001 ECX=00000000 EDX=000000e9"), "{b}: {stderr}");
        let (_, last) = stderr.split_once("last instructions").expect("last instructions");
        let lines: Vec<&str> = last.lines().skip(1).collect();
        assert_eq!(lines.len(), 5, "{b}: {stderr}");
        assert!(
            lines[0].contains("0000:7c00  b8 40 00") && lines[0].contains("mov ax, 40h"),
            "{b}: {stderr}"
        );
        assert!(
            lines[4].contains("0000:7c0a  ba e9 00") && lines[4].contains("mov dx, 0E9h"),
            "{b}: {stderr}"
        );
    }
}

#[test]
fn kvm_says_when_the_last_instructions_are_not_known() {
    if !kvm_usable("kvm_says_when_the_last_instructions_are_not_known") {
        return;
    }
    let out = picoqemu(&["run", "--backend", "kvm", "--builtin", "daa"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("  at   ") && stderr.contains("daa"), "{stderr}");
    assert!(
        stderr.contains("last instructions: not known (kvm does not record them; --trace does)"),
        "{stderr}"
    );
}

#[test]
fn bad_option_values_are_usage_errors() {
    let image = guest();
    let cases: [(&[&str], &str); 5] = [
        (&["--break", "zz"], "not a breakpoint address"),
        (&["--break", "0:10000"], "is not a hexadecimal number from 0 to ffff"),
        (&["--trace", "--trace-syntax", "masm"], "invalid value 'masm' for '--trace-syntax <SYNTAX>'"),
        (&["--trace-syntax", "att"], "--trace"),
        (&["--trace=/nonexistent-dir/t.txt"], "cannot create the trace file '/nonexistent-dir/t.txt'"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["run", "--backend", "interp"];
        args.extend_from_slice(extra);
        args.push(&image);
        let out = picoqemu(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        let first = stderr.lines().find(|l| l.starts_with("picoqemu: ")).unwrap_or_default();
        assert!(stderr.contains(message), "{extra:?}: expected {message:?} in {first:?} / {stderr}");
        assert!(out.stdout.is_empty(), "{extra:?}");
    }
}
