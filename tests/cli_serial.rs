//! The serial boot-sector guest through the `picoqemu` binary on both backends: COM1 text on
//! stdout, the port 0xE9 line on stderr, and exit status 33 from the debug-exit port. Also the
//! MMIO console (`--mmio-console`) and the daa guest's exit status.
use std::path::PathBuf;

use picoqemu::guests::{self, SERIAL_HELLO_DEBUG_TEXT, SERIAL_HELLO_EXIT_CODE, SERIAL_HELLO_TEXT};

mod common;
use common::{kvm_usable, picoqemu};

/// Writes the serial guest to a file, as a user would run it (one file per backend: the tests
/// run in parallel).
fn serial_image_file(backend: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_serial_hello_{backend}.img"));
    std::fs::write(&path, guests::serial_hello().expect("assembling")).expect("writing the image");
    path.to_str().expect("UTF-8 path").to_string()
}

fn check_serial(backend: &str) {
    let file = serial_image_file(backend);
    let expected_status = i32::from(SERIAL_HELLO_EXIT_CODE) << 1 | 1;
    assert_eq!(expected_status, 33);
    for args in [
        vec!["run", "--backend", backend, &file],
        vec!["run", "--backend", backend, "--builtin", "serial-hello"],
    ] {
        let out = picoqemu(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected_status), "{args:?}: stderr: {stderr}");
        // The guest never touches the text buffer, so --screen auto prints nothing more.
        assert_eq!(stdout, SERIAL_HELLO_TEXT, "{args:?}");
        assert_eq!(stderr, SERIAL_HELLO_DEBUG_TEXT, "{args:?}");
    }
}

#[test]
fn serial_guest_on_the_interpreter() {
    check_serial("interp");
}

#[test]
fn serial_guest_on_kvm() {
    if kvm_usable("serial_guest_on_kvm") {
        check_serial("kvm");
    }
}

fn check_mmio_console(backend: &str) {
    let out =
        picoqemu(&["run", "--backend", backend, "--builtin", "mmio-hello", "--mmio-console", "0xd0000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello from the MMIO console!\n");
    // Without the console the stores go nowhere (unclaimed MMIO) and the guest still halts.
    let out = picoqemu(&["run", "--backend", backend, "--builtin", "mmio-hello"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Hello"), "printed without a console");
}

#[test]
fn mmio_console_on_the_interpreter() {
    check_mmio_console("interp");
}

#[test]
fn mmio_console_on_kvm() {
    if kvm_usable("mmio_console_on_kvm") {
        check_mmio_console("kvm");
    }
}

#[test]
fn daa_guest_exits_with_the_bcd_sum_on_the_interpreter() {
    let out = picoqemu(&["run", "--backend", "interp", "--builtin", "daa"]);
    let expected = i32::from(guests::DAA_RESULT) << 1 | 1;
    assert_eq!(out.status.code(), Some(expected), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}
