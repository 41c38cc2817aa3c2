//! Whole-guest tests of the interpreter: the article's program, a COM1 serial guest with
//! debug exit, self-modifying code, budgets and timeouts. Guests are built here from source
//! with iced-x86's `code_asm` (or are the shared article binary).
use std::time::Duration;

use iced_x86::code_asm::*;
use picoqemu_core::{
    load_image, Backend, CpuState, ImageKind, IoBus, Machine, MachineConfig, RunLimits, StopReason,
};
use picoqemu_interp::InterpBackend;

fn machine() -> Machine {
    Machine::new(MachineConfig::default(), IoBus::capturing()).expect("machine")
}

fn assemble(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, origin: u64) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("16-bit assembler");
    f(&mut a).expect("assembly");
    a.assemble(origin).expect("assemble")
}

fn run(m: &mut Machine, st: &CpuState, limits: RunLimits) -> (StopReason, CpuState, InterpBackend) {
    let mut be = InterpBackend::new();
    be.set_state(st).expect("set_state");
    let stop = be.run(m, limits).expect("run");
    let s = be.state().expect("state");
    (stop, s, be)
}

const HELLO_ROWS: [&str; 5] = [
    r" _   _      _ _        __        __         _     _ _",
    r"| | | | ___| | | ___   \ \      / /__  _ __| | __| | |",
    r"| |_| |/ _ \ | |/ _ \   \ \ /\ / / _ \| '__| |/ _` | |",
    r"|  _  |  __/ | | (_) |   \ V  V / (_) | |  | | (_| |_|",
    r"|_| |_|\___|_|_|\___/     \_/\_/ \___/|_|  |_|\__,_(_)",
];

#[test]
fn article_hello_world_screen() {
    let Some(path) = picoqemu_verify::shared::require("guests/seed_hello.bin") else { return };
    let image = std::fs::read(&path).expect("seed_hello.bin");
    let mut m = machine();
    let st = load_image(&mut m, &image, ImageKind::Raw).expect("load");
    let (stop, _, be) = run(&mut m, &st, RunLimits::timeout(Duration::from_secs(10)));
    assert_eq!(stop, StopReason::Halted);
    let screen = m.screen_text();
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(&lines[..5], &HELLO_ROWS);
    assert!(lines[5..].iter().all(|l| l.trim().is_empty()));
    // Every cell has attribute 0x0A.
    let ram = m.ram_mut().bytes();
    assert!((0..2000).all(|i| ram[0xB8000 + 2 * i + 1] == 0x0A));
    assert!(be.stats().instructions.unwrap_or(0) > 4000);
}

/// A boot sector that initialises COM1, prints `msg` with LSR polling and exits with `code`.
fn serial_guest(msg: &str, code: u8) -> Vec<u8> {
    let mut bytes = assemble(
        |a| {
            let mut next = a.create_label();
            let mut wait = a.create_label();
            let mut done = a.create_label();
            a.xor(ax, ax)?;
            a.mov(ds, ax)?;
            // 115200 8N1: DLAB, divisor 1, 8 bits
            a.mov(dx, 0x3FBu32)?;
            a.mov(al, 0x80u32)?;
            a.out(dx, al)?;
            a.mov(dx, 0x3F8u32)?;
            a.mov(al, 1u32)?;
            a.out(dx, al)?;
            a.mov(dx, 0x3F9u32)?;
            a.xor(al, al)?;
            a.out(dx, al)?;
            a.mov(dx, 0x3FBu32)?;
            a.mov(al, 3u32)?;
            a.out(dx, al)?;
            a.mov(si, 0x7D00u32)?; // the text is placed at offset 0x100
            a.set_label(&mut next)?;
            a.lodsb()?;
            a.test(al, al)?;
            a.jz(done)?;
            a.mov(bl, al)?;
            a.set_label(&mut wait)?;
            a.mov(dx, 0x3FDu32)?;
            a.in_(al, dx)?;
            a.test(al, 0x20u32)?;
            a.jz(wait)?;
            a.mov(dx, 0x3F8u32)?;
            a.mov(al, bl)?;
            a.out(dx, al)?;
            a.jmp(next)?;
            a.set_label(&mut done)?;
            a.mov(al, code as u32)?;
            a.out(0xF4u32, al)?;
            a.hlt()?;
            Ok(())
        },
        0x7C00,
    );
    assert!(bytes.len() <= 0x100 && msg.len() < 0x100);
    bytes.resize(512, 0);
    bytes[0x100..0x100 + msg.len()].copy_from_slice(msg.as_bytes());
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    bytes
}

#[test]
fn serial_guest_prints_and_exits() {
    let mut m = machine();
    let st = load_image(&mut m, &serial_guest("Hello, COM1!\n", 0x21), ImageKind::Boot).expect("load");
    let (stop, _, _) = run(&mut m, &st, RunLimits::timeout(Duration::from_secs(10)));
    assert_eq!(stop, StopReason::DebugExit(0x21));
    assert_eq!(stop.exit_status(), 0x43);
    assert_eq!(m.bus().uart().out.captured(), b"Hello, COM1!\n");
}

/// A guest at 1000:0000 with every segment register 0x1000 and SP = 0x8000 (the IVT at 0
/// stays free).
fn raw_guest(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> (Machine, CpuState) {
    let code = assemble(f, 0);
    let mut m = machine();
    m.ram_mut().write(0x10000, &code).expect("code");
    let mut st = CpuState::default();
    for s in picoqemu_core::SegReg::ALL {
        st.set_seg(s, 0x1000);
    }
    st.gpr[4] = 0x8000;
    (m, st)
}

#[test]
fn self_modifying_next_instruction() {
    // The guest patches the immediate of the very next instruction (already decoded and
    // cached as part of the same block) before executing it.
    let (mut m, st) = raw_guest(|a| {
        a.mov(byte_ptr(6), 0x42u32)?; // 0: C6 06 06 00 42: patch the next instruction
        a.mov(al, 0u32)?; // 5: B0 00 -> B0 42
        a.hlt()?;
        Ok(())
    });
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(100));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!(s.gpr[0] & 0xFF, 0x42);
}

#[test]
fn self_modifying_loop_patches_an_immediate() {
    // Each iteration adds the immediate of `add bx, imm16` and then increments that immediate:
    // bx = 1 + 2 + ... + 10 = 55.
    let (mut m, st) = raw_guest(|a| {
        let mut lp = a.create_label();
        a.xor(bx, bx)?; // 0
        a.mov(cx, 10u32)?; // 2
        a.set_label(&mut lp)?;
        a.add(bx, 0x7777u32)?; // 5: 81 C3 iw, immediate patched below (starts at 1)
        a.inc(word_ptr(7))?;
        a.loop_(lp)?;
        a.hlt()?;
        Ok(())
    });
    // "add bx, imm16" is 81 C3 iw; set its initial immediate to 1.
    let ram = &mut m.ram_mut().as_mut_slice()[0x10000..];
    assert_eq!(&ram[5..7], &[0x81, 0xC3]);
    ram[7] = 1;
    ram[8] = 0;
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(1000));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!(s.gpr[3], 55);
}

#[test]
fn code_written_next_to_code_then_rewritten_is_redecoded() {
    // Code and data share a page (as compilers lay them out): the guest stores a routine
    // (`mov ax, imm16; ret`) into a line that held only data, calls it, rewrites the immediate
    // with a MOV and then with REP STOSB (the string fast path), calling it after each;
    // stores to a data line of the same page in between must not disturb anything.
    // bx = 5 + 7 + 9 = 21.
    let (mut m, st) = raw_guest(|a| {
        let mut lp = a.create_label();
        a.mov(byte_ptr(0x400), 0xB8u32)?;
        a.mov(word_ptr(0x401), 5u32)?;
        a.mov(byte_ptr(0x403), 0xC3u32)?;
        a.call(0x400u64)?;
        a.mov(bx, ax)?;
        a.mov(cx, 100u32)?;
        a.set_label(&mut lp)?;
        a.inc(word_ptr(0x800))?; // data on the code page, another line
        a.loop_(lp)?;
        a.mov(word_ptr(0x401), 7u32)?;
        a.call(0x400u64)?;
        a.add(bx, ax)?;
        a.mov(di, 0x401u32)?;
        a.mov(al, 9u32)?;
        a.mov(cx, 1u32)?;
        a.rep().stosb()?;
        a.call(0x400u64)?;
        a.add(bx, ax)?;
        a.hlt()?;
        Ok(())
    });
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(10_000));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!((s.gpr[3], m.ram().read_vec(0x10800, 2).ok()), (21, Some(vec![100, 0])));
}

#[test]
fn code_changed_between_runs_is_redecoded() {
    let (mut m, st) = raw_guest(|a| {
        a.mov(ax, 1u32)?;
        a.hlt()?;
        Ok(())
    });
    let mut be = InterpBackend::new();
    be.set_state(&st).expect("set_state");
    assert_eq!(be.run(&mut m, RunLimits::UNBOUNDED).expect("run"), StopReason::Halted);
    assert_eq!(be.state().expect("state").gpr[0], 1);
    m.ram_mut().as_mut_slice()[0x10001] = 7; // mov ax, 7
    be.set_state(&st).expect("set_state");
    assert_eq!(be.run(&mut m, RunLimits::UNBOUNDED).expect("run"), StopReason::Halted);
    assert_eq!(be.state().expect("state").gpr[0], 7);
}

#[test]
fn budget_and_single_step_and_timeout() {
    let (mut m, st) = raw_guest(|a| {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        a.inc(ax)?;
        a.jmp(l)?;
        Ok(())
    });
    let (stop, s, be) = run(&mut m, &st, RunLimits::instructions(1));
    assert_eq!(stop, StopReason::StepDone);
    assert_eq!((s.gpr[0], s.eip), (1, 1));
    assert_eq!(be.stats().instructions, Some(1));
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(1001));
    assert_eq!(stop, StopReason::BudgetExhausted);
    assert_eq!(s.gpr[0] & 0xFFFF, 501);
    let (stop, _, _) = run(&mut m, &st, RunLimits::timeout(Duration::from_millis(50)));
    assert_eq!(stop, StopReason::Timeout);
}

#[test]
fn trap_flag_single_steps_through_int1_handler() {
    // IVT[1] -> 0000:0200 where the handler counts in DX and IRETs.
    let (mut m, st) = raw_guest(|a| {
        a.pushf()?;
        a.pop(ax)?;
        a.or(ax, 0x100u32)?;
        a.push(ax)?;
        a.popf()?; // TF on: traps start after the next instruction
        a.nop()?;
        a.nop()?;
        a.nop()?;
        a.hlt()?;
        Ok(())
    });
    m.ram_mut().write(4, &[0x00, 0x02, 0x00, 0x00]).expect("ivt");
    m.ram_mut().write(0x200, &[0x42, 0xCF]).expect("handler: inc dx ; iret");
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(1000));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!(s.gpr[2], 3); // one trap after each NOP; none after HLT
}

#[test]
fn unsupported_instruction_stops_with_bytes() {
    // movaps xmm0, xmm1 (0F 28 C1) is not implemented.
    let mut m = machine();
    m.ram_mut().write(0x10, &[0x40, 0x0F, 0x28, 0xC1]).expect("code");
    let st = CpuState { eip: 0x10, ..CpuState::default() };
    let (stop, s, _) = run(&mut m, &st, RunLimits::UNBOUNDED);
    match stop {
        StopReason::Unsupported { cs: sel, ip, ref bytes } => {
            assert_eq!((sel, ip), (0u16, 0x11u32));
            assert_eq!(&bytes.as_slice()[..3], &[0x0F, 0x28, 0xC1]);
        }
        other => panic!("unexpected stop {other:?}"),
    }
    assert_eq!(s.gpr[0], 1);
}

#[test]
fn mmio_accesses_reach_the_bus() {
    let (mut m, mut st) = raw_guest(|a| {
        a.mov(ax, 0xD000u32)?;
        a.mov(es, ax)?;
        a.mov(byte_ptr(0).es(), 0x4Fu32)?; // 'O' to the MMIO console
        a.mov(byte_ptr(0).es(), 0x4Bu32)?; // 'K'
        a.mov(eax, dword_ptr(4).es())?; // byte counter
        a.hlt()?;
        Ok(())
    });
    m.bus_mut()
        .register(picoqemu_core::devices::MmioConsole::new(0xD0000, picoqemu_core::devices::Sink::capture()))
        .expect("MMIO console");
    st.gpr[0] = 0;
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(100));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!(m.bus().mmio_console().map(|c| c.out.captured().to_vec()), Some(b"OK".to_vec()));
    assert_eq!(s.gpr[0], 2);
    assert_eq!(m.ram_mut().bytes()[0xD0000], 0, "MMIO writes must not land in RAM");
}

#[test]
fn a20_wrap_option() {
    // FFFF:0010 is 0x100000 (HMA) by default and 0x00000 with A20 wrapping.
    let prog = |a: &mut CodeAssembler| {
        a.mov(ax, 0xFFFFu32)?;
        a.mov(ds, ax)?;
        a.mov(byte_ptr(0x10), 0x77u32)?;
        a.hlt()?;
        Ok(())
    };
    let (mut m, st) = raw_guest(prog);
    let (stop, _, _) = run(&mut m, &st, RunLimits::instructions(100));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!((m.ram_mut().bytes()[0x10_0000], m.ram_mut().bytes()[0]), (0x77, 0));
    let (mut m, st) = raw_guest(prog);
    let mut be = InterpBackend::new().with_a20_wrap(true);
    be.set_state(&st).expect("state");
    assert_eq!(be.run(&mut m, RunLimits::instructions(100)).expect("run"), StopReason::Halted);
    assert_eq!((m.ram_mut().bytes()[0x10_0000], m.ram_mut().bytes()[0]), (0, 0x77));
}

#[test]
fn mov_ss_holds_off_the_single_step_trap() {
    // With TF set, the trap after MOV SS is held off until the next instruction retires.
    let (mut m, st) = raw_guest(|a| {
        a.pushf()?;
        a.pop(ax)?;
        a.or(ax, 0x100u32)?;
        a.push(ax)?;
        a.popf()?;
        a.nop()?; // trap 1
        a.mov(bx, ss)?; // trap 2
        a.mov(ss, bx)?; // no trap here
        a.nop()?; // trap 3
        a.hlt()?;
        Ok(())
    });
    m.ram_mut().write(4, &[0x00, 0x02, 0x00, 0x00]).expect("ivt");
    m.ram_mut().write(0x200, &[0x42, 0xCF]).expect("handler: inc dx ; iret");
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(1000));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!(s.gpr[2], 3);
}

#[test]
fn thirty_two_bit_forms() {
    let (mut m, st) = raw_guest(|a| {
        a.mov(ebx, 0x100u32)?;
        a.mov(ecx, 3u32)?;
        a.mov(dword_ptr(ebx + ecx * 4 + 0x10), 0x1234_5678u32)?; // [0x11C]
        a.mov(eax, dword_ptr(0x11Cu32))?;
        a.bswap(eax)?;
        a.pushad()?;
        a.xor(eax, eax)?;
        a.popad()?;
        a.shld(edx, eax, 8u32)?;
        a.movzx(esi, byte_ptr(0x11Cu32))?;
        a.imul_3(edi, esi, -2i32)?;
        a.hlt()?;
        Ok(())
    });
    let (stop, s, _) = run(&mut m, &st, RunLimits::instructions(100));
    assert_eq!(stop, StopReason::Halted);
    assert_eq!(s.gpr[0], 0x7856_3412);
    assert_eq!(s.gpr[2], 0x78);
    assert_eq!(s.gpr[6], 0x78);
    assert_eq!(s.gpr[7], (-0xF0i32) as u32);
    assert_eq!(s.gpr[4], 0x8000);
}
