//! The PC platform end to end on the interpreter: a guest programs the 8259A pair and the 8254
//! (channel 0, mode 2), counts IRQ 0 in an IVT handler that sends EOI, waits with `sti; hlt`,
//! and reports the count on port 0xE9 before leaving through port 0xF4. Time is virtual, so
//! two runs give the same ticks, the same clock and the same final state.
use picoqemu::guests::{self, PIT_TICKS_COUNTER, PIT_TICKS_EXIT_CODE};
use picoqemu_core::devices::pit::ns_of_tick;
use picoqemu_core::devices::Pic8259Pair;
use picoqemu_core::{
    Backend, CpuState, ImageKind, IoBus, Machine, MachineConfig, Platform, RunLimits, StopReason,
};
use picoqemu_interp::InterpBackend;

const DIVISOR: u16 = 200;
const TICKS: u16 = 12;

struct Outcome {
    stop: StopReason,
    state: CpuState,
    clock_ns: u64,
    debugcon: Vec<u8>,
    ram: Vec<u8>,
    pic_isr: u8,
}

fn run_pc_guest() -> Outcome {
    let config = MachineConfig { platform: Platform::Pc, ..MachineConfig::default() };
    let mut machine = Machine::new(config, IoBus::capturing()).expect("machine");
    let image = guests::pit_ticks(DIVISOR, TICKS).expect("guest");
    let start = picoqemu_core::load_image(&mut machine, &image, ImageKind::Boot).expect("load");
    let mut cpu = InterpBackend::new();
    cpu.set_state(&start).expect("set_state");
    let stop = cpu.run(&mut machine, RunLimits::instructions(5_000_000)).expect("run");
    let state = cpu.state().expect("state");
    let bus = machine.bus();
    Outcome {
        stop,
        state,
        clock_ns: machine.clock().now_ns(),
        debugcon: bus.debugcon().out.captured().to_vec(),
        ram: machine.ram().to_vec(),
        pic_isr: bus.find::<Pic8259Pair>().expect("PIC").master().isr(),
    }
}

#[test]
fn pit_interrupts_wake_hlt_and_are_counted_deterministically() {
    let a = run_pc_guest();
    assert_eq!(a.stop, StopReason::DebugExit(u32::from(PIT_TICKS_EXIT_CODE)), "{}", a.state);
    assert_eq!(a.debugcon, TICKS.to_le_bytes(), "the guest reports exactly {TICKS} ticks");
    let counter = usize::from(PIT_TICKS_COUNTER);
    assert_eq!(u16::from_le_bytes([a.ram[counter], a.ram[counter + 1]]), TICKS);
    assert_eq!(a.pic_isr, 0, "every tick was acknowledged with EOI");
    let last = ns_of_tick(u64::from(TICKS) * u64::from(DIVISOR));
    let next = ns_of_tick(u64::from(TICKS + 1) * u64::from(DIVISOR));
    assert!(
        (last..next).contains(&a.clock_ns),
        "virtual time {} ns lies between tick {TICKS} ({last} ns) and the next ({next} ns)",
        a.clock_ns
    );
    let b = run_pc_guest();
    assert_eq!((b.stop, b.clock_ns, &b.debugcon), (a.stop, a.clock_ns, &a.debugcon), "second run");
    assert_eq!(b.state, a.state, "same final registers");
    assert!(b.ram == a.ram, "same final memory");
}

#[test]
fn the_bare_machine_has_no_timer() {
    let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
    let image = guests::pit_ticks(DIVISOR, TICKS).expect("guest");
    let start = picoqemu_core::load_image(&mut machine, &image, ImageKind::Boot).expect("load");
    let mut cpu = InterpBackend::new();
    cpu.set_state(&start).expect("set_state");
    let stop = cpu.run(&mut machine, RunLimits::instructions(100_000)).expect("run");
    assert_eq!(stop, StopReason::Halted, "no PIT, no PIC: the first HLT with IF=1 ends the run");
    assert_eq!(machine.bus().stats().unclaimed_writes, 13, "the PIC and PIT programming went nowhere");
    assert!(machine.bus().debugcon().out.captured().is_empty());
}
