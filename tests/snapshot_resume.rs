//! Whole-machine snapshots at library level: a guest cut after N instructions on one CPU,
//! saved ([`snapshot::save`]), restored into a fresh machine ([`snapshot::restore`]) and
//! resumed on the same or the other CPU ends exactly as an uninterrupted run — registers,
//! all of RAM, screen, COM1 and port 0xE9 output (the two parts of the output put together)
//! and the stop reason. Guests: the article's hello (raw), the serial boot sector, and the
//! PC-platform timer guest whose PIT and PIC interrupt it (cut mid-loop, and cut on KVM at its
//! first `sti; hlt`, so the interpreter resumes a halted CPU).
use picoqemu::guests;
use picoqemu_core::snapshot::{self, SnapshotError};
use picoqemu_core::{
    load_image, Backend, CpuState, ImageKind, IoBus, Machine, MachineConfig, Platform, RunLimits, StopReason,
};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_kvm::KvmBackend;

mod common;
use common::kvm_usable;

const LIMIT: RunLimits = RunLimits { max_instructions: Some(5_000_000), timeout: None };
/// KVM resumes without a budget: its budgeted runs single-step, and single steps take no
/// interrupts (they stop at a HLT). The timeout only guards against a hang.
const KVM_FREE: RunLimits =
    RunLimits { max_instructions: None, timeout: Some(std::time::Duration::from_secs(120)) };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cpu {
    Interp,
    Kvm,
}

struct Guest {
    image: Vec<u8>,
    kind: ImageKind,
    config: MachineConfig,
}

fn hello() -> Guest {
    Guest { image: guests::hello().unwrap(), kind: ImageKind::Raw, config: MachineConfig::default() }
}

fn serial() -> Guest {
    Guest { image: guests::serial_hello().unwrap(), kind: ImageKind::Boot, config: MachineConfig::default() }
}

fn pc_timer() -> Guest {
    let config = MachineConfig { platform: Platform::Pc, ..MachineConfig::default() };
    Guest { image: guests::pit_ticks(200, 12).unwrap(), kind: ImageKind::Boot, config }
}

/// A machine with `g` loaded, and the start state.
fn build(g: &Guest) -> (Machine, CpuState) {
    let mut m = Machine::new(g.config, IoBus::capturing()).unwrap();
    let start = load_image(&mut m, &g.image, g.kind).unwrap();
    (m, start)
}

fn backend(cpu: Cpu, m: &Machine) -> Box<dyn Backend> {
    match cpu {
        Cpu::Interp => Box::new(InterpBackend::new().with_jit(JitMode::Eager)),
        Cpu::Kvm => Box::new(KvmBackend::new(m).unwrap()),
    }
}

/// What a run ends with.
#[derive(Debug, PartialEq, Eq)]
struct End {
    stop: StopReason,
    state: CpuState,
    screen: String,
    serial: Vec<u8>,
    debugcon: Vec<u8>,
    ram_hash: u64,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn end(m: &Machine, cpu: &mut dyn Backend, stop: StopReason, serial: Vec<u8>, debugcon: Vec<u8>) -> End {
    let state = cpu.state().unwrap();
    let mut serial = serial;
    serial.extend_from_slice(m.bus().uart().out.captured());
    let mut debugcon = debugcon;
    debugcon.extend_from_slice(m.bus().debugcon().out.captured());
    End { stop, state, screen: m.screen_text(), serial, debugcon, ram_hash: fnv(&m.ram().to_vec()) }
}

fn whole(g: &Guest, cpu: Cpu) -> End {
    let (mut m, start) = build(g);
    let mut b = backend(cpu, &m);
    b.set_state(&start).unwrap();
    let stop = b.run(&mut m, LIMIT).unwrap();
    end(&m, b.as_mut(), stop, Vec::new(), Vec::new())
}

/// Runs `n` instructions on `first` (or `first_limits`), saves, restores into a fresh machine
/// and resumes on `second`. Returns the end and the first part's stop.
fn split(g: &Guest, first: Cpu, n: u64, second: Cpu) -> (End, StopReason) {
    let (mut m, start) = build(g);
    let mut a = backend(first, &m);
    a.set_state(&start).unwrap();
    let cut = a.run(&mut m, RunLimits::instructions(n)).unwrap();
    let file = snapshot::save(&m, &a.cpu_snapshot().unwrap());
    let serial = m.bus().uart().out.captured().to_vec();
    let debugcon = m.bus().debugcon().out.captured().to_vec();
    drop((a, m));
    let (mut m2, _) = build(g);
    let snap = snapshot::restore(&mut m2, &file).unwrap();
    let mut b = backend(second, &m2);
    b.restore_cpu_snapshot(&snap).unwrap();
    assert_eq!(b.cpu_snapshot().unwrap(), snap, "{second:?} reports the snapshot it was given");
    let limits = if second == Cpu::Kvm { KVM_FREE } else { LIMIT };
    let stop = b.run(&mut m2, limits).unwrap();
    (end(&m2, b.as_mut(), stop, serial, debugcon), cut)
}

fn pairs(test: &str) -> Vec<(Cpu, Cpu)> {
    let mut v = vec![(Cpu::Interp, Cpu::Interp)];
    if kvm_usable(test) {
        v.extend([(Cpu::Interp, Cpu::Kvm), (Cpu::Kvm, Cpu::Interp), (Cpu::Kvm, Cpu::Kvm)]);
    }
    v
}

#[test]
fn hello_and_serial_resume_on_either_cpu_as_if_never_cut() {
    for (name, g, cuts) in [("hello", hello(), [2u64, 7, 40]), ("serial", serial(), [2, 9, 60])] {
        let reference = whole(&g, Cpu::Interp);
        assert!(matches!(reference.stop, StopReason::Halted | StopReason::DebugExit(_)), "{name}");
        for (first, second) in pairs("hello_and_serial_resume_on_either_cpu_as_if_never_cut") {
            for n in cuts {
                let (got, cut) = split(&g, first, n, second);
                assert_eq!(cut, StopReason::BudgetExhausted, "{name}: the cut at {n} is mid-program");
                assert_eq!(got, reference, "{name} cut at {n} on {first:?}, resumed on {second:?}");
            }
        }
    }
}

/// Instructions the interpreter runs for `g` (its own count).
fn instruction_count(g: &Guest) -> u64 {
    let (mut m, start) = build(g);
    let mut b = InterpBackend::new();
    b.set_state(&start).unwrap();
    b.run(&mut m, LIMIT).unwrap();
    b.stats().instructions.unwrap()
}

#[test]
fn the_timer_guest_resumes_mid_loop_with_its_pit_and_pic() {
    let g = pc_timer();
    let reference = whole(&g, Cpu::Interp);
    assert_eq!(reference.stop, StopReason::DebugExit(u32::from(guests::PIT_TICKS_EXIT_CODE)));
    let total = instruction_count(&g);
    let kvm = kvm_usable("the_timer_guest_resumes_mid_loop_with_its_pit_and_pic");
    // Cuts inside the wait loop, after some ticks were counted.
    for n in [total / 3, total / 2, total - 5] {
        let (got, cut) = split(&g, Cpu::Interp, n, Cpu::Interp);
        assert_eq!(cut, StopReason::BudgetExhausted);
        assert_eq!(got, reference, "interp -> interp at {n} of {total}");
        if kvm {
            let (got, _) = split(&g, Cpu::Interp, n, Cpu::Kvm);
            assert_eq!(got, reference, "interp -> kvm at {n} of {total}");
        }
    }
}

#[test]
fn a_cpu_halted_on_kvm_waits_for_the_timer_on_the_interpreter() {
    if !kvm_usable("a_cpu_halted_on_kvm_waits_for_the_timer_on_the_interpreter") {
        return;
    }
    let g = pc_timer();
    let reference = whole(&g, Cpu::Interp);
    // KVM's single steps take no interrupts: its budgeted run stops at the first `sti; hlt`.
    let (got, cut) = split(&g, Cpu::Kvm, 10_000, Cpu::Interp);
    assert_eq!(cut, StopReason::Halted);
    assert_eq!(got, reference);
    // And back: the interpreter halted in the same place (its budget ends in the HLT wait
    // only by the budget, so cut at the same count) resumes on KVM.
    let (got, _) = split(&g, Cpu::Kvm, 10_000, Cpu::Kvm);
    assert_eq!(got, reference);
}

#[test]
fn a_machine_built_otherwise_is_refused() {
    let (mut m, start) = build(&hello());
    let mut b = InterpBackend::new();
    b.set_state(&start).unwrap();
    b.run(&mut m, RunLimits::instructions(5)).unwrap();
    let file = snapshot::save(&m, &b.cpu_snapshot().unwrap());
    let other = |config: MachineConfig| Machine::new(config, IoBus::capturing()).unwrap();
    let mut big = other(MachineConfig { mem_size: 4 << 20, ..MachineConfig::default() });
    let e = snapshot::restore(&mut big, &file).unwrap_err();
    assert!(matches!(e, SnapshotError::ConfigMismatch(_)), "{e}");
    assert!(e.to_string().contains("2048 KiB") && e.to_string().contains("4096 KiB"), "{e}");
    let mut pc = other(MachineConfig { platform: Platform::Pc, ..MachineConfig::default() });
    assert!(matches!(snapshot::restore(&mut pc, &file), Err(SnapshotError::ConfigMismatch(_))));
    let mut a20 = other(MachineConfig { a20_wrap: true, ..MachineConfig::default() });
    assert!(matches!(snapshot::restore(&mut a20, &file), Err(SnapshotError::ConfigMismatch(_))));
    // An extra device on this machine: its state is missing from the file.
    let mut bus = IoBus::capturing();
    bus.register(picoqemu_core::devices::MmioConsole::new(0xD0000, picoqemu_core::devices::Sink::capture()))
        .unwrap();
    let mut console = Machine::new(MachineConfig::default(), bus).unwrap();
    let e = snapshot::restore(&mut console, &file).unwrap_err();
    assert_eq!(e, SnapshotError::MissingDevice("MMIO console".into()));
    // The other way round: the file has a device this machine lacks.
    let file2 = snapshot::save(&console, &b.cpu_snapshot().unwrap());
    let mut plain = other(MachineConfig::default());
    let e = snapshot::restore(&mut plain, &file2).unwrap_err();
    assert_eq!(e, SnapshotError::UnknownDevice("MMIO console".into()));
    // The matching machine takes it.
    let mut same = other(MachineConfig::default());
    snapshot::restore(&mut same, &file).unwrap();
    assert!(same.ram().to_vec() == m.ram().to_vec());
}

/// A snapshot whose CPU had acknowledged an interrupt but not delivered it yet (what KVM can
/// hold after a run): both CPUs deliver it first, and end the same.
#[test]
fn an_acknowledged_interrupt_is_delivered_first_on_either_cpu() {
    let g = pc_timer();
    let (mut m, start) = build(&g);
    let mut a = InterpBackend::new();
    a.set_state(&start).unwrap();
    a.run(&mut m, RunLimits::instructions(62)).unwrap();
    let mut cpu = a.cpu_snapshot().unwrap();
    cpu.pending_interrupt = Some(guests::PIT_TICKS_VECTOR);
    let file = snapshot::save(&m, &cpu);
    let mut cpus = vec![Cpu::Interp];
    if kvm_usable("an_acknowledged_interrupt_is_delivered_first_on_either_cpu") {
        cpus.push(Cpu::Kvm);
    }
    let mut ends = Vec::new();
    for c in cpus {
        let (mut m2, _) = build(&g);
        let snap = snapshot::restore(&mut m2, &file).unwrap();
        let mut b = backend(c, &m2);
        b.restore_cpu_snapshot(&snap).unwrap();
        assert_eq!(b.cpu_snapshot().unwrap().pending_interrupt, Some(guests::PIT_TICKS_VECTOR));
        let stop = b.run(&mut m2, if c == Cpu::Kvm { KVM_FREE } else { LIMIT }).unwrap();
        let counter = usize::from(guests::PIT_TICKS_COUNTER);
        let ram = m2.ram().to_vec();
        ends.push((
            stop.clone(),
            u16::from_le_bytes([ram[counter], ram[counter + 1]]),
            end(&m2, b.as_mut(), stop, vec![], vec![]),
        ));
    }
    let reference = whole(&g, Cpu::Interp);
    assert_eq!(ends[0].0, reference.stop);
    // One instruction on the interpreter: the interrupt's delivery, then the handler's `push ax`.
    let (mut m3, _) = build(&g);
    let snap = snapshot::restore(&mut m3, &file).unwrap();
    let mut i = InterpBackend::new();
    i.restore_cpu_snapshot(&snap).unwrap();
    i.run(&mut m3, RunLimits::instructions(1)).unwrap();
    let after = i.state().unwrap();
    let ivt = m3.ram().to_vec();
    let v = usize::from(guests::PIT_TICKS_VECTOR) * 4;
    let handler = u32::from(u16::from_le_bytes([ivt[v], ivt[v + 1]]));
    assert_eq!(after.eip, handler + 1, "in the handler, past its one-byte `push ax`");
    assert_eq!(after.gpr[4], cpu.state.gpr[4] - 8, "FLAGS, CS, IP and AX pushed");
    if let [i, k] = &ends[..] {
        assert_eq!(k, i, "KVM and the interpreter agree");
    }
}

#[test]
fn a_saved_machine_saves_back_to_the_same_bytes() {
    let g = pc_timer();
    let (mut m, start) = build(&g);
    let mut a = InterpBackend::new();
    a.set_state(&start).unwrap();
    a.run(&mut m, RunLimits::instructions(100)).unwrap();
    let cpu = a.cpu_snapshot().unwrap();
    let file = snapshot::save(&m, &cpu);
    let (mut m2, _) = build(&g);
    let cpu2 = snapshot::restore(&mut m2, &file).unwrap();
    assert_eq!(cpu2, cpu);
    assert!(snapshot::save(&m2, &cpu2) == file, "save(restore(f)) == f");
}
