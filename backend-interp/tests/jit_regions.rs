//! Randomized differential test of the compiled tier's multi-block loop regions against the
//! pure interpreter.
//!
//! `picoqemu_verify::gen::loops::regions` builds loops whose bodies branch forward inside
//! the loop, branch out of it, switch through jump tables (`jmp word [cs:edx*2 + table]`, cases
//! inside and outside the region), call helper functions placed before or after the loop
//! (`call`/`ret`, `ret 2` with a pushed argument, `calld`/`retd`, a nested call, a loop inside
//! a callee, entry code falling into the loop), push and pop registers and immediates (SP
//! sometimes starting at 0, so pushes wrap), and contain instructions the tier leaves to the
//! interpreter (CLD/STD, `xchg bx, bx`), with 16- and 32-bit addressing. The reference
//! is `JitMode::Off` single-stepped, following the undefined status flags along the path it
//! actually ran (`UndefTracker`); each program then runs under `JitMode::Eager` (and
//! `JitMode::Hot`) to the end and with budgets that stop inside passes. Stop reason, the
//! whole `CpuState` (undefined flags masked), the instruction count and RAM must be equal.
//!
//! Seed and size: `PICOQEMU_JIT_REGION_SEED`, `PICOQEMU_JIT_REGION_COUNT`.
use iced_x86::{Decoder, DecoderOptions};
use picoqemu_core::{Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_interp::{InterpBackend, JitMode};
use picoqemu_verify::compare::state_diff;
use picoqemu_verify::flagmask::UndefTracker;
use picoqemu_verify::gen::loops::regions::{generate_region, RegionProgram};
use picoqemu_verify::gen::loops::{catalogue, CODE_BASE, FILL_BASE, FILL_LEN, HANDLER};
use picoqemu_verify::rng::{fill_bytes, SplitMix64};

/// RAM compared after a run (code, stack and data all live below it).
const COMPARED: usize = 0x40000;

fn machine(p: &RegionProgram) -> Machine {
    let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
    let ram = m.ram_mut().as_mut_slice();
    fill_bytes(p.fill_seed, &mut ram[FILL_BASE..FILL_BASE + FILL_LEN]);
    for v in 0..256 {
        ram[v * 4..v * 4 + 2].copy_from_slice(&(HANDLER as u16).to_le_bytes());
        ram[v * 4 + 2..v * 4 + 4].copy_from_slice(&[0, 0]);
    }
    ram[HANDLER] = 0xF4; // hlt
    let at = CODE_BASE + p.ip as usize;
    ram[at..at + p.code.len()].copy_from_slice(&p.code);
    m
}

/// The reference run, one instruction at a time.
struct Reference {
    /// State and undefined flags after each retired instruction (index 0: the start).
    states: Vec<(CpuState, u32)>,
    stop: StopReason,
    /// The state and instruction count at that stop (a HLT counts as retired).
    last: (CpuState, u32),
    icount: u64,
    ram: Vec<u8>,
}

fn reference(p: &RegionProgram) -> Option<Reference> {
    let mut m = machine(p);
    let mut be = InterpBackend::new().with_jit(JitMode::Off);
    be.set_state(&p.init).expect("set_state");
    let mut undef = UndefTracker::new();
    let mut states = vec![(p.init, 0)];
    let stop = loop {
        let s = be.state().expect("state");
        if states.len() as u64 > p.cap {
            break StopReason::BudgetExhausted;
        }
        let lin = (s.segs[1].base + s.eip) as usize;
        let bytes = m.ram().read_vec(lin as u64, 15).expect("code in RAM");
        let mut d = Decoder::with_ip(16, &bytes, u64::from(s.eip), DecoderOptions::NONE);
        let ins = d.decode();
        match be.run(&mut m, RunLimits::instructions(1)).expect("run") {
            StopReason::StepDone | StopReason::BudgetExhausted => {
                undef.executed(&ins, s.gpr[1], states.len() as u64 - 1);
                states.push((be.state().expect("state"), undef.undefined()));
            }
            other => break other,
        }
    };
    let last = (be.state().expect("state"), undef.undefined());
    // A fault (the IVT leads to the HLT at HANDLER) pushes FLAGS: not generated, not compared.
    if undef.taint().is_some() || (last.0.segs[1].selector == 0 && last.0.eip == HANDLER as u32 + 1) {
        return None;
    }
    let icount = be.stats().instructions.unwrap_or(0);
    Some(Reference { states, stop, last, icount, ram: m.ram_mut().bytes()[..COMPARED].to_vec() })
}

/// Runs `p` under `mode` with at most `limit` instructions; mismatches against `r` as text.
fn check(p: &RegionProgram, r: &Reference, mode: JitMode, limit: u64) -> Result<InterpBackend, String> {
    let mut m = machine(p);
    let mut be = InterpBackend::new().with_jit(mode);
    be.set_state(&p.init).expect("set_state");
    let stop = be.run(&mut m, RunLimits::instructions(limit)).expect("run");
    let n = be.stats().instructions.unwrap_or(0);
    let whole = limit >= r.states.len() as u64;
    let (want_stop, at, (want, undef)) = if whole {
        (r.stop.clone(), r.icount, r.last)
    } else {
        let budget = if limit == 1 { StopReason::StepDone } else { StopReason::BudgetExhausted };
        (budget, limit, r.states[limit as usize])
    };
    if stop != want_stop || n != at {
        return Err(format!(
            "{mode:?} limit {limit}: stop {stop:?} after {n}, want {want_stop:?} after {at}"
        ));
    }
    let diff = state_diff(&be.state().expect("state"), &want, undef);
    if !diff.is_empty() {
        return Err(format!("{mode:?} limit {limit}: state differs after {at} instructions: {diff:?}"));
    }
    let ram = m.ram_mut().bytes();
    if whole && ram[..COMPARED] != r.ram[..] {
        let first = (0..COMPARED).find(|&i| ram[i] != r.ram[i]).unwrap_or(0);
        return Err(format!("{mode:?}: RAM differs from {first:#x}"));
    }
    Ok(be)
}

#[test]
fn regions_match_the_interpreter() {
    let env = |name: &str, d: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let seed = env("PICOQEMU_JIT_REGION_SEED", 0x5EED_2E61_0000_0012);
    let count = env("PICOQEMU_JIT_REGION_COUNT", if cfg!(debug_assertions) { 60 } else { 600 });
    let mut rng = SplitMix64::new(seed);
    let (mut ran, mut compiled, mut jit_insns, mut all_insns) = (0u64, 0u64, 0u64, 0u64);
    for k in 0..count {
        let p = generate_region(&mut rng, catalogue());
        let Some(r) = reference(&p) else { continue };
        let fail = |e: String| panic!("seed {seed:#x} program {k}: {e}\n{p:#?}");
        let be = check(&p, &r, JitMode::Eager, p.cap).unwrap_or_else(fail);
        ran += 1;
        let s = be.jit_stats();
        compiled += u64::from(s.compiled > 0);
        jit_insns += s.instructions;
        all_insns += r.states.len() as u64 - 1;
        check(&p, &r, JitMode::Hot, p.cap).unwrap_or_else(fail);
        for _ in 0..3 {
            let limit = rng.range(1, r.states.len() as u64);
            check(&p, &r, JitMode::Eager, limit).unwrap_or_else(fail);
        }
    }
    eprintln!(
        "regions: {ran} of {count} programs compared, {compiled} compiled, {jit_insns} of {all_insns} instructions in compiled code"
    );
    assert!(ran * 10 >= count * 9, "too many programs skipped: {ran} of {count}");
    assert!(compiled * 10 >= ran * 8, "too few programs compiled: {compiled} of {ran}");
    assert!(jit_insns * 2 >= all_insns, "compiled code ran too little: {jit_insns} of {all_insns}");
}
