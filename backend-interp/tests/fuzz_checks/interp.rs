//! Invariants of the interpreter running arbitrary bytes from an arbitrary real-mode start
//! state under an instruction budget, with each compiled-tier mode. Shared by the cargo-fuzz
//! target `fuzz/fuzz_targets/interp.rs` and the proptest in `backend-interp/tests/fuzz_props.rs`.
//!
//! Input: a [`HEADER`]-byte header (registers, selectors, IP, FLAGS, budget, control bits, the
//! byte the rest of RAM is filled with) followed by the code, placed at CS:IP.
//! Checked: the run never panics and stops only for a reason that a budgeted run can have;
//! the retired count matches the stop; the final state is a real-mode state (FLAGS fixed bits,
//! base = selector * 16, limits unchanged, IP within 64 KiB, CR0.PE clear); a halt stops right
//! after an HLT byte in RAM; an unsupported stop names the bytes at CS:IP and repeats itself
//! without retiring anything when run again; a debug exit matches the device; and two runs of
//! the same input give the same stop, state, RAM and device output.
use picoqemu_core::devices::{MmioConsole, Sink};
use picoqemu_core::flags::{AF, CF, DF, FIXED, IF, IOPL, NT, OF, PF, SF, TF, VM, ZF};
use picoqemu_core::{
    Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, SegReg, Segment, StopReason, MIN_MEM_SIZE,
};
use picoqemu_interp::{InterpBackend, JitMode};

/// Bytes of the header before the code.
pub const HEADER: usize = 52;
/// Where the optional MMIO console sits.
const MMIO_BASE: u64 = 0xD_0000;

/// A decoded input.
pub struct Input<'a> {
    pub state: CpuState,
    pub budget: u64,
    pub jit: JitMode,
    pub a20_wrap: bool,
    pub mmio: bool,
    pub fill: u8,
    pub code: &'a [u8],
}

fn u16_at(h: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([h[i], h[i + 1]])
}

/// Splits `data` into header and code; `None` when it is shorter than the header.
pub fn decode(data: &[u8]) -> Option<Input<'_>> {
    if data.len() < HEADER {
        return None;
    }
    let (h, code) = data.split_at(HEADER);
    let mut s = CpuState::default();
    for (r, v) in s.gpr.iter_mut().enumerate() {
        *v = u32::from_le_bytes([h[4 * r], h[4 * r + 1], h[4 * r + 2], h[4 * r + 3]]);
    }
    for (i, seg) in s.segs.iter_mut().enumerate() {
        *seg = Segment::real(u16_at(h, 32 + 2 * i));
    }
    s.eip = u32::from(u16_at(h, 44));
    let writable = CF | PF | AF | ZF | SF | TF | IF | DF | OF | IOPL | NT;
    s.eflags = (u32::from(u16_at(h, 46)) & writable) | FIXED;
    let ctl = h[50];
    if ctl & 0x08 != 0 {
        // "Unreal" data segments: 4 GiB limits, as a 386 keeps them after protected mode.
        for r in [SegReg::Ds, SegReg::Es, SegReg::Fs, SegReg::Gs] {
            s.segs[r as usize].limit = u32::MAX;
        }
    }
    if ctl & 0x10 != 0 {
        s.idt_limit = u16::from(h[51]) & 0x0F; // almost no IVT: interrupts escalate
    }
    let jit = [JitMode::Off, JitMode::Eager, JitMode::Hot, JitMode::Off][usize::from(ctl & 3)];
    Some(Input {
        state: s,
        budget: 1 + u64::from(u16_at(h, 48) & 0x1FFF),
        jit,
        a20_wrap: ctl & 0x04 != 0,
        mmio: ctl & 0x20 != 0,
        fill: h[51],
        code,
    })
}

/// Physical address of `linear` on this machine.
fn phys(inp: &Input, linear: u32) -> usize {
    (if inp.a20_wrap { linear & 0xF_FFFF } else { linear }) as usize
}

/// The outcome of one run.
pub struct Outcome {
    pub stop: StopReason,
    pub state: CpuState,
    pub retired: u64,
    pub machine: Machine,
    pub backend: InterpBackend,
}

/// Builds the machine for `inp` and runs it once.
pub fn run(inp: &Input) -> Outcome {
    let config = MachineConfig { mem_size: MIN_MEM_SIZE, a20_wrap: inp.a20_wrap, ..MachineConfig::default() };
    let mut bus = IoBus::capturing();
    if inp.mmio {
        bus.register(MmioConsole::new(MMIO_BASE, Sink::capture())).expect("the MMIO console fits");
    }
    let mut m = Machine::new(config, bus).expect("a minimal machine");
    let ram = m.ram_mut().as_mut_slice();
    ram.fill(inp.fill);
    let start = inp.state.pc_linear();
    for (i, &b) in inp.code.iter().enumerate() {
        let p = phys(inp, start.wrapping_add(i as u32));
        if let Some(slot) = ram.get_mut(p) {
            *slot = b;
        }
    }
    let mut backend = InterpBackend::new().with_jit(inp.jit);
    backend.set_state(&inp.state).expect("set_state");
    let stop =
        backend.run(&mut m, RunLimits::instructions(inp.budget)).expect("the interpreter has no host errors");
    let state = backend.state().expect("state");
    let retired = backend.stats().instructions.expect("the interpreter counts instructions");
    Outcome { stop, state, retired, machine: m, backend }
}

/// Runs `data` and asserts every invariant; inputs shorter than the header are ignored.
pub fn check(data: &[u8]) {
    let Some(inp) = decode(data) else { return };
    let a = run(&inp);
    check_stop(&inp, &a);
    check_state(&inp, &a.state);
    let b = run(&inp);
    assert_eq!(a.stop, b.stop, "two runs of one input stopped differently");
    assert_eq!(a.state, b.state, "two runs of one input ended in different states");
    assert_eq!(a.retired, b.retired, "two runs of one input retired different counts");
    assert!(a.machine.ram().content_eq(b.machine.ram()), "two runs of one input left different RAM");
    assert_eq!(a.machine.bus().uart().out.captured(), b.machine.bus().uart().out.captured());
    assert_eq!(a.machine.bus().debugcon().out.captured(), b.machine.bus().debugcon().out.captured());
    check_resume(&inp, b);
}

fn check_stop(inp: &Input, o: &Outcome) {
    match &o.stop {
        StopReason::BudgetExhausted | StopReason::StepDone => {
            assert_eq!(
                o.stop == StopReason::StepDone,
                inp.budget == 1,
                "StepDone iff a budget of 1: {:?}",
                o.stop
            );
            assert_eq!(
                o.retired, inp.budget,
                "{:?} after {} of {} instructions",
                o.stop, o.retired, inp.budget
            );
        }
        StopReason::Halted => {
            assert!(
                o.retired >= 1 && o.retired <= inp.budget,
                "halted after {} of {}",
                o.retired,
                inp.budget
            );
            let ip = o.state.eip.wrapping_sub(1) & 0xFFFF;
            let p = phys(inp, o.state.seg(SegReg::Cs).base.wrapping_add(ip));
            if !in_mmio(inp, p) {
                assert_eq!(ram_byte(o, p), 0xF4, "halted, but the byte before CS:IP is not HLT");
            }
        }
        StopReason::Unsupported { cs, ip, bytes } => {
            assert!(o.retired < inp.budget, "unsupported after {} of {}", o.retired, inp.budget);
            assert_eq!((*cs, *ip), (o.state.cs(), o.state.eip), "unsupported stop names another CS:IP");
            assert!(!bytes.as_slice().is_empty(), "unsupported stop without instruction bytes");
            let base = o.state.pc_linear();
            for (i, &b) in bytes.as_slice().iter().enumerate() {
                let p = phys(inp, base.wrapping_add(i as u32));
                if !in_mmio(inp, p) {
                    assert_eq!(ram_byte(o, p), b, "unsupported stop byte {i} is not RAM's");
                }
            }
        }
        StopReason::DebugExit(code) => {
            assert!(o.retired >= 1 && o.retired <= inp.budget);
            assert_eq!(
                o.machine.bus().debug_exit().last(),
                Some(*code),
                "debug exit code differs from the device's"
            );
        }
        StopReason::TripleFault => assert!(o.retired <= inp.budget),
        other => panic!("a budgeted interpreter run stopped with {other:?}"),
    }
}

fn ram_byte(o: &Outcome, p: usize) -> u8 {
    o.machine.ram().read_u8(p as u64).expect("the address is in RAM")
}

fn in_mmio(inp: &Input, p: usize) -> bool {
    inp.mmio && (MMIO_BASE as usize & !0xFFF..(MMIO_BASE as usize + 0x1000)).contains(&p)
}

/// The final state is a real-mode state reachable from the start state.
pub fn check_state(inp: &Input, s: &CpuState) {
    assert_ne!(s.eflags & FIXED, 0, "FLAGS bit 1 is clear: {:#x}", s.eflags);
    assert_eq!(
        s.eflags & (1 << 3 | 1 << 5 | 1 << 15 | VM),
        0,
        "reserved FLAGS bit or VM set: {:#x}",
        s.eflags
    );
    assert_eq!(s.eflags >> 22, 0, "FLAGS bits above ID set: {:#x}", s.eflags);
    for r in SegReg::ALL {
        let (g, start) = (s.seg(r), inp.state.seg(r));
        assert_eq!(g.base, u32::from(g.selector) << 4, "{} base is not selector * 16: {g:?}", r.name());
        assert_eq!(g.limit, start.limit, "{} limit changed in real mode", r.name());
    }
    assert!(s.eip <= 0xFFFF, "IP beyond the 64 KiB code segment: {:#x}", s.eip);
    assert_eq!(s.cr0 & 0x8000_0001, 0, "CR0.PE or PG set: {:#x}", s.cr0);
}

/// A stopped CPU can be run again: an unsupported instruction stops again at once, at the
/// same place, retiring nothing; any other stop resumes and keeps the invariants.
fn check_resume(inp: &Input, mut o: Outcome) {
    if matches!(o.stop, StopReason::TripleFault) {
        return;
    }
    let before = o.retired;
    let budget = 64;
    let stop = o.backend.run(&mut o.machine, RunLimits::instructions(budget)).expect("no host errors");
    let state = o.backend.state().expect("state");
    let retired = o.backend.stats().instructions.expect("count") - before;
    if let StopReason::Unsupported { .. } = o.stop {
        assert_eq!(stop, o.stop, "an unsupported stop did not repeat");
        assert_eq!(state, o.state, "re-running an unsupported instruction changed the state");
        assert_eq!(retired, 0, "re-running an unsupported instruction retired {retired}");
    }
    let again = Outcome { stop, state, retired, machine: o.machine, backend: o.backend };
    let resumed = Input { budget, ..*inp };
    check_stop(&resumed, &again);
    check_state(inp, &again.state);
}
