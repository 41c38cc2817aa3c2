//! Port I/O and MMIO on KVM: a COM1 polling guest with the debug exit, string I/O widths and
//! counts, coalesced-PIO ordering, and the MMIO console through a hole in the memslots (with
//! and without its lazily registered coalesced zone).
mod common;

use std::time::Duration;

use iced_x86::code_asm::{al, ax, byte_ptr, cx, di, dx, es, si, word_ptr, CodeAssembler};
use picoqemu_core::devices::{MmioConsole, Sink};
use picoqemu_core::{Backend, Gpr, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_kvm::{KvmBackend, KvmOptions, StepEvent};

const MSG_ADDR: u64 = 0x8000;

/// Programs COM1 (divisor 1 through DLAB, 8N1), prints the NUL-terminated string at 0x8000
/// with LSR polling, then writes 0x21 to the debug-exit port.
fn serial_guest() -> Vec<u8> {
    common::assemble(0x7C00, |a| {
        let (mut next, mut wait, mut done) = (a.create_label(), a.create_label(), a.create_label());
        let out = |a: &mut CodeAssembler, port: i32, v: i32| {
            a.mov(dx, port).unwrap();
            a.mov(al, v).unwrap();
            a.out(dx, al).unwrap();
        };
        out(a, 0x3FB, 0x80); // LCR: DLAB on
        out(a, 0x3F8, 0x01); // DLL = 1 (coalesced: must still land in the divisor)
        out(a, 0x3F9, 0x00); // DLM = 0
        out(a, 0x3FB, 0x03); // LCR: 8N1, DLAB off
        a.mov(si, MSG_ADDR as i32).unwrap();
        a.set_label(&mut next).unwrap();
        a.lodsb().unwrap();
        a.test(al, al).unwrap();
        a.jz(done).unwrap();
        a.mov(ah_reg(), al).unwrap();
        a.mov(dx, 0x3FD).unwrap();
        a.set_label(&mut wait).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x20).unwrap();
        a.jz(wait).unwrap();
        a.mov(al, ah_reg()).unwrap();
        a.mov(dx, 0x3F8).unwrap();
        a.out(dx, al).unwrap();
        a.jmp(next).unwrap();
        a.set_label(&mut done).unwrap();
        a.mov(al, 0x21).unwrap();
        a.out(0xF4, al).unwrap();
        a.hlt().unwrap();
    })
}

fn ah_reg() -> iced_x86::code_asm::AsmRegister8 {
    iced_x86::code_asm::ah
}

fn run_serial(options: KvmOptions) -> (Machine, KvmBackend, StopReason) {
    let mut m = common::machine();
    m.ram_mut().write(0x7C00, &serial_guest()).unwrap();
    m.ram_mut().write(MSG_ADDR, b"Hello, serial!\n\0").unwrap();
    let mut b = KvmBackend::with_options(&m, options).unwrap();
    let mut s = picoqemu_core::CpuState { eip: 0x7C00, ..Default::default() };
    s.set_reg(Gpr::Esp, 0x7000);
    b.set_state(&s).unwrap();
    let r = b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run");
    (m, b, r)
}

#[test]
fn com1_polling_guest_and_debug_exit() {
    if !common::kvm_available("com1_polling_guest_and_debug_exit") {
        return;
    }
    for coalesced_pio in [true, false] {
        let (mut m, mut b, r) = run_serial(KvmOptions { coalesced_pio, ..KvmOptions::default() });
        assert_eq!(r, StopReason::DebugExit(0x21), "coalesced={coalesced_pio}");
        assert_eq!(r.exit_status(), 0x43);
        assert_eq!(m.bus().uart.out.captured(), b"Hello, serial!\n");
        assert_eq!(m.bus().uart.divisor(), 1, "the DLL write reached the divisor latch");
        // The state is the one after the OUT to 0xF4 (2 bytes), before the HLT.
        let st = b.state().unwrap();
        assert_eq!(m.ram_mut().bytes()[st.eip as usize], 0xF4, "IP is on the HLT after `out 0xf4, al`");
        let stats = b.kvm_stats();
        if coalesced_pio && b.coalesced_pio() {
            // 16 writes to 0x3F8: the first (DLL) exits and registers the zone, the rest are
            // coalesced (unless the ring filled up, which 15 entries cannot do).
            assert_eq!(stats.coalesced_writes, 15, "{stats:?}");
            assert_eq!(b.coalesced_zones(), vec![0x3F8], "0xE9 was never written");
        } else {
            assert_eq!(stats.coalesced_writes, 0);
            assert!(b.coalesced_zones().is_empty());
        }
    }
}

#[test]
fn string_io_uses_size_and_count_from_kvm_run() {
    if !common::kvm_available("string_io_uses_size_and_count_from_kvm_run") {
        return;
    }
    let code = common::assemble(0x7C00, |a| {
        a.cld().unwrap();
        // rep outsw: three words from 0x8000 to port 0x80 (POST; 0x81 is unclaimed)
        a.mov(si, 0x8000).unwrap();
        a.mov(cx, 3).unwrap();
        a.mov(dx, 0x80).unwrap();
        a.rep().outsw().unwrap();
        // rep outsb: "abc" from 0x8010 to the debug console
        a.mov(si, 0x8010).unwrap();
        a.mov(cx, 3).unwrap();
        a.mov(dx, 0xE9).unwrap();
        a.rep().outsb().unwrap();
        // rep insb: four bytes from port 0xE9 (reads as 0xE9) to 0x9000
        a.mov(di, 0x9000).unwrap();
        a.mov(cx, 4).unwrap();
        a.rep().insb().unwrap();
        // rep insw: two words from port 0x80 (POST byte, then 0x81 unclaimed = 0xFF)
        a.mov(di, 0x9010).unwrap();
        a.mov(cx, 2).unwrap();
        a.mov(dx, 0x80).unwrap();
        a.rep().insw().unwrap();
        a.hlt().unwrap();
    });
    let (mut m, mut b, _) = common::setup(&code);
    m.ram_mut().write(0x8000, &[0x11, 0xA1, 0x22, 0xA2, 0x33, 0xA3]).unwrap();
    m.ram_mut().write(0x8010, b"abc").unwrap();
    let r = b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run");
    assert_eq!(r, StopReason::Halted);
    assert_eq!(m.bus().debugcon.out.captured(), b"abc");
    assert_eq!(m.bus().post_code, 0x33, "the last word's low byte went to port 0x80");
    let io = m.bus().stats;
    // 3 word writes + 3 byte writes; 4 byte reads + 2 word reads: one bus access per element.
    assert_eq!((io.pio_writes, io.pio_reads), (6, 6), "{io:?}");
    // Each word write's high byte (0x81) and each word read's high byte are unclaimed.
    assert_eq!((io.unclaimed_writes, io.unclaimed_reads), (3, 2), "{io:?}");
    assert_eq!(&m.ram_mut().bytes()[0x9000..0x9004], &[0xE9; 4]);
    assert_eq!(&m.ram_mut().bytes()[0x9010..0x9014], &[0x33, 0xFF, 0x33, 0xFF]);
    assert_eq!(b.state().unwrap().reg(Gpr::Ecx) & 0xFFFF, 0);
}

/// Interleaves the debug console and COM1 with a UART loopback read in between.
fn interleaving_guest() -> Vec<u8> {
    common::assemble(0x7C00, |a| {
        for (i, ch) in b"ABCDEF".iter().enumerate() {
            a.mov(al, i32::from(*ch)).unwrap();
            a.out(if i % 2 == 0 { 0xE9 } else { 0x80 }, al).unwrap();
            a.mov(dx, 0x3F8).unwrap();
            a.mov(al, i32::from(b'1' + i as u8)).unwrap();
            a.out(dx, al).unwrap();
        }
        // Loopback: a THR write must be in RBR when the guest reads it back.
        a.mov(dx, 0x3FC).unwrap();
        a.mov(al, 0x10).unwrap();
        a.out(dx, al).unwrap();
        a.mov(dx, 0x3F8).unwrap();
        a.mov(al, 0x5A).unwrap();
        a.out(dx, al).unwrap();
        a.in_(al, dx).unwrap();
        a.mov(byte_ptr(0x9000), al).unwrap();
        a.hlt().unwrap();
    })
}

#[test]
fn coalesced_pio_keeps_output_order() {
    if !common::kvm_available("coalesced_pio_keeps_output_order") {
        return;
    }
    let code = interleaving_guest();
    // Single-stepped with coalescing on: the ring is drained after every step, so the order
    // in which the two captures grow is the guest's program order.
    let (mut m, mut b, _) = common::setup(&code);
    let mut order = Vec::new();
    let (mut e9, mut com) = (0, 0);
    for _ in 0..200 {
        let ev = b.step(&mut m, None);
        let (ne9, ncom) = (m.bus().debugcon.out.captured().len(), m.bus().uart.out.captured().len());
        if ne9 > e9 {
            order.push(m.bus().debugcon.out.captured()[e9]);
        }
        if ncom > com {
            order.push(m.bus().uart.out.captured()[com]);
        }
        (e9, com) = (ne9, ncom);
        if ev == StepEvent::Halted {
            break;
        }
        assert!(!matches!(ev, StepEvent::Stopped(_)), "{ev:?}");
    }
    assert_eq!(order, b"A1B2C3D4E5F6".iter().copied().filter(|c| !b"BDF".contains(c)).collect::<Vec<_>>());
    assert_eq!(m.ram_mut().bytes()[0x9000], 0x5A, "loopback read sees the coalesced write");
    // Free-running, with and without coalescing: identical streams and loopback result.
    for coalesced_pio in [true, false] {
        let mut m = common::machine();
        m.ram_mut().write(0x7C00, &code).unwrap();
        let mut b =
            KvmBackend::with_options(&m, KvmOptions { coalesced_pio, ..KvmOptions::default() }).unwrap();
        let s = picoqemu_core::CpuState { eip: 0x7C00, ..Default::default() };
        b.set_state(&s).unwrap();
        assert_eq!(
            b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"),
            StopReason::Halted
        );
        assert_eq!(m.bus().debugcon.out.captured(), b"ACE");
        assert_eq!(m.bus().uart.out.captured(), b"123456");
        assert_eq!(m.bus().post_code, b'F');
        assert_eq!(m.ram_mut().bytes()[0x9000], 0x5A);
    }
}

#[test]
fn zones_are_registered_only_for_ports_the_guest_writes() {
    if !common::kvm_available("zones_are_registered_only_for_ports_the_guest_writes") {
        return;
    }
    // Reads of 0xE9/0x3F8, a wider write to 0x3F8's pair and other ports register nothing.
    let quiet = common::assemble(0x7C00, |a| {
        a.mov(dx, 0x3F8).unwrap();
        a.in_(al, dx).unwrap();
        a.in_(al, 0xE9).unwrap();
        a.out(0x80, al).unwrap();
        a.mov(byte_ptr(0x9000), al).unwrap();
        a.hlt().unwrap();
    });
    let (mut m, mut b, _) = common::setup(&quiet);
    assert!(b.coalesced_pio(), "coalescing is on by default (and the host supports it)");
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"), StopReason::Halted);
    assert!(b.coalesced_zones().is_empty(), "{:?}", b.coalesced_zones());
    assert_eq!(b.kvm_stats().coalesced_writes, 0);
    assert_eq!(m.ram_mut().bytes()[0x9000], 0xE9, "the 0xE9 read was served by the bus");

    // Three writes to 0xE9: the first exits and registers its zone, the next two are
    // coalesced; the output is complete and in order. The zone survives `reset`.
    let noisy = common::assemble(0x7C00, |a| {
        for ch in b"xyz" {
            a.mov(al, i32::from(*ch)).unwrap();
            a.out(0xE9, al).unwrap();
        }
        a.hlt().unwrap();
    });
    let (mut m, mut b, start) = common::setup(&noisy);
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"), StopReason::Halted);
    assert_eq!(m.bus().debugcon.out.captured(), b"xyz");
    let s = b.kvm_stats();
    assert_eq!((s.pio_exits, s.coalesced_writes), (1, 2), "{s:?}");
    assert_eq!(b.coalesced_zones(), vec![0xE9]);
    b.reset(&mut m).unwrap();
    b.set_state(&start).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"), StopReason::Halted);
    assert_eq!(m.bus().debugcon.out.captured(), b"xyzxyz");
    let s = b.kvm_stats();
    assert_eq!((s.pio_exits, s.coalesced_writes), (1, 5), "the second run took no port exit: {s:?}");

    // With the option off nothing is ever registered.
    let mut m = common::machine();
    m.ram_mut().write(0x7C00, &noisy).unwrap();
    let mut b =
        KvmBackend::with_options(&m, KvmOptions { coalesced_pio: false, ..KvmOptions::default() }).unwrap();
    b.set_state(&start).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"), StopReason::Halted);
    assert_eq!(m.bus().debugcon.out.captured(), b"xyz");
    assert!(b.coalesced_zones().is_empty());
    assert_eq!(b.kvm_stats().pio_exits, 3);
}

#[test]
fn mmio_console_through_a_memslot_hole() {
    if !common::kvm_available("mmio_console_through_a_memslot_hole") {
        return;
    }
    let mut bus = IoBus::capturing();
    bus.mmio_console = Some(MmioConsole::new(0xD0000, Sink::capture()));
    let mut m = Machine::new(MachineConfig::default(), bus).unwrap();
    let code = common::assemble(0x7C00, |a| {
        a.mov(ax, 0xD000).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(byte_ptr(0).es(), i32::from(b'O')).unwrap();
        a.mov(byte_ptr(0).es(), i32::from(b'K')).unwrap();
        a.mov(ax, word_ptr(4).es()).unwrap(); // the console's count: 2
        a.mov(word_ptr(8).es(), 0x1234).unwrap(); // ignored by the device
        a.mov(byte_ptr(0x1000).es(), 0x77).unwrap(); // 0xD1000: RAM again
        a.mov(byte_ptr(0xFFFF).es(), 0x66).unwrap(); // 0xDFFFF (ES:FFFF): RAM
        a.hlt().unwrap();
    });
    m.ram_mut().write(0x7C00, &code).unwrap();
    for coalesced_mmio in [false, true] {
        m.reset();
        m.ram_mut().write(0x7C00, &code).unwrap();
        let options = KvmOptions { coalesced_mmio, ..KvmOptions::default() };
        let mut b = KvmBackend::with_options(&m, options).unwrap();
        let s = picoqemu_core::CpuState { eip: 0x7C00, ..Default::default() };
        b.set_state(&s).unwrap();
        assert_eq!(
            b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"),
            StopReason::Halted
        );
        let console = m.bus().mmio_console.as_ref().unwrap();
        assert_eq!(console.out.captured(), b"OK");
        assert_eq!(b.state().unwrap().reg(Gpr::Eax) & 0xFFFF, 2, "the count read saw both writes");
        assert_eq!(m.ram_mut().bytes()[0xD1000], 0x77);
        assert_eq!(m.ram_mut().bytes()[0xDFFFF], 0x66);
        assert_eq!(m.ram_mut().bytes()[0xD0000], 0, "the hole is not RAM");
        let st = b.kvm_stats();
        if coalesced_mmio && b.coalesced_mmio() {
            // 'O' exits and registers the zone, 'K' goes to the ring; the read and the word
            // store at offset 8 (outside the output register) still exit.
            assert_eq!((st.mmio_exits, st.coalesced_writes), (3, 1), "{st:?}");
            assert_eq!(b.coalesced_mmio_zone(), Some((0xD0000, 4)));
        } else {
            assert_eq!((st.mmio_exits, st.coalesced_writes), (4, 0), "{st:?}");
            assert_eq!(b.coalesced_mmio_zone(), None);
        }
    }
}

#[test]
fn mmio_zone_is_registered_only_after_a_write_to_the_output_register() {
    if !common::kvm_available("mmio_zone_is_registered_only_after_a_write_to_the_output_register") {
        return;
    }
    let mut bus = IoBus::capturing();
    bus.mmio_console = Some(MmioConsole::new(0xD0000, Sink::capture()));
    let mut m = Machine::new(MachineConfig::default(), bus).unwrap();
    // Reads of the console and writes outside its output register register nothing.
    let quiet = common::assemble(0x7C00, |a| {
        a.mov(ax, 0xD000).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(al, byte_ptr(0).es()).unwrap();
        a.mov(ax, word_ptr(4).es()).unwrap();
        a.mov(byte_ptr(4).es(), 1).unwrap();
        a.mov(word_ptr(3).es(), 0x4142).unwrap(); // straddles the register's end
        a.hlt().unwrap();
    });
    m.ram_mut().write(0x7C00, &quiet).unwrap();
    let mut b = KvmBackend::new(&m).unwrap();
    assert!(b.coalesced_mmio(), "MMIO coalescing is on by default for a machine with the console");
    b.set_state(&picoqemu_core::CpuState { eip: 0x7C00, ..Default::default() }).unwrap();
    assert_eq!(b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"), StopReason::Halted);
    assert_eq!(b.coalesced_mmio_zone(), None);
    assert_eq!((b.kvm_stats().mmio_exits, b.kvm_stats().coalesced_writes), (4, 0));
    assert!(m.bus().mmio_console.as_ref().unwrap().out.captured().is_empty());

    // A machine without the console never coalesces MMIO.
    let m = common::machine();
    assert!(!KvmBackend::new(&m).unwrap().coalesced_mmio());
}

#[test]
fn a_backend_refuses_another_machine() {
    if !common::kvm_available("a_backend_refuses_another_machine") {
        return;
    }
    let m = common::machine();
    let mut other = common::machine();
    let mut b = KvmBackend::new(&m).unwrap();
    match b.run(&mut other, RunLimits::UNBOUNDED) {
        Err(e) => assert!(e.to_string().contains("created for another machine"), "{e}"),
        Ok(other) => panic!("a run on another machine ended with {other}"),
    }
    // A machine built after the VM's own is dropped is refused too, wherever its RAM lies:
    // the VM keeps the dropped machine's mapping, so the check is by identity.
    drop(m);
    let mut recycled = common::machine();
    match b.run(&mut recycled, RunLimits::UNBOUNDED) {
        Err(e) => assert!(e.to_string().contains("created for another machine"), "{e}"),
        Ok(other) => panic!("a run on a recycled machine ended with {other}"),
    }
}

#[test]
fn a20_wrap_aliases_the_high_memory_area() {
    if !common::kvm_available("a20_wrap_aliases_the_high_memory_area") {
        return;
    }
    for a20_wrap in [false, true] {
        let mut m =
            Machine::new(MachineConfig { a20_wrap, ..MachineConfig::default() }, IoBus::capturing()).unwrap();
        // mov ax, 0xFFFF ; mov ds, ax ; mov byte [0x10], 0x5A ; hlt  -> physical 0x100000
        let code = common::assemble(0x7C00, |a| {
            a.mov(ax, 0xFFFF).unwrap();
            a.mov(iced_x86::code_asm::ds, ax).unwrap();
            a.mov(byte_ptr(0x10), 0x5A).unwrap();
            a.hlt().unwrap();
        });
        m.ram_mut().write(0x7C00, &code).unwrap();
        let mut b = KvmBackend::new(&m).unwrap();
        b.set_state(&picoqemu_core::CpuState { eip: 0x7C00, ..Default::default() }).unwrap();
        assert_eq!(
            b.run(&mut m, RunLimits::timeout(Duration::from_secs(10))).expect("run"),
            StopReason::Halted
        );
        let (low, high) = (m.ram_mut().bytes()[0], m.ram_mut().bytes()[0x10_0000]);
        if a20_wrap {
            assert_eq!((low, high), (0x5A, 0), "FFFF:0010 wrapped to 0");
        } else {
            assert_eq!((low, high), (0, 0x5A), "FFFF:0010 is the HMA");
        }
    }
}
