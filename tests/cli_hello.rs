//! The article's program through the `picoqemu` binary: the default command (built-in copy),
//! `run --raw` of `../shared/guests/seed_hello.bin`, on the interpreter and on KVM. The screen
//! is checked exactly as text and as ANSI (which shows every cell's attribute), and the two
//! backends must print the same bytes.
use std::process::Output;

mod common;
use common::{kvm_usable, picoqemu};

const EXPECTED_ROWS: [&str; 5] = [
    r" _   _      _ _        __        __         _     _ _",
    r"| | | | ___| | | ___   \ \      / /__  _ __| | __| | |",
    r"| |_| |/ _ \ | |/ _ \   \ \ /\ / / _ \| '__| |/ _` | |",
    r"|  _  |  __/ | | (_) |   \ V  V / (_) | |  | | (_| |_|",
    r"|_| |_|\___|_|_|\___/     \_/\_/ \___/|_|  |_|\__,_(_)",
];

/// The article's binary from `../shared`; when that is absent (a clean clone), our source build
/// of it written to a temporary file (`guests_hello` proves the two byte-identical).
fn seed_path() -> String {
    let p = match picoqemu_verify::shared::require("guests/seed_hello.bin") {
        Some(p) => p,
        None => {
            let p = std::env::temp_dir().join(format!("picoqemu-seed-hello-{}.bin", std::process::id()));
            std::fs::write(&p, picoqemu::guests::hello().expect("hello builds")).expect("temp file");
            eprintln!("note: running our source build of the hello guest instead");
            p
        }
    };
    p.to_str().expect("UTF-8 path").to_string()
}

fn expected_text() -> String {
    let mut s = EXPECTED_ROWS.join("\n");
    s.push('\n');
    s
}

/// All 25 rows, each one colour run of attribute 0x0A (bright green on black: 92;40).
fn expected_ansi() -> String {
    let mut s = String::new();
    for row in 0..25 {
        let text = EXPECTED_ROWS.get(row).copied().unwrap_or("");
        // Cleared cells hold NUL, shown as a blank.
        s.push_str(&format!("\x1b[0;92;40m{text:<80}\x1b[0m\n"));
    }
    s
}

fn assert_ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    String::from_utf8(out.stdout.clone()).expect("UTF-8 screen")
}

fn check_backend(backend: &str) -> Vec<String> {
    let seed = seed_path();
    let runs: [Vec<&str>; 4] = [
        vec!["--backend", backend],
        vec!["run", "--backend", backend, "--raw", &seed],
        vec!["run", "--backend", backend, "--builtin", "hello"],
        vec!["run", "--backend", backend, "--raw", "--screen", "text", &seed],
    ];
    let mut outputs = Vec::new();
    for args in &runs {
        let stdout = assert_ok(&picoqemu(args), &format!("{args:?}"));
        assert_eq!(stdout, expected_text(), "{args:?}");
        outputs.push(stdout);
    }
    let ansi =
        assert_ok(&picoqemu(&["run", "--backend", backend, "--raw", "--screen", "ansi", &seed]), "ansi");
    assert_eq!(ansi, expected_ansi(), "{backend}: ANSI screen (attributes)");
    outputs.push(ansi);
    let none =
        assert_ok(&picoqemu(&["run", "--backend", backend, "--raw", "--screen", "none", &seed]), "none");
    assert_eq!(none, "");
    outputs
}

#[test]
fn hello_on_the_interpreter() {
    check_backend("interp");
}

#[test]
fn hello_on_kvm_and_both_backends_print_the_same() {
    if !kvm_usable("hello_on_kvm_and_both_backends_print_the_same") {
        return;
    }
    let kvm = check_backend("kvm");
    let interp = check_backend("interp");
    assert_eq!(kvm, interp);
}

#[test]
fn default_command_prints_the_hello_screen() {
    let out = picoqemu(&[]);
    let stdout = assert_ok(&out, "picoqemu with no arguments");
    assert_eq!(stdout, expected_text());
    // auto: at most one line on stderr (the fallback notice), nothing else.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() <= 1, "{stderr}");
    if picoqemu_kvm::KvmBackend::probe().is_err() {
        assert!(stderr.starts_with("picoqemu: KVM unavailable ("), "{stderr}");
        assert!(stderr.contains("using the interpreter"), "{stderr}");
    } else {
        assert!(stderr.is_empty(), "{stderr}");
    }
}

#[test]
fn regs_prints_the_final_state() {
    let out = picoqemu(&["--backend", "interp", "--regs"]);
    let stdout = assert_ok(&out, "--regs");
    assert!(stdout.starts_with(&expected_text()), "{stdout}");
    assert!(stdout.contains("CS:IP=0000:003a"), "{stdout}");
    assert!(stdout.contains("ES=b800"), "{stdout}");
}

#[test]
fn tiny_budget_stops_with_status_4() {
    let out = picoqemu(&["--backend", "interp", "--max-instructions", "10"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.starts_with("picoqemu: interp backend: instruction budget exhausted"), "{stderr}");
    assert!(stderr.contains("EIP="), "register dump missing: {stderr}");
}
