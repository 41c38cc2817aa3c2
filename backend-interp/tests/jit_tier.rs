//! The compiled-block tier against the interpreter on loops chosen to hit each of its edges:
//! budgets ending inside a pass, side exits (MMIO, self-modifying code, a segment-limit fault,
//! A20 wrap), flags live around the loop, declined blocks, every back-branch kind. Each program
//! runs with `JitMode::Off` and with the tier on; stop reason, CPU state, instruction count,
//! memory and device output must be identical, and the tier must have done the work it should.
use iced_x86::code_asm::*;
use picoqemu_core::{
    devices::{MmioConsole, Sink},
    Backend, CpuState, IoBus, Machine, MachineConfig, RunLimits, SegReg, StopReason,
};
use picoqemu_interp::{InterpBackend, JitMode, JitStats};

const CODE: u64 = 0x10000;
const DATA_SEG: u16 = 0x2000;
const HANDLER: u16 = 0x0500;
const CONSOLE: u64 = 0xD0000;

fn asm(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("assembler");
    f(&mut a).expect("asm");
    a.assemble(0).expect("assemble")
}

struct Outcome {
    stops: Vec<StopReason>,
    states: Vec<CpuState>,
    instructions: u64,
    ram: Vec<u8>,
    console: Vec<u8>,
    jit: JitStats,
}

/// Runs `code` at 1000:0000 (DS = ES = 2000, SS = 3000, SP = FFFE; every IVT vector points at
/// a HLT at 0000:0500) in chunks of `chunk` instructions until it halts or faults out.
fn run(
    code: &[u8],
    mode: JitMode,
    chunk: Option<u64>,
    a20_wrap: bool,
    init: impl Fn(&mut CpuState),
) -> Outcome {
    let config = MachineConfig { a20_wrap, ..MachineConfig::default() };
    let mut bus = IoBus::capturing();
    bus.register(MmioConsole::new(CONSOLE, Sink::capture())).expect("MMIO console");
    let mut m = Machine::new(config, bus).expect("machine");
    m.ram_mut().write(CODE, code).expect("code");
    for v in 0..32u64 {
        m.ram_mut().write(v * 4, &[HANDLER as u8, (HANDLER >> 8) as u8, 0, 0]).expect("ivt");
    }
    m.ram_mut().write(HANDLER as u64, &[0xF4]).expect("handler");
    for i in 0..0x100u64 {
        m.ram_mut().write(0x20000 + i * 2, &((i * 0x9E37) as u16).to_le_bytes()).expect("data");
    }
    let mut st = CpuState::default();
    st.set_seg(SegReg::Cs, 0x1000);
    st.set_seg(SegReg::Ds, DATA_SEG);
    st.set_seg(SegReg::Es, DATA_SEG);
    st.set_seg(SegReg::Ss, 0x3000);
    st.gpr[4] = 0xFFFE;
    init(&mut st);
    let mut be = InterpBackend::new().with_jit(mode);
    be.set_state(&st).expect("state");
    let mut stops = Vec::new();
    let mut states = Vec::new();
    // Unchunked runs get a generous budget so that a runaway program fails instead of hanging.
    // (at most 2 M instructions in chunks).
    let rounds = chunk.map_or(1, |c| (2_000_000 / c).max(1));
    for _ in 0..rounds {
        let limits = RunLimits { max_instructions: chunk.or(Some(50_000_000)), ..RunLimits::UNBOUNDED };
        let stop = be.run(&mut m, limits).expect("run");
        stops.push(stop.clone());
        states.push(be.state().expect("state"));
        if !matches!(stop, StopReason::BudgetExhausted | StopReason::StepDone) {
            break;
        }
    }
    let mut ram = vec![0u8; 0x40000];
    m.ram().read(0, &mut ram).expect("ram");
    let console = m.bus().mmio_console().map(|c| c.out.captured().to_vec()).unwrap_or_default();
    Outcome {
        stops,
        states,
        instructions: be.stats().instructions.unwrap_or(0),
        ram,
        console,
        jit: be.jit_stats(),
    }
}

/// Runs `code` without and with the tier and checks both did the same; returns the tier's run.
fn agree(
    code: &[u8],
    mode: JitMode,
    chunk: Option<u64>,
    a20: bool,
    init: impl Fn(&mut CpuState) + Copy,
) -> Outcome {
    let off = run(code, JitMode::Off, chunk, a20, init);
    let on = run(code, mode, chunk, a20, init);
    assert_eq!(off.stops.len(), on.stops.len(), "number of stops");
    for (i, (a, b)) in off.states.iter().zip(&on.states).enumerate() {
        assert_eq!(off.stops[i], on.stops[i], "stop {i}");
        assert_eq!(a, b, "state after stop {i} ({:?})\ninterp:\n{a}\ncompiled:\n{b}", off.stops[i]);
    }
    assert_eq!(off.instructions, on.instructions, "instruction count");
    assert!(off.ram == on.ram, "memory differs");
    assert_eq!(off.console, on.console, "MMIO console output");
    assert_eq!(off.jit, JitStats::default());
    on
}

fn tier_available() -> bool {
    let on = InterpBackend::new().with_jit(JitMode::Eager).jit_mode() == JitMode::Eager;
    if !on {
        eprintln!("SKIP (tier checks only): this host cannot run compiled code");
    }
    on
}

fn compute_loop(iters: u32) -> Vec<u8> {
    asm(|a| {
        let mut top = a.create_label();
        a.mov(ecx, iters)?;
        a.mov(dx, 0x1234u32)?;
        a.set_label(&mut top)?;
        a.mov(ax, word_ptr(bx + 0x100))?;
        a.add(ax, dx)?;
        a.xor(dx, ax)?;
        a.rol(dx, 3u32)?;
        a.mov(word_ptr(bx + 0x100), dx)?;
        a.add(si, ax)?;
        a.add(bx, 2u32)?;
        a.and(bx, 0x0FFEu32)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.hlt()
    })
}

#[test]
fn hot_loop_is_compiled_and_agrees() {
    let out = agree(&compute_loop(20_000), JitMode::Hot, None, false, |_| {});
    assert_eq!(out.stops, vec![StopReason::Halted]);
    assert_eq!(out.instructions, 20_000 * 10 + 3);
    if tier_available() {
        assert_eq!(out.jit.compiled, 1, "{:?}", out.jit);
        assert!(out.jit.instructions > 190_000, "compiled code retired too little: {:?}", out.jit);
    }
}

#[test]
fn budgets_ending_inside_a_pass_agree() {
    let code = compute_loop(40);
    for chunk in [1u64, 2, 3, 7, 9, 10, 11, 23, 64] {
        let out = agree(&code, JitMode::Eager, Some(chunk), false, |_| {});
        assert_eq!(out.stops.last(), Some(&StopReason::Halted), "chunk {chunk}");
        if tier_available() && chunk > 10 {
            assert!(out.jit.instructions > 0, "chunk {chunk}: {:?}", out.jit);
        }
    }
}

#[test]
fn mmio_store_inside_the_loop_leaves_and_resumes_in_order() {
    // ES:0 is the MMIO console's data byte; the store sits in the middle of the pass.
    let code = asm(|a| {
        let mut top = a.create_label();
        a.mov(ax, (CONSOLE >> 4) as u32)?;
        a.mov(fs, ax)?;
        a.mov(cx, 200u32)?;
        a.xor(bx, bx)?;
        a.set_label(&mut top)?;
        a.mov(al, bl)?;
        a.add(al, b'a' as u32)?;
        a.mov(byte_ptr(0).fs(), al)?;
        a.inc(bx)?;
        a.and(bx, 15u32)?;
        a.loop_(top)?;
        a.hlt()
    });
    let out = agree(&code, JitMode::Eager, None, false, |_| {});
    let want: Vec<u8> = (0..200).map(|i| b'a' + (i % 16) as u8).collect();
    assert_eq!(out.console, want);
    if tier_available() {
        assert_eq!(out.jit.compiled, 1, "{:?}", out.jit);
        // Every run leaves at the store; the block is handed back to the interpreter.
        assert!(out.jit.runs <= 16, "{:?}", out.jit);
    }
}

#[test]
fn self_modifying_loop_agrees() {
    // The loop rewrites the immediate of its own `add ax, imm16` through CS.
    let code = asm(|a| {
        let mut top = a.create_label();
        let mut patch = a.create_label();
        a.mov(cx, 50u32)?;
        a.xor(ax, ax)?;
        a.mov(di, 0u32)?;
        a.set_label(&mut top)?;
        a.inc(di)?;
        a.mov(word_ptr(0).cs(), di)?;
        a.set_label(&mut patch)?;
        a.add(ax, 0x7777u32)?;
        a.loop_(top)?;
        a.hlt()
    });
    // Point the store at the immediate of `add ax, imm16` (opcode 05 at a known offset).
    let at = code.iter().position(|&b| b == 0x05).expect("add ax, imm16") as u16 + 1;
    let mut code = code;
    let store = code.windows(2).position(|w| w == [0x2E, 0x89]).expect("cs: mov [disp16], di");
    code[store + 3..store + 5].copy_from_slice(&at.to_le_bytes());
    let out = agree(&code, JitMode::Eager, None, false, |_| {});
    assert_eq!(out.stops, vec![StopReason::Halted]);
    assert_eq!(out.states[0].gpr[0], (1..=50u32).sum::<u32>() & 0xFFFF);
}

#[test]
fn patching_region_code_no_block_was_decoded_from_is_seen() {
    // The region at `head` reaches `far` (a forward branch, 80 bytes away) and its back
    // edge; the first pass never runs `far`, so no cached block covers it. Between the
    // passes the program rewrites far's immediate: the compiled region must be dropped.
    let code = asm(|a| {
        let (mut outer, mut head, mut far, mut done) =
            (a.create_label(), a.create_label(), a.create_label(), a.create_label());
        a.mov(cx, 2u32)?;
        a.xor(si, si)?;
        a.xor(bx, bx)?;
        a.set_label(&mut outer)?;
        a.mov(dx, 20u32)?;
        a.set_label(&mut head)?;
        a.inc(ax)?;
        a.test(si, si)?;
        a.jnz(far)?;
        a.dec(dx)?;
        a.jnz(head)?;
        a.jmp(done)?;
        for _ in 0..80 {
            a.nop()?;
        }
        a.set_label(&mut far)?;
        a.db(&[0x81, 0xC3, 0x11, 0x11])?; // add bx, 0x1111
        a.dec(dx)?;
        a.jnz(head)?;
        a.jmp(done)?;
        for _ in 0..80 {
            a.nop()?;
        }
        a.set_label(&mut done)?;
        a.mov(word_ptr(0).cs(), 0x2222u32)?; // patched below to point at far's immediate
        a.mov(si, 1u32)?;
        a.loop_(outer)?;
        a.hlt()
    });
    let mut code = code;
    let far = code.windows(4).position(|w| w == [0x81, 0xC3, 0x11, 0x11]).expect("add bx, 0x1111") as u16;
    let store = code.windows(3).position(|w| w == [0x2E, 0xC7, 0x06]).expect("mov cs:[disp16], imm16");
    code[store + 3..store + 5].copy_from_slice(&(far + 2).to_le_bytes());
    let out = agree(&code, JitMode::Eager, None, false, |_| {});
    assert_eq!(out.stops, vec![StopReason::Halted]);
    assert_eq!(out.states[0].gpr[3], (20 * 0x2222) & 0xFFFF);
    assert!(out.jit.compiled >= 2, "{:?}", out.jit);
}

#[test]
fn compiled_store_ending_on_a_code_line_is_seen() {
    // A word store at 123F: its first byte is on a line without code, its second byte is the
    // opcode of the subroutine at 1240 (`inc ax` / `inc dx`, alternating; the next page, so
    // the loop's own page stays cached). Compiled code must leave for that store (the last
    // byte's line holds code), or the stale `inc` would run.
    let mut code = asm(|a| {
        let mut top = a.create_label();
        a.mov(cx, 40u32)?;
        a.xor(ax, ax)?;
        a.xor(dx, dx)?;
        a.mov(si, 0x4000u32)?;
        a.set_label(&mut top)?;
        a.xor(si, 0x0200u32)?;
        a.mov(word_ptr(0x123F).cs(), si)?;
        a.call(0x1240u64)?;
        a.loop_(top)?;
        a.hlt()
    });
    code.resize(0x1240, 0);
    code.extend_from_slice(&[0x40, 0xC3]); // 1240: inc ax; ret
    let out = agree(&code, JitMode::Eager, None, false, |_| {});
    assert_eq!(out.stops, vec![StopReason::Halted]);
    assert_eq!((out.states[0].gpr[0] & 0xFFFF, out.states[0].gpr[2] & 0xFFFF), (20, 20));
    assert!(out.jit.compiled >= 1, "{:?}", out.jit);
}

#[test]
fn switch_through_a_jump_table_agrees() {
    // A loop dispatching through `jmp [cs:table + si]` (and `jmp dx`): targets that start runs
    // (after a jmp and padding), one in the middle of a run (left to the interpreter), and
    // one outside the region.
    let mut code = asm(|a| {
        let (mut top, mut next, mut case_a, mut case_b) =
            (a.create_label(), a.create_label(), a.create_label(), a.create_label());
        let (mut mid, mut out, mut done) = (a.create_label(), a.create_label(), a.create_label());
        a.mov(cx, 200u32)?;
        a.xor(ax, ax)?;
        a.xor(bx, bx)?;
        a.xor(dx, dx)?;
        a.set_label(&mut top)?;
        a.mov(si, cx)?;
        a.and(si, 3u32)?;
        a.shl(si, 1u32)?;
        a.jmp(word_ptr(si + 0x7777).cs())?; // the table (patched below)
        a.db(&[0x8D, 0x74, 0x00])?; // lea si, [si + 0] (padding)
        a.set_label(&mut case_a)?;
        a.add(ax, 3u32)?;
        a.jmp(next)?;
        a.nop()?;
        a.set_label(&mut case_b)?;
        a.add(bx, 5u32)?;
        a.set_label(&mut mid)?;
        a.add(bx, 7u32)?;
        a.mov(dx, 0x6666u32)?; // `next` (patched below)
        a.jmp(dx)?;
        a.set_label(&mut next)?;
        a.mov(di, 0x5555u32)?;
        a.loop_(top)?;
        a.jmp(done)?;
        a.set_label(&mut out)?;
        a.add(ax, 1000u32)?;
        a.jmp(next)?;
        a.set_label(&mut done)?;
        a.hlt()?;
        a.db(&[0; 8])
    });
    // Fill the table (case_a, case_b, mid, out) from the assembled code's marker bytes.
    let find = |code: &[u8], pat: &[u8]| {
        code.windows(pat.len()).position(|w| w == pat).unwrap_or_else(|| panic!("{pat:02x?} in {code:02x?}"))
            as u16
    };
    let case_a = find(&code, &[0x05, 0x03, 0x00]);
    let case_b = find(&code, &[0x83, 0xC3, 0x05]);
    let out = find(&code, &[0x05, 0xE8, 0x03]);
    let next = find(&code, &[0xBF, 0x55, 0x55]);
    let table = code.len() - 8;
    for (i, t) in [case_a, case_b, case_b + 3, out].into_iter().enumerate() {
        code[table + 2 * i..table + 2 * i + 2].copy_from_slice(&t.to_le_bytes());
    }
    let at = find(&code, &[0x77, 0x77]) as usize;
    code[at..at + 2].copy_from_slice(&(table as u16).to_le_bytes());
    let at = find(&code, &[0xBA, 0x66, 0x66]) as usize + 1;
    code[at..at + 2].copy_from_slice(&next.to_le_bytes());
    let out = agree(&code, JitMode::Eager, None, false, |_| {});
    assert_eq!(out.stops, vec![StopReason::Halted]);
    let (a, b) = (out.states[0].gpr[0] & 0xFFFF, out.states[0].gpr[3] & 0xFFFF);
    assert_eq!((a, b), (50 * 3 + 50 * 1000, 50 * 12 + 50 * 7));
    assert!(out.jit.compiled >= 1 && out.jit.instructions > 1000, "{:?}", out.jit);
}

#[test]
fn segment_limit_fault_inside_the_loop_pushes_the_same_flags() {
    // SI walks up to FFFF: the word load there faults (#GP) into the HLT handler, and the
    // FLAGS image it pushes must carry the INC's flags, not anything the checks computed.
    let code = asm(|a| {
        let mut top = a.create_label();
        a.mov(si, 0xFFF0u32)?;
        a.set_label(&mut top)?;
        a.inc(si)?;
        a.mov(ax, word_ptr(si))?;
        a.add(bx, ax)?;
        a.cmp(si, 0x1234u32)?;
        a.jne(top)?;
        a.hlt()
    });
    let out = agree(&code, JitMode::Eager, None, false, |_| {});
    assert_eq!(out.stops, vec![StopReason::Halted]);
    assert_eq!(out.states[0].cs(), 0, "the fault handler ran");
    if tier_available() {
        assert!(out.jit.instructions > 0, "{:?}", out.jit);
    }
}

#[test]
fn a20_wrap_is_left_to_the_interpreter() {
    // DS = FFFF: offsets 0x10.. reach 1 MiB and wrap to 0 when A20 is off.
    let code = asm(|a| {
        let mut top = a.create_label();
        a.mov(ax, 0xFFFFu32)?;
        a.mov(ds, ax)?;
        a.mov(cx, 64u32)?;
        a.mov(si, 0x8u32)?;
        a.set_label(&mut top)?;
        a.add(dx, word_ptr(si))?;
        a.mov(word_ptr(si + 0x40), dx)?;
        a.inc(si)?;
        a.loop_(top)?;
        a.hlt()
    });
    for wrap in [false, true] {
        let out = agree(&code, JitMode::Eager, None, wrap, |_| {});
        assert_eq!(out.stops, vec![StopReason::Halted], "a20 wrap {wrap}");
    }
}

#[test]
fn flags_carried_around_the_loop_agree() {
    // CF and OF flow from one pass into the next (ADC/RCL first; DEC keeps CF).
    let code = asm(|a| {
        let mut top = a.create_label();
        a.mov(di, 300u32)?;
        a.mov(ax, 0x8001u32)?;
        a.mov(bx, 0xC003u32)?;
        a.set_label(&mut top)?;
        a.adc(ax, bx)?;
        a.rcl(dx, 1u32)?;
        a.setc(cl)?;
        a.sbb(bx, dx)?;
        a.shl(bx, cl)?;
        a.cmc()?;
        a.dec(di)?;
        a.jnz(top)?;
        a.hlt()
    });
    let out = agree(&code, JitMode::Eager, None, false, |st| st.eflags |= 1);
    if tier_available() {
        assert_eq!(out.jit.compiled, 1, "{:?}", out.jit);
    }
}

#[test]
fn back_branch_kinds_agree() {
    type Build = fn(&mut CodeAssembler, CodeLabel) -> Result<(), IcedError>;
    // (name, the compare before the branch, the branch): LOOPE needs ZF=1 to go on, LOOPNE 0.
    let kinds: [(&str, u32, Build); 6] = [
        ("loop ecx", 0x30, |a, l| {
            a.db(&[0x67])?;
            a.loop_(l)
        }),
        ("loop", 0x30, |a, l| a.loop_(l)),
        ("loope", 0, |a, l| a.loope(l)),
        ("loopne", 0x7FFF, |a, l| a.loopne(l)),
        ("jmp", 0x30, |a, l| a.jmp(l)),
        ("jcc", 0x7FFF, |a, l| a.jb(l)),
    ];
    for (name, cmp_with, back) in kinds {
        let code = asm(|a| {
            let mut top = a.create_label();
            a.mov(ecx, 100u32)?;
            a.set_label(&mut top)?;
            a.add(ax, 3u32)?;
            a.lea(bx, word_ptr(bx + si + 5))?;
            a.imul_3(dx, bx, 7)?;
            if cmp_with == 0 {
                a.cmp(ax, ax)?;
            } else {
                a.cmp(ax, cmp_with)?;
            }
            // `jmp` loops forever: the instruction budget ends it.
            back(a, top)?;
            a.hlt()
        });
        let chunk = if name == "jmp" { Some(5_000) } else { None };
        let off = run(&code, JitMode::Off, chunk, false, |_| {});
        let on = run(&code, JitMode::Eager, chunk, false, |_| {});
        let n = if name == "jmp" { 4 } else { off.stops.len() };
        assert_eq!(off.stops[..n], on.stops[..n], "{name}");
        assert_eq!(off.states[..n], on.states[..n], "{name}");
        if tier_available() {
            assert_eq!(on.jit.compiled, 1, "{name}: {:?}", on.jit);
        }
    }
}

#[test]
fn blocks_the_tier_cannot_express_stay_interpreted() {
    // CH has no host encoding: the block is declined, and everything still agrees.
    let code = asm(|a| {
        let mut top = a.create_label();
        a.mov(di, 50u32)?;
        a.set_label(&mut top)?;
        a.add(ch, al)?;
        a.inc(al)?;
        a.dec(di)?;
        a.jnz(top)?;
        a.hlt()
    });
    let out = agree(&code, JitMode::Eager, None, false, |_| {});
    assert_eq!(out.jit.compiled, 0);
    if tier_available() {
        assert!(out.jit.declined >= 1, "{:?}", out.jit);
    }
}
