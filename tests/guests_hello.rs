//! The article's program at library level: the built-in copy is byte-identical to the nasm
//! build in `../shared/guests/seed_hello.bin`, and both copies produce the exact expected
//! screen (all 25 rows, all 2000 attributes 0x0A) on the interpreter and on KVM, with the two
//! backends' screens and registers equal.

use picoqemu_core::devices::vga::{COLS, ROWS, SCREEN_BYTES, TEXT_BASE};
use picoqemu_core::{
    flags, Backend, CpuState, Gpr, ImageKind, IoBus, Machine, MachineConfig, RunLimits, SegReg, StopReason,
};
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::KvmBackend;

mod common;
use common::kvm_usable;

/// The screen the article shows, typed in independently of the guest's source.
const EXPECTED_ROWS: [&str; 5] = [
    r" _   _      _ _        __        __         _     _ _",
    r"| | | | ___| | | ___   \ \      / /__  _ __| | __| | |",
    r"| |_| |/ _ \ | |/ _ \   \ \ /\ / / _ \| '__| |/ _` | |",
    r"|  _  |  __/ | | (_) |   \ V  V / (_) | |  | | (_| |_|",
    r"|_| |_|\___|_|_|\___/     \_/\_/ \___/|_|  |_|\__,_(_)",
];

/// The article's nasm build from `../shared`, or `None` (the caller skips that part, or the
/// test fails under `PICOQEMU_REQUIRE_SHARED=1`).
fn seed_image() -> Option<Vec<u8>> {
    let path = picoqemu_verify::shared::require("guests/seed_hello.bin")?;
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
}

/// Runs `image` in the raw layout on `backend` ("interp" or "kvm") until it stops.
fn run(backend: &str, image: &[u8]) -> (Machine, StopReason, CpuState) {
    let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
    let start = picoqemu_core::load_image(&mut machine, image, ImageKind::Raw).expect("load");
    let mut cpu: Box<dyn Backend> = match backend {
        "interp" => Box::new(InterpBackend::new()),
        _ => Box::new(KvmBackend::new(&machine).expect("KVM backend")),
    };
    cpu.set_state(&start).expect("set_state");
    let stop = cpu.run(&mut machine, RunLimits::instructions(1_000_000)).expect("run");
    let state = cpu.state().expect("state");
    (machine, stop, state)
}

/// Checks every cell of the screen and the final state; returns the screen bytes.
fn check_hello(backend: &str, image: &[u8]) -> (Vec<u8>, CpuState) {
    let (machine, stop, state) = run(backend, image);
    assert_eq!(stop, StopReason::Halted, "{backend}: {stop}\n{state}");
    let ram = machine.ram().to_vec();
    let cells = machine.bus().vga.cells(&ram);
    assert_eq!(cells.len(), COLS * ROWS);
    for (i, cell) in cells.iter().enumerate() {
        let (row, col) = (i / COLS, i % COLS);
        assert_eq!(cell.attr, 0x0A, "{backend}: attribute at row {row} column {col}");
        let expected = EXPECTED_ROWS.get(row).and_then(|r| r.as_bytes().get(col)).copied();
        match expected {
            Some(ch) => assert_eq!(cell.ch, ch, "{backend}: character at row {row} column {col}"),
            // Past the banner: blanks in rows 0-4, NULs (cleared cells) below.
            None if row < 5 => assert_eq!(cell.ch, b' ', "{backend}: blank at row {row} column {col}"),
            None => assert_eq!(cell.ch, 0, "{backend}: cleared cell at row {row} column {col}"),
        }
    }
    let mut text = EXPECTED_ROWS.join("\n");
    text.push('\n');
    assert_eq!(machine.screen_text(), text, "{backend}: rendered screen");
    assert!(machine.screen_written());
    // hlt is at 0x39; the CPU stops after it.
    assert_eq!((state.cs(), state.eip), (0, 0x3A), "{backend}: CS:IP after hlt\n{state}");
    assert_eq!(state.seg(SegReg::Es).selector, 0xB800);
    assert_eq!(state.reg(Gpr::Esi) & 0xFFFF, 400, "{backend}: SI after 400 characters");
    assert_eq!(state.reg(Gpr::Edi) & 0xFFFF, 800, "{backend}: DI after 400 characters");
    assert_eq!(state.reg(Gpr::Ecx) & 0xFF, 0, "{backend}: CL holds the terminating NUL");
    (ram[TEXT_BASE..TEXT_BASE + SCREEN_BYTES].to_vec(), state)
}

#[test]
fn hello_matches_the_nasm_build() {
    let Some(seed) = seed_image() else { return };
    let ours = picoqemu::guests::hello().unwrap();
    assert_eq!(ours.len(), 512);
    for (i, (a, b)) in ours.iter().zip(seed.iter()).enumerate() {
        assert_eq!(a, b, "first difference at byte {i:#x}: ours {a:#04x}, nasm {b:#04x}");
    }
    assert_eq!(ours, seed);
}

#[test]
fn hello_on_the_interpreter() {
    if let Some(seed) = seed_image() {
        check_hello("interp", &seed);
    }
    check_hello("interp", &picoqemu::guests::hello().unwrap());
}

#[test]
fn hello_on_kvm() {
    if !kvm_usable("hello_on_kvm") {
        return;
    }
    if let Some(seed) = seed_image() {
        check_hello("kvm", &seed);
    }
    check_hello("kvm", &picoqemu::guests::hello().unwrap());
}

#[test]
fn hello_screens_and_registers_agree_between_backends() {
    if !kvm_usable("hello_screens_and_registers_agree_between_backends") {
        return;
    }
    // Our build when the nasm one is absent (they are byte-identical when both exist).
    let image = seed_image().unwrap_or_else(|| picoqemu::guests::hello().unwrap());
    let (screen_i, state_i) = check_hello("interp", &image);
    let (screen_k, state_k) = check_hello("kvm", &image);
    assert!(screen_i == screen_k, "the two backends' text buffers differ");
    assert_eq!(state_i.gpr, state_k.gpr, "general registers differ");
    assert_eq!(state_i.eip, state_k.eip);
    assert_eq!(state_i.eflags & flags::STATUS, state_k.eflags & flags::STATUS, "status flags differ");
    for s in SegReg::ALL {
        assert_eq!(state_i.seg(s).selector, state_k.seg(s).selector, "{} differs", s.name());
    }
}
