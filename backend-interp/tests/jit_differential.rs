//! Randomized differential test of the compiled-block tier (JIT) against the plain interpreter.
//!
//! A deterministic generator (`picoqemu_verify::gen::loops`) builds thousands of small real-mode loop programs with
//! iced-x86 (random eligible instructions, operand sizes, registers, immediates, 16- and 32-bit memory
//! operands with segment overrides, random back-branch kinds) plus programs that force side
//! exits (stores into the code page, self-modifying immediates, offsets at FFFF, the MMIO
//! console, A20 wrap and the high memory area). Each runs on fresh machines under
//! `JitMode::Off`, `JitMode::Eager` and (for a subset) `JitMode::Hot`; the stop reason, the
//! whole `CpuState`, the retired-instruction count, the compared RAM and the MMIO console output
//! must be identical, except status flags the SDM leaves undefined (tracked along the executed
//! path, `picoqemu_verify::flagmask`). Budgeted runs (`max_instructions`) stopping inside loop passes are
//! compared at every stop and resumed to the end.
//!
//! Seed and size: `PICOQEMU_JIT_DIFF_SEED` (default printed), `PICOQEMU_JIT_DIFF_COUNT`.
//! On a mismatch the program is shrunk and printed (bytes, disassembly, initial state).
mod jitgen;

use jitgen::{campaign, flush_campaign, CampaignConfig};

#[test]
fn jit_matches_interpreter_on_random_loops() {
    // A few thousand programs take ~2 s with --release; unoptimised builds run fewer.
    let count = if cfg!(debug_assertions) { 400 } else { 4000 };
    let cfg = CampaignConfig::from_env(0x5EED_0001_D1FF_2024, count);
    campaign(&cfg);
}

/// Fills the compiled-code buffer until it is flushed, on one long-lived backend: results stay
/// those of the interpreter before, across and after the flush.
#[test]
fn jit_code_buffer_flush_keeps_results() {
    let Some(stats) = flush_campaign(0xF1A5_4000) else {
        eprintln!("SKIP: this host cannot run compiled code (JitMode::Off in effect)");
        return;
    };
    eprintln!("flush campaign: {stats:?}");
    assert!(stats.flushes > 0, "the code buffer never filled up: {stats:?}");
}

// ---- Targeted reproducers of mismatches the campaign found (kept as regression tests). ----

use iced_x86::code_asm::*;
use picoqemu_core::{
    flags, Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, Segment, StopReason,
};
use picoqemu_interp::{InterpBackend, JitMode};

/// Runs `code` (loaded at 0000:1000, every interrupt vector → `hlt` at 0000:0500) from `init`
/// under `mode` with `limit` instructions; returns the stop, the state and 64 KiB of RAM at
/// 20000h (where the tests put DS and SS).
fn run_small(
    code: &[u8],
    init: &CpuState,
    mode: JitMode,
    limit: u64,
) -> (StopReason, CpuState, u64, Vec<u8>) {
    let mut m = Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine");
    let ram = m.ram_mut().as_mut_slice();
    for v in 0..256 {
        ram[v * 4..v * 4 + 4].copy_from_slice(&[0x00, 0x05, 0, 0]);
    }
    ram[0x500] = 0xF4;
    ram[0x1000..0x1000 + code.len()].copy_from_slice(code);
    let mut be = InterpBackend::new().with_jit(mode);
    be.set_state(init).expect("set_state");
    let stop = be.run(&mut m, RunLimits::instructions(limit)).expect("run");
    let st = be.state().expect("state");
    let n = be.stats().instructions.unwrap_or(0);
    (stop, st, n, m.ram_mut().bytes()[0x20000..0x30000].to_vec())
}

fn asm16(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("assembler");
    f(&mut a).expect("assembly");
    a.assemble(0x1000).expect("assemble")
}

fn small_init(eflags: u32) -> CpuState {
    let mut s = CpuState { eip: 0x1000, eflags: flags::FIXED | eflags, ..CpuState::default() };
    s.segs[3] = Segment::real(0x2000);
    s.segs[2] = Segment::real(0x2000);
    s.gpr[4] = 0x8000;
    s
}

/// Compiled loop whose flags are dead at its head (every flag is written before it is read):
/// an instruction budget that ends between two passes must still show the guest's flags, not
/// those of the block's own budget check (`sub r10, k`).
#[test]
fn budget_stop_between_compiled_passes_keeps_guest_flags() {
    // head: sub ah, bh ; jmp head
    let code = asm16(|a| {
        let mut head = a.create_label();
        a.set_label(&mut head)?;
        a.sub(ah, bh)?;
        a.jmp(head)
    });
    let mut init = small_init(flags::OF | flags::SF | flags::AF | flags::CF);
    init.gpr[3] = 2; // BH = 0, BL = 2
    for limit in [4, 9, 10, 11, 64] {
        let off = run_small(&code, &init, JitMode::Off, limit);
        let jit = run_small(&code, &init, JitMode::Eager, limit);
        assert_eq!(off.0, StopReason::BudgetExhausted);
        assert_eq!(
            (jit.0, jit.1, jit.2),
            (off.0, off.1, off.2),
            "budget {limit}: compiled tier differs (EFLAGS {:#x} vs {:#x})",
            jit.1.eflags,
            off.1.eflags
        );
    }
}

/// Same block shape, ended by a side exit on a later pass (a word read at DS:FFFF, which the
/// interpreter turns into #GP): the FLAGS image the fault pushes must be the guest's.
#[test]
fn fault_after_side_exit_pushes_guest_flags() {
    // head: mov ax, [si] ; add si, 4000h ; jmp head      (SI = 7FFFh: faults in pass 3)
    let code = asm16(|a| {
        let mut head = a.create_label();
        a.set_label(&mut head)?;
        a.mov(ax, word_ptr(si))?;
        a.add(si, 0x4000)?;
        a.jmp(head)
    });
    let mut init = small_init(0);
    init.gpr[6] = 0x7FFF;
    let off = run_small(&code, &init, JitMode::Off, 1000);
    let jit = run_small(&code, &init, JitMode::Eager, 1000);
    assert_eq!(off.0, StopReason::Halted);
    assert_eq!(off.1.eip, 0x501, "the reference run should end in the #GP handler");
    let top = (off.1.gpr[4] & 0xFFFF) as usize;
    let pushed = |r: &[u8]| u16::from_le_bytes([r[top + 4], r[top + 5]]);
    assert_eq!(
        pushed(&jit.3),
        pushed(&off.3),
        "FLAGS pushed by #GP: compiled tier {:#06x}, interpreter {:#06x}",
        pushed(&jit.3),
        pushed(&off.3)
    );
    assert_eq!((jit.0, jit.1, jit.2), (off.0, off.1, off.2));
    assert!(jit.3 == off.3, "RAM differs");
}

/// A compiled loop (on its own page) that stores into the immediate of an instruction on
/// another page that is still cached (decoded earlier and run again after the loop): the store
/// must leave compiled code so that the interpreter drops the stale decode. The random
/// programs cannot reach this: a loop that rewrites code on its first, interpreted pass is
/// never compiled.
#[test]
fn compiled_store_into_cached_code_elsewhere_is_seen() {
    //            (DI = 2)
    // 0000:1000  outer: add word [0F00h], 1111h      ; immediate at 1004h
    //                   dec di
    //                   jz done
    //                   mov cx, 6
    //                   mov bx, 1004h - 4 * 100h
    //                   jmp inner
    //            done:  hlt
    // 0000:2000  inner: mov [cs:bx], cl                ; passes 1-4 write page 0, pass 5
    //                                                  ; writes 1004h (CL = 2)
    //                   add bx, 100h
    //                   loop inner
    //                   jmp outer
    // Assemble the two pieces at their addresses by hand (the gap is zero-filled).
    let piece1 = asm16(|a| {
        let mut outer = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut outer)?;
        a.add(word_ptr(0x0F00), 0x1111)?;
        a.dec(di)?;
        a.jz(done)?;
        a.mov(cx, 6u32)?;
        a.mov(bx, 0x1004u32 - 4 * 0x100)?;
        a.jmp(0x2000u64)?;
        a.set_label(&mut done)?;
        a.hlt()
    });
    let piece2 = {
        let mut a = CodeAssembler::new(16).expect("assembler");
        let mut inner = a.create_label();
        a.set_label(&mut inner).expect("label");
        a.mov(byte_ptr(bx).cs(), cl).expect("mov");
        a.add(bx, 0x100).expect("add");
        a.loop_(inner).expect("loop");
        a.jmp(0x1000u64).expect("jmp");
        a.assemble(0x2000).expect("assemble")
    };
    assert_eq!(&piece1[..2], &[0x81, 0x06], "add word [0F00h], imm16 expected at 1000h");
    let mut code = piece1.clone();
    code.resize(0x1000, 0);
    code.extend_from_slice(&piece2);
    let mut init = small_init(0);
    init.gpr[7] = 2;
    let off = run_small(&code, &init, JitMode::Off, 10_000);
    let jit = run_small(&code, &init, JitMode::Eager, 10_000);
    assert_eq!(off.0, StopReason::Halted);
    let acc = |r: &[u8]| u16::from_le_bytes([r[0x0F00], r[0x0F01]]);
    assert_eq!(acc(&off.3), 0x1111 + 0x1102, "interpreter: the second add uses the rewritten immediate");
    assert_eq!(acc(&jit.3), acc(&off.3), "compiled tier ran a stale decode");
    assert_eq!((jit.0, jit.1, jit.2), (off.0, off.1, off.2));
}
