//! KVM's coalesced MMIO (and PIO) must not change what a guest or a user can observe: the
//! interleaved output of the MMIO console, port 0xE9 and COM1 is the same with coalescing on
//! and off and the same as on the interpreter, in each device's stream, in the global order
//! seen step by step, and in the whole process's stdout (COM1 and the MMIO console share it,
//! line by line); a read of the console's count after N coalesced writes sees N. The KVM
//! statistics must show writes that went through the ring, so these tests fail if coalescing
//! silently stops. KVM tests skip with a printed reason when /dev/kvm is unusable, unless
//! `PICOQEMU_REQUIRE_KVM=1`.
use std::path::PathBuf;
use std::time::Duration;

use iced_x86::code_asm::{al, ax, bl, bx, byte_ptr, cx, di, dword_ptr, dx, eax, es, word_ptr, CodeAssembler};
use picoqemu::guests::{self, BOOT_ORIGIN, COM1, DEBUGCON_PORT};
use picoqemu_core::devices::{MmioConsole, Sink};
use picoqemu_core::{
    load_image, Backend, CpuState, Gpr, ImageKind, IoBus, Machine, MachineConfig, RunLimits, StopReason,
};
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::{KvmBackend, KvmOptions, KvmStats};

mod common;
use common::{kvm_usable, picoqemu};

/// Where the MMIO console is mapped.
const CONSOLE: u64 = guests::DEFAULT_MMIO_CONSOLE_BASE as u64;
/// Rounds of the interleaving guest (one letter per round: 'a'..).
const ROUNDS: u8 = 20;
/// Where the interleaving guest stores the console's count after each round (DS = 0).
const COUNTS: u16 = 0x9000;

/// Assembles 16-bit code at 0x7C00 into a boot sector.
fn boot(build: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("assembler");
    build(&mut a);
    let code = a.assemble(u64::from(BOOT_ORIGIN)).expect("assemble");
    guests::boot_sector(&code).expect("fits a boot sector")
}

/// For each round `c` = 'a' + round: "M c \n" to the MMIO console (byte stores at offset 0),
/// "U c \n" to COM1's THR, "E c \n" to port 0xE9, then a read of the console's count (offset
/// 4) stored as a word at 0x9000 + 2 * round; then `hlt`.
///
/// ```text
///   mov ax, 0xD000 / mov es, ax / xor bx, bx / mov di, 0x9000
/// .round:
///   mov al, 'M' / mov [es:0], al / mov al, 'a' / add al, bl / mov [es:0], al / mov al, 10 / mov [es:0], al
///   mov dx, 0x3F8 / mov al, 'U' / out dx, al / mov al, 'a' / add al, bl / out dx, al / mov al, 10 / out dx, al
///   mov al, 'E' / out 0xE9, al / mov al, 'a' / add al, bl / out 0xE9, al / mov al, 10 / out 0xE9, al
///   mov ax, [es:4] / mov [di], ax / add di, 2
///   inc bx / cmp bx, ROUNDS / jne .round
///   hlt
/// ```
fn interleaving_guest() -> Vec<u8> {
    boot(|a| {
        let mut round = a.create_label();
        a.mov(ax, (CONSOLE >> 4) as u32).unwrap();
        a.mov(es, ax).unwrap();
        a.xor(bx, bx).unwrap();
        a.mov(di, u32::from(COUNTS)).unwrap();
        a.set_label(&mut round).unwrap();
        for (tag, target) in [(b'M', 0), (b'U', 1), (b'E', 2)] {
            if target == 1 {
                a.mov(dx, u32::from(COM1)).unwrap();
            }
            let emit = |a: &mut CodeAssembler| match target {
                0 => a.mov(byte_ptr(0).es(), al).unwrap(),
                1 => a.out(dx, al).unwrap(),
                _ => a.out(i32::from(DEBUGCON_PORT), al).unwrap(),
            };
            a.mov(al, u32::from(tag)).unwrap();
            emit(a);
            a.mov(al, u32::from(b'a')).unwrap();
            a.add(al, bl).unwrap();
            emit(a);
            a.mov(al, 10u32).unwrap();
            emit(a);
        }
        a.mov(ax, word_ptr(4).es()).unwrap();
        a.mov(word_ptr(di), ax).unwrap();
        a.add(di, 2).unwrap();
        a.inc(bx).unwrap();
        a.cmp(bx, u32::from(ROUNDS)).unwrap();
        a.jne(round).unwrap();
        a.hlt().unwrap();
    })
}

/// The text of one device's stream in the interleaving guest.
fn stream(tag: u8) -> Vec<u8> {
    (0..ROUNDS).flat_map(|r| [tag, b'a' + r, b'\n']).collect()
}

/// `n` byte stores to the console's data register, then a word store at offset 0 (printed:
/// its low byte), byte stores to offsets 1..3 (inside the output register, ignored by the
/// device), a read of the count into EAX, and `hlt`.
///
/// ```text
///   mov ax, 0xD000 / mov es, ax / mov cx, n / mov al, '.'
/// .l: mov [es:0], al / loop .l
///   mov word [es:0], 0x2121 / mov byte [es:1], 1 / mov byte [es:2], 2 / mov byte [es:3], 3
///   mov eax, [es:4] / hlt
/// ```
fn count_guest(n: u16) -> Vec<u8> {
    boot(|a| {
        let mut l = a.create_label();
        a.mov(ax, (CONSOLE >> 4) as u32).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(cx, u32::from(n)).unwrap();
        a.mov(al, u32::from(b'.')).unwrap();
        a.set_label(&mut l).unwrap();
        a.mov(byte_ptr(0).es(), al).unwrap();
        a.loop_(l).unwrap();
        a.mov(word_ptr(0).es(), 0x2121u32).unwrap();
        for off in 1..4 {
            a.mov(byte_ptr(off).es(), off as u32).unwrap();
        }
        a.mov(eax, dword_ptr(4).es()).unwrap();
        a.hlt().unwrap();
    })
}

/// The KVM configurations to compare with the interpreter (each coalescing option on/off).
const KVM_OPTIONS: [KvmOptions; 4] = [
    KvmOptions { coalesced_pio: true, coalesced_mmio: true, host_cpuid: false },
    KvmOptions { coalesced_pio: false, coalesced_mmio: true, host_cpuid: false },
    KvmOptions { coalesced_pio: true, coalesced_mmio: false, host_cpuid: false },
    KvmOptions { coalesced_pio: false, coalesced_mmio: false, host_cpuid: false },
];

/// A machine with a capturing bus and the MMIO console, `image` loaded as a boot sector.
fn machine(image: &[u8]) -> (Machine, CpuState) {
    let mut bus = IoBus::capturing();
    bus.mmio_console = Some(MmioConsole::new(CONSOLE, Sink::capture()));
    let mut m = Machine::new(MachineConfig::default(), bus).expect("machine");
    let start = load_image(&mut m, image, ImageKind::Boot).expect("load");
    (m, start)
}

/// What a run produced.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    stop: StopReason,
    mmio: Vec<u8>,
    e9: Vec<u8>,
    com1: Vec<u8>,
    /// The interleaving guest's count words at 0x9000.
    counts: Vec<u16>,
    eax: u32,
}

fn observe(m: &Machine, stop: StopReason, state: &CpuState) -> Observed {
    let ram = m.ram().read_vec(u64::from(COUNTS), 2 * usize::from(ROUNDS)).expect("count words in RAM");
    let counts = ram.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect();
    Observed {
        stop,
        mmio: m.bus().mmio_console.as_ref().expect("console").out.captured().to_vec(),
        e9: m.bus().debugcon.out.captured().to_vec(),
        com1: m.bus().uart.out.captured().to_vec(),
        counts,
        eax: state.reg(Gpr::Eax),
    }
}

/// Runs `image` freely on the interpreter.
fn interp_run(image: &[u8]) -> Observed {
    let (mut m, start) = machine(image);
    let mut b = InterpBackend::new();
    b.set_state(&start).expect("set_state");
    let stop = b.run(&mut m, RunLimits::instructions(10_000_000)).expect("run");
    let st = b.state().expect("state");
    observe(&m, stop, &st)
}

/// Runs `image` freely on KVM with `options`; also returns the KVM counters.
fn kvm_run(image: &[u8], options: KvmOptions) -> (Observed, KvmStats, KvmBackend) {
    let (mut m, start) = machine(image);
    let mut b = KvmBackend::with_options(&m, options).expect("KVM backend");
    b.set_state(&start).expect("set_state");
    let stop = b.run(&mut m, RunLimits::timeout(Duration::from_secs(20))).expect("run");
    let st = b.state().expect("state");
    (observe(&m, stop, &st), b.kvm_stats(), b)
}

#[test]
fn interleaved_output_is_the_same_with_and_without_coalescing_and_on_the_interpreter() {
    let image = interleaving_guest();
    let reference = interp_run(&image);
    assert_eq!(reference.stop, StopReason::Halted);
    assert_eq!(reference.mmio, stream(b'M'));
    assert_eq!(reference.com1, stream(b'U'));
    assert_eq!(reference.e9, stream(b'E'));
    let three_per_round: Vec<u16> = (1..=u16::from(ROUNDS)).map(|r| 3 * r).collect();
    assert_eq!(reference.counts, three_per_round, "each count read sees every earlier MMIO write");
    if !kvm_usable("interleaved_output_is_the_same_with_and_without_coalescing_and_on_the_interpreter") {
        return;
    }
    let per_device = 3 * u64::from(ROUNDS);
    for options in KVM_OPTIONS {
        let (seen, s, b) = kvm_run(&image, options);
        assert_eq!(seen.stop, StopReason::Halted, "{options:?}");
        assert_eq!(Observed { eax: reference.eax, ..seen }, reference, "{options:?}");
        // Every write reached the bus exactly once: by an exit or through the ring (the count
        // reads, one per round, always exit).
        assert_eq!(
            s.coalesced_writes + s.pio_exits + s.mmio_exits,
            3 * per_device + u64::from(ROUNDS),
            "{options:?}: {s:?}"
        );
        // The ring never fills here (each round's count read drains it), so exactly the first
        // write to each coalescible port/register exits and the rest are coalesced.
        let expected = if options.coalesced_pio && b.coalesced_pio() { 2 * (per_device - 1) } else { 0 }
            + if options.coalesced_mmio { per_device - 1 } else { 0 };
        assert_eq!(s.coalesced_writes, expected, "{options:?}: {s:?}");
        if options.coalesced_mmio {
            assert!(b.coalesced_mmio(), "the host supports coalesced MMIO (KVM_CAP_COALESCED_MMIO)");
            assert_eq!(b.coalesced_mmio_zone(), Some((CONSOLE, 4)));
            assert_eq!(
                s.mmio_exits,
                1 + u64::from(ROUNDS),
                "{options:?}: only the first store and the reads exit"
            );
        } else {
            assert_eq!(b.coalesced_mmio_zone(), None);
            assert_eq!(s.mmio_exits, per_device + u64::from(ROUNDS), "{options:?}");
        }
    }
}

#[test]
fn global_order_step_by_step_is_program_order() {
    // Single-stepping drains the ring after every step, so the order in which the three
    // captures grow is the order in which the devices received the bytes.
    let image = interleaving_guest();
    let expected: Vec<(char, u8)> = (0..ROUNDS)
        .flat_map(|r| {
            [('M', b'M'), ('M', b'a' + r), ('M', b'\n'), ('U', b'U'), ('U', b'a' + r), ('U', b'\n')]
                .into_iter()
                .chain([('E', b'E'), ('E', b'a' + r), ('E', b'\n')])
        })
        .collect();
    let interp = {
        let (mut m, start) = machine(&image);
        let mut b = InterpBackend::new();
        b.set_state(&start).expect("set_state");
        step_order(&mut m, |m| b.run(m, RunLimits::instructions(1)).expect("run") == StopReason::Halted)
    };
    assert_eq!(interp, expected, "interpreter");
    if !kvm_usable("global_order_step_by_step_is_program_order") {
        return;
    }
    for options in KVM_OPTIONS {
        let (mut m, start) = machine(&image);
        let mut b = KvmBackend::with_options(&m, options).expect("KVM backend");
        b.set_state(&start).expect("set_state");
        let order = step_order(&mut m, |m| match b.step(m, None) {
            picoqemu_kvm::StepEvent::Halted => true,
            picoqemu_kvm::StepEvent::Stopped(r) => panic!("{options:?}: stopped: {r:?}"),
            _ => false,
        });
        assert_eq!(order, expected, "{options:?}");
        if options.coalesced_mmio || options.coalesced_pio {
            assert!(
                b.kvm_stats().coalesced_writes > 0,
                "{options:?}: writes went through the ring under single step"
            );
        }
        b.end_steps().expect("end_steps");
    }
}

/// Steps with `step` (true when the guest halted) and records, after each step, the bytes
/// each device received during it, tagged 'M' (MMIO console), 'U' (COM1) or 'E' (0xE9).
fn step_order(m: &mut Machine, mut step: impl FnMut(&mut Machine) -> bool) -> Vec<(char, u8)> {
    let mut order = Vec::new();
    let mut seen = [0usize; 3];
    for _ in 0..100_000 {
        let halted = step(m);
        let streams = [
            ('M', m.bus().mmio_console.as_ref().expect("console").out.captured()),
            ('U', m.bus().uart.out.captured()),
            ('E', m.bus().debugcon.out.captured()),
        ];
        for (i, (tag, bytes)) in streams.into_iter().enumerate() {
            order.extend(bytes[seen[i]..].iter().map(|&b| (tag, b)));
            seen[i] = bytes.len();
        }
        if halted {
            return order;
        }
    }
    panic!("the guest did not halt within 100,000 steps");
}

#[test]
fn a_count_read_after_n_coalesced_writes_sees_n() {
    // 1,000 stores overflow KVM's ring (about 170 entries) several times: a store that finds
    // it full exits, and the ring is drained before that exit is handled.
    const N: u16 = 1000;
    let image = count_guest(N);
    // N dots, the word store's low byte; the stores to offsets 1..3 print nothing.
    let printed: Vec<u8> = std::iter::repeat_n(b'.', usize::from(N)).chain([b'!']).collect();
    let reference = interp_run(&image);
    assert_eq!(reference.stop, StopReason::Halted);
    assert_eq!(reference.mmio, printed);
    assert_eq!(reference.eax, u32::from(N) + 1);
    if !kvm_usable("a_count_read_after_n_coalesced_writes_sees_n") {
        return;
    }
    for options in KVM_OPTIONS {
        let (seen, s, _) = kvm_run(&image, options);
        assert_eq!(
            (seen.stop, &seen.mmio, seen.eax),
            (StopReason::Halted, &printed, u32::from(N) + 1),
            "{options:?}"
        );
        // N + 1 + 3 stores and one read, each by an exit or through the ring.
        assert_eq!(s.coalesced_writes + s.mmio_exits, u64::from(N) + 5, "{options:?}: {s:?}");
        if options.coalesced_mmio {
            assert!(s.coalesced_writes >= u64::from(N) / 2, "{options:?}: most stores were coalesced: {s:?}");
            assert!(s.mmio_exits > 2, "{options:?}: the ring filled at least once: {s:?}");
        } else {
            assert_eq!(s.coalesced_writes, 0, "{options:?}");
        }
    }
}

/// Writes `image` to a file for the binary.
fn image_file(name: &str, image: &[u8]) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, image).expect("writing the image");
    path.to_str().expect("UTF-8 path").to_string()
}

#[test]
fn whole_process_output_order_is_the_interpreters() {
    // COM1 and the MMIO console both print on stdout, each flushed at every newline: the
    // lines' order on stdout is the order in which the devices received them (the ring is
    // replayed in guest order), so KVM's default (coalescing on) must print exactly what the
    // interpreter prints.
    let file = image_file("kvm_coalesced_mmio_interleave.img", &interleaving_guest());
    let expected: String = (0..ROUNDS).map(|r| format!("M{0}\nU{0}\n", char::from(b'a' + r))).collect();
    let mut backends = vec!["interp"];
    if kvm_usable("whole_process_output_order_is_the_interpreters") {
        backends.push("kvm");
    }
    for backend in backends {
        let out = picoqemu(&["run", "--backend", backend, "--mmio-console", "0xd0000", &file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{backend}: stderr: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{backend}");
        assert_eq!(stderr.as_bytes(), stream(b'E'), "{backend}");
    }
}
