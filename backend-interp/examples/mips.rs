//! Measures the interpreter's speed on the issue-6 compute loop (10 instructions per
//! iteration: load, add, xor, rotate, store, add, advance, wrap, dec, jnz) and on REP MOVSW.
//! Run with `cargo run --release -p picoqemu-interp --example mips`.
use std::time::Instant;

use iced_x86::code_asm::*;
use picoqemu_core::{Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, StopReason};
use picoqemu_interp::{InterpBackend, JitMode};

fn build(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("assembler");
    f(&mut a).expect("asm");
    a.assemble(0).expect("assemble")
}

/// This process's user+system CPU time in seconds (Linux `/proc/self/stat`), so that a
/// busy shared machine does not distort the figure; `None` elsewhere.
fn cpu_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    // `MIPS_ITERS` overrides the iteration count (small values for callgrind).
    let iters: u32 = std::env::var("MIPS_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000_000);
    let code = build(|a| {
        let mut l = a.create_label();
        a.mov(ecx, iters)?;
        a.xor(si, si)?;
        a.set_label(&mut l)?;
        a.mov(ax, word_ptr(si + 0x1000))?;
        a.add(ax, bx)?;
        a.xor(ax, dx)?;
        a.rol(ax, 1u32)?;
        a.mov(word_ptr(si + 0x1000), ax)?;
        a.add(bx, ax)?;
        a.add(si, 2u32)?;
        a.and(si, 0x0FFEu32)?;
        a.dec(ecx)?;
        a.jnz(l)?;
        a.hlt()?;
        Ok(())
    });
    let mut st = CpuState::default();
    for s in picoqemu_core::SegReg::ALL {
        st.set_seg(s, 0x1000);
    }
    // Both tiers (`MIPS_JIT=off` skips the compiled one); their results must agree.
    let modes: &[JitMode] = match std::env::var("MIPS_JIT").as_deref() {
        Ok("off") => &[JitMode::Off],
        Ok("only") => &[JitMode::Hot],
        _ => &[JitMode::Off, JitMode::Hot],
    };
    let mut results = Vec::new();
    for &mode in modes {
        let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
        m.ram_mut().write(0x10000, &code).expect("code");
        let mut be = InterpBackend::new().with_jit(mode);
        be.set_state(&st).expect("state");
        let t = Instant::now();
        let c0 = cpu_time();
        let stop = be.run(&mut m, RunLimits::UNBOUNDED).unwrap_or_else(StopReason::from);
        let dt = t.elapsed().as_secs_f64();
        let cpu = cpu_time().zip(c0).map(|(a, b)| a - b);
        assert_eq!(stop, StopReason::Halted);
        let n = be.stats().instructions.unwrap_or(0);
        let tier = format!("{:?}", be.jit_mode());
        println!(
            "compute [jit {tier}]: {n} instructions in {dt:.3} s wall = {:.0} MIPS",
            n as f64 / dt / 1e6
        );
        if let Some(c) = cpu.filter(|&c| c > 0.0) {
            println!(
                "compute [jit {tier}]: {c:.2} s CPU time = {:.0} MIPS per CPU second",
                n as f64 / c / 1e6
            );
        }
        println!("compute [jit {tier}]: {:?}", be.jit_stats());
        let mut buf = vec![0u8; 0x2000];
        m.ram().read(0x10000, &mut buf).expect("ram");
        results.push((be.state().expect("state"), buf, n));
    }
    if let [(a, ra, na), (b, rb, nb)] = &results[..] {
        assert_eq!(a, b, "interpreter and compiled tier disagree on the CPU state");
        assert!(ra == rb, "interpreter and compiled tier disagree on memory");
        assert_eq!(na, nb, "instruction counts differ");
        println!("compute: both tiers agree (state, memory, instruction count)");
    }

    if std::env::var_os("MIPS_COMPUTE_ONLY").is_some() {
        return;
    }
    let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
    let mut be = InterpBackend::new();
    // rep movsw of 4 KiB blocks, 20000 times.
    let reps: u32 = 20_000;
    let code = build(|a| {
        let mut l = a.create_label();
        a.mov(edx, reps)?;
        a.set_label(&mut l)?;
        a.xor(si, si)?;
        a.mov(di, 0x8000u32)?;
        a.mov(cx, 2048u32)?;
        a.rep().movsw()?;
        a.dec(edx)?;
        a.jnz(l)?;
        a.hlt()?;
        Ok(())
    });
    m.ram_mut().write(0x10000, &code).expect("code");
    let mut st = CpuState::default();
    for s in picoqemu_core::SegReg::ALL {
        st.set_seg(s, 0x1000);
    }
    st.set_seg(picoqemu_core::SegReg::Ds, 0x2000);
    st.set_seg(picoqemu_core::SegReg::Es, 0x3000);
    be.set_state(&st).expect("state");
    let t = Instant::now();
    let stop = be.run(&mut m, RunLimits::UNBOUNDED).unwrap_or_else(StopReason::from);
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(stop, StopReason::Halted);
    let bytes = reps as f64 * 4096.0;
    println!("rep movsw: {:.0} MB/s", bytes / dt / 1e6);
}
