//! Data watchpoints (`Backend::set_watchpoints`) on both CPUs: the same watchpoint stops the
//! interpreter (every compiled-tier mode) and KVM at the same CS:IP, after the accessing
//! instruction (a REP: after the iteration, IP on the REP), for writes (plain stores, PUSH, REP
//! STOSB), reads and read/write watches, and a
//! watch on untouched bytes lets the guest run to its end. KVM skips (printed reason) without
//! /dev/kvm, or fails under `PICOQEMU_REQUIRE_KVM=1`.
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use picoqemu::guests;
use picoqemu_core::{
    load_image, Backend, ImageKind, IoBus, Machine, MachineConfig, RunLimits, StopReason, WatchKind,
    Watchpoint,
};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::KvmBackend;

mod common;
use common::kvm_usable;

const LIMITS: RunLimits =
    RunLimits { max_instructions: None, timeout: Some(std::time::Duration::from_secs(60)) };

/// The guest: a hot loop (compiled by the JIT) that reads and writes 0x700, then a store to
/// 0x600, a PUSH to 0x7BFE, a read of 0x610, a REP STOSB over 0x800-0x80F, then debug exit 7.
/// Returns the image and the IP after each interesting instruction.
fn guest() -> (Vec<u8>, [u32; 5]) {
    let mut a = CodeAssembler::new(16).unwrap();
    let mut after =
        [a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label()];
    let mut top = a.create_label();
    a.mov(cx, 200u32).unwrap();
    a.set_label(&mut top).unwrap();
    a.add(word_ptr(0x700), 1u32).unwrap();
    a.dec(cx).unwrap();
    a.jnz(top).unwrap();
    a.set_label(&mut after[0]).unwrap();
    a.mov(word_ptr(0x600), 0x1234u32).unwrap();
    a.set_label(&mut after[1]).unwrap();
    a.push(ax).unwrap();
    a.set_label(&mut after[2]).unwrap();
    a.mov(bx, word_ptr(0x610)).unwrap();
    a.set_label(&mut after[3]).unwrap();
    a.mov(di, 0x800u32).unwrap();
    a.mov(cx, 16u32).unwrap();
    a.rep().stosb().unwrap();
    a.set_label(&mut after[4]).unwrap();
    a.mov(al, 7u32).unwrap();
    a.out(u32::from(guests::DEBUG_EXIT_PORT), al).unwrap();
    a.hlt().unwrap();
    let r = a
        .assemble_options(u64::from(guests::BOOT_ORIGIN), BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .unwrap();
    let ips = after.map(|l| r.label_ip(&l).unwrap() as u32);
    (guests::boot_sector(r.inner.code_buffer.as_slice()).unwrap(), ips)
}

/// Runs the guest on the backend `make` builds for its machine with `watches` set, resuming
/// after each watchpoint stop, and returns the stops (at most `max`).
fn run_guest(
    make: impl FnOnce(&Machine) -> Box<dyn Backend>,
    watches: &[Watchpoint],
    max: usize,
) -> Vec<StopReason> {
    let (image, _) = guest();
    let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
    let start = load_image(&mut m, &image, ImageKind::Boot).unwrap();
    let mut backend = make(&m);
    backend.set_state(&start).unwrap();
    backend.set_watchpoints(watches).unwrap();
    let mut stops = Vec::new();
    while stops.len() < max {
        let stop = backend.run(&mut m, LIMITS).unwrap();
        let done = !matches!(stop, StopReason::Watchpoint { .. });
        stops.push(stop);
        if done {
            break;
        }
    }
    stops
}

fn interp(jit: JitMode) -> impl FnOnce(&Machine) -> Box<dyn Backend> {
    move |_| Box::new(InterpBackend::new().with_jit(jit))
}

fn w(linear: u32, len: u32, kind: WatchKind) -> Watchpoint {
    Watchpoint { linear, len, kind }
}

fn wp(ip: u32, addr: u32, kind: WatchKind) -> StopReason {
    StopReason::Watchpoint { cs: 0, ip, addr, kind }
}

/// The expected stops for each watch set.
fn cases() -> Vec<(Vec<Watchpoint>, Vec<StopReason>)> {
    let (_, ip) = guest();
    vec![
        (
            vec![w(0x601, 1, WatchKind::Write)],
            vec![wp(ip[1], 0x601, WatchKind::Write), StopReason::DebugExit(7)],
        ),
        (
            vec![w(0x7BFE, 2, WatchKind::Write)],
            vec![wp(ip[2], 0x7BFE, WatchKind::Write), StopReason::DebugExit(7)],
        ),
        (
            vec![w(0x610, 2, WatchKind::Read), w(0x600, 2, WatchKind::Read)],
            vec![wp(ip[3], 0x610, WatchKind::Read), StopReason::DebugExit(7)],
        ),
        // A REP string instruction stops after the iteration, IP still on the REP (2 bytes).
        (
            vec![w(0x80A, 1, WatchKind::Access)],
            vec![wp(ip[4] - 2, 0x80A, WatchKind::Access), StopReason::DebugExit(7)],
        ),
        (vec![w(0x900, 4, WatchKind::Access)], vec![StopReason::DebugExit(7)]),
    ]
}

#[test]
fn interpreter_stops_after_the_access_in_every_tier() {
    for jit in [JitMode::Off, JitMode::Hot, JitMode::Eager] {
        for (watches, expected) in cases() {
            assert_eq!(run_guest(interp(jit), &watches, 40), expected, "{jit:?} {watches:?}");
        }
    }
}

#[test]
fn interpreter_reports_every_write_in_a_compiled_loop() {
    // The loop's `add [0x700], 1` writes 200 times: 200 stops, then the debug exit.
    let stops = run_guest(interp(JitMode::Eager), &[w(0x700, 2, WatchKind::Write)], 300);
    assert_eq!(stops.len(), 201, "{:?}", &stops[..3]);
    assert_eq!(stops.last(), Some(&StopReason::DebugExit(7)));
    assert!(stops[..200].iter().all(|s| matches!(s, StopReason::Watchpoint { addr: 0x700, .. })));
}

#[test]
fn kvm_stops_where_the_interpreter_does() {
    if !kvm_usable("kvm_stops_where_the_interpreter_does") {
        return;
    }
    for (watches, expected) in cases() {
        let on_kvm = run_guest(|m| Box::new(KvmBackend::new(m).unwrap()), &watches, 40);
        assert_eq!(on_kvm, expected, "kvm {watches:?}");
    }
}
