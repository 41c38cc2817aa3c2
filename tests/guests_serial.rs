//! The serial boot sector and the benchmark guests at library level, on the interpreter and on
//! KVM: device output captured on the bus, exit codes, and final registers and memory checked
//! against models written in Rust.
use picoqemu::guests;
use picoqemu_core::devices::{MmioConsole, Sink};
use picoqemu_core::{
    Backend, CpuState, Gpr, ImageKind, IoBus, Machine, MachineConfig, RunLimits, StopReason,
};
use picoqemu_interp::InterpBackend;
use picoqemu_kvm::KvmBackend;

mod common;
use common::kvm_usable;

/// The backends to run on: the interpreter always, KVM when usable.
fn backends(test: &str) -> Vec<&'static str> {
    let mut v = vec!["interp"];
    if kvm_usable(test) {
        v.push("kvm");
    }
    v
}

struct Run {
    machine: Machine,
    stop: StopReason,
    state: CpuState,
    instructions: Option<u64>,
}

fn run_boot(backend: &str, image: &[u8], mmio_console: Option<u64>) -> Run {
    let mut bus = IoBus::capturing();
    bus.mmio_console = mmio_console.map(|base| MmioConsole::new(base, Sink::capture()));
    let mut machine = Machine::new(MachineConfig::default(), bus).expect("machine");
    let start = picoqemu_core::load_image(&mut machine, image, ImageKind::Boot).expect("load");
    let mut cpu: Box<dyn Backend> = match backend {
        "interp" => Box::new(InterpBackend::new()),
        _ => Box::new(KvmBackend::new(&machine).expect("KVM backend")),
    };
    cpu.set_state(&start).expect("set_state");
    let stop = cpu.run(&mut machine, RunLimits::instructions(50_000_000)).expect("run");
    let state = cpu.state().expect("state");
    let instructions = cpu.stats().instructions;
    Run { machine, stop, state, instructions }
}

fn word(ram: &[u8], addr: usize) -> u16 {
    u16::from_le_bytes([ram[addr], ram[addr + 1]])
}

#[test]
fn serial_hello_prints_and_exits() {
    for backend in backends("serial_hello_prints_and_exits") {
        let r = run_boot(backend, &guests::serial_hello().unwrap(), None);
        assert_eq!(
            r.stop,
            StopReason::DebugExit(guests::SERIAL_HELLO_EXIT_CODE as u32),
            "{backend}\n{}",
            r.state
        );
        assert_eq!(r.stop.exit_status(), 33);
        let bus = &r.machine.bus();
        assert_eq!(bus.uart.out.captured(), guests::SERIAL_HELLO_TEXT.as_bytes(), "{backend}: COM1");
        assert_eq!(
            bus.debugcon.out.captured(),
            guests::SERIAL_HELLO_DEBUG_TEXT.as_bytes(),
            "{backend}: 0xE9"
        );
        assert_eq!(bus.uart.divisor(), 1, "{backend}: the guest programs 115200 baud");
        assert!(!r.machine.screen_written());
    }
}

/// The compute loop's registers and buffer, computed on the host.
fn compute_model(iterations: u32) -> (u16, u16, u16, u16, Vec<u16>) {
    let mut buf = vec![0u16; 2048];
    let (mut ax, mut bx, mut dx, mut si) = (0u16, 0u16, 0x1234u16, 0u16);
    for _ in 0..iterations {
        ax = buf[usize::from(bx / 2)];
        ax = ax.wrapping_add(dx);
        dx ^= ax;
        dx = dx.rotate_left(3);
        buf[usize::from(bx / 2)] = dx;
        si = si.wrapping_add(ax);
        bx = bx.wrapping_add(2) & 0x0FFE;
    }
    (ax, bx, dx, si, buf)
}

#[test]
fn compute_loop_matches_its_model() {
    // 2,500 iterations wrap the 2,048-word buffer once.
    let n = 2_500;
    let (ax, bx, dx, si, buf) = compute_model(n);
    for backend in backends("compute_loop_matches_its_model") {
        let mut r = run_boot(backend, &guests::compute_loop(n).unwrap(), None);
        assert_eq!(r.stop, StopReason::Halted, "{backend}\n{}", r.state);
        let s = &r.state;
        let low = |g: Gpr| s.reg(g) as u16;
        assert_eq!(
            (low(Gpr::Eax), low(Gpr::Ebx), low(Gpr::Edx), low(Gpr::Esi)),
            (ax, bx, dx, si),
            "{backend}\n{s}"
        );
        assert_eq!(s.reg(Gpr::Ecx), 0, "{backend}");
        let ram = r.machine.ram_mut().bytes();
        for (i, w) in buf.iter().enumerate() {
            assert_eq!(word(ram, 0x1000 + 2 * i), *w, "{backend}: buffer word {i}");
        }
        if let Some(count) = r.instructions {
            assert_eq!(count, guests::compute_instruction_count(n), "{backend}: instructions retired");
        }
    }
}

#[test]
fn compute_loop_budget_is_exact_on_the_interpreter() {
    let n = 100;
    let total = guests::compute_instruction_count(n);
    let image = guests::compute_loop(n).unwrap();
    let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
    let start = picoqemu_core::load_image(&mut machine, &image, ImageKind::Boot).unwrap();
    let mut cpu = InterpBackend::new();
    cpu.set_state(&start).unwrap();
    // Everything but the final hlt fits in total - 1 instructions.
    assert_eq!(
        cpu.run(&mut machine, RunLimits::instructions(total - 1)).expect("run"),
        StopReason::BudgetExhausted
    );
    assert_eq!(cpu.state().unwrap().reg(Gpr::Ecx), 0);
    assert_eq!(cpu.run(&mut machine, RunLimits::instructions(1)).expect("run"), StopReason::Halted);
}

#[test]
fn rep_movsw_copies_blocks() {
    for backend in backends("rep_movsw_copies_blocks") {
        let image = guests::rep_movsw(3).unwrap();
        let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
        let start = picoqemu_core::load_image(&mut machine, &image, ImageKind::Boot).unwrap();
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        machine.ram_mut().write(0x10000, &pattern).unwrap();
        let mut cpu: Box<dyn Backend> = match backend {
            "interp" => Box::new(InterpBackend::new()),
            _ => Box::new(KvmBackend::new(&machine).expect("KVM backend")),
        };
        cpu.set_state(&start).unwrap();
        let stop = cpu.run(&mut machine, RunLimits::instructions(10_000_000)).expect("run");
        let s = cpu.state().unwrap();
        assert_eq!(stop, StopReason::Halted, "{backend}\n{s}");
        assert_eq!(&machine.ram_mut().bytes()[0x20000..0x21000], pattern.as_slice(), "{backend}");
        assert_eq!((s.reg(Gpr::Ecx) as u16, s.reg(Gpr::Esi) as u16, s.reg(Gpr::Edi) as u16), (0, 4096, 4096));
        assert_eq!(s.reg(Gpr::Ebx), 0);
    }
}

#[test]
fn rep_stosw_fills_blocks() {
    for backend in backends("rep_stosw_fills_blocks") {
        let mut r = run_boot(backend, &guests::rep_stosw(2).unwrap(), None);
        assert_eq!(r.stop, StopReason::Halted, "{backend}\n{}", r.state);
        let ram = r.machine.ram_mut().bytes();
        assert!(ram[0x20000..0x21000].chunks_exact(2).all(|w| w == [0x5A, 0xA5]), "{backend}");
        assert_eq!(ram[0x21000], 0, "{backend}: wrote past the block");
        assert_eq!(r.state.reg(Gpr::Edi) as u16, 4096);
    }
}

#[test]
fn out_loop_writes_the_post_port() {
    for backend in backends("out_loop_writes_the_post_port") {
        let r = run_boot(backend, &guests::out_loop(300).unwrap(), None);
        assert_eq!(r.stop, StopReason::Halted, "{backend}\n{}", r.state);
        assert_eq!(r.machine.bus().post_code, (299 % 256) as u8, "{backend}");
        assert_eq!(r.machine.bus().stats.pio_writes, 300, "{backend}");
    }
}

#[test]
fn mmio_store_loop_reaches_the_console() {
    let base = u64::from(guests::DEFAULT_MMIO_CONSOLE_BASE);
    for backend in backends("mmio_store_loop_reaches_the_console") {
        let mut r = run_boot(
            backend,
            &guests::mmio_store_loop(guests::DEFAULT_MMIO_CONSOLE_BASE, 50).unwrap(),
            Some(base),
        );
        assert_eq!(r.stop, StopReason::Halted, "{backend}\n{}", r.state);
        let console = r.machine.bus().mmio_console.as_ref().expect("console");
        let mut expected = vec![b'.'; 50];
        expected.push(b'\n');
        assert_eq!(console.out.captured(), expected.as_slice(), "{backend}");
        // The stores must not have reached RAM under the console.
        assert!(r.machine.ram_mut().bytes()[0xD0000..0xD1000].iter().all(|&b| b == 0), "{backend}");
    }
}

#[test]
fn jmp_self_runs_until_the_budget() {
    let image = guests::jmp_self().unwrap();
    let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing()).unwrap();
    let start = picoqemu_core::load_image(&mut machine, &image, ImageKind::Boot).unwrap();
    let mut cpu = InterpBackend::new();
    cpu.set_state(&start).unwrap();
    assert_eq!(
        cpu.run(&mut machine, RunLimits::instructions(1000)).expect("run"),
        StopReason::BudgetExhausted
    );
    assert_eq!(cpu.state().unwrap().eip, 0x7C00);
}

#[test]
fn daa_guest_on_the_interpreter() {
    let r = run_boot("interp", &guests::daa_guest().unwrap(), None);
    assert_eq!(r.stop, StopReason::DebugExit(guests::DAA_RESULT.into()), "{}", r.state);
}
