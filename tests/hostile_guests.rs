//! Hostile guests on both backends (issue 14): programs that overwrite all of memory, run off
//! the end of RAM, execute garbage, triple-fault, spin forever, use every instruction KVM's
//! emulator here cannot run, halt with interrupts off, take interrupts through a garbage IVT,
//! run `rep` with the count at its maximum, do string I/O to unclaimed ports, touch MMIO
//! outside any device register, or flood the serial port. Each runs the `picoqemu` binary and
//! must end with the documented status and, for a fault or limit, a `picoqemu:` line, never a
//! panic, a host error or a hang. KVM runs skip without /dev/kvm (and fail instead under
//! `PICOQEMU_REQUIRE_KVM=1`). Guests are assembled here with iced-x86's `code_asm`.
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use iced_x86::code_asm::*;
use picoqemu::guests::boot_sector;

mod common;
use common::{kvm_usable, picoqemu};

/// Debug-exit value the guests' fault handler writes (exit status 0xFD).
const HANDLER_EXIT: u8 = 0x7E;
/// Debug-exit value of a guest that reached its end (exit status 0x85).
const DONE_EXIT: u8 = 0x42;

fn status_of(exit: u8) -> i32 {
    i32::from(exit) << 1 | 1
}

/// The backends to run on: the interpreter, and KVM when usable.
fn backends(test: &str) -> Vec<&'static str> {
    let mut v = vec!["interp"];
    if kvm_usable(test) {
        v.push("kvm");
    }
    v
}

/// Assembles a boot sector at 0x7C00.
fn sector(build: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("16-bit assembler");
    build(&mut a).expect("assembling the guest");
    boot_sector(&a.assemble(0x7C00).expect("assembling the guest")).expect("fits a boot sector")
}

/// A sector whose code starts with [`install_fault_handler`].
fn sector_with_handler(build: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let image = sector(|a| {
        install_fault_handler(a)?;
        build(a)
    });
    assert_eq!(image[0], 0xEB, "the handler must follow a short jump");
    assert_eq!(&image[2..4], &[0xB0, HANDLER_EXIT], "the handler is not at {HANDLER_ADDR:#x}");
    image
}

/// Limits that end a never-ending guest: a budget and a timeout on the interpreter, a
/// timeout on KVM (where a budget means single-stepping).
fn limits(backend: &str) -> &'static [&'static str] {
    if backend == "kvm" {
        &["--timeout", "1s"]
    } else {
        &["--max-instructions", "200000", "--timeout", "5s"]
    }
}

fn with<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    a.iter().chain(b).copied().collect()
}

/// Where [`install_fault_handler`] puts the handler: right after its first (short) jump.
const HANDLER_ADDR: u32 = 0x7C02;

/// Points all 32 exception vectors at a handler that writes [`HANDLER_EXIT`] to the
/// debug-exit port. Must come first in the sector (the handler sits at [`HANDLER_ADDR`]).
fn install_fault_handler(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut start = a.create_label();
    a.jmp(start)?;
    a.mov(al, u32::from(HANDLER_EXIT))?;
    a.out(0xF4u32, al)?;
    a.hlt()?;
    a.set_label(&mut start)?;
    a.xor(ax, ax)?;
    a.mov(es, ax)?;
    a.xor(di, di)?;
    a.mov(cx, 32u32)?;
    let mut fill = a.create_label();
    a.set_label(&mut fill)?;
    a.mov(ax, HANDLER_ADDR)?;
    a.stosw()?;
    a.xor(ax, ax)?;
    a.stosw()?;
    a.loop_(fill)
}

fn done(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(al, u32::from(DONE_EXIT))?;
    a.out(0xF4u32, al)?;
    a.hlt()
}

/// Runs `image` (a boot sector) on `backend` with `extra` options.
fn run(name: &str, backend: &str, image: &[u8], extra: &[&str]) -> Output {
    let path = image_path(name, backend, image);
    let mut args = vec!["run", "--backend", backend];
    if !extra.contains(&"--screen") {
        args.extend_from_slice(&["--screen", "none"]);
    }
    args.extend_from_slice(extra);
    args.push(path.to_str().expect("UTF-8 path"));
    picoqemu(&args)
}

fn image_path(name: &str, backend: &str, image: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile_{name}_{backend}.img"));
    std::fs::write(&path, image).expect("writing the image");
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No panic, no host error, a documented status; a `picoqemu:` line for a fault or limit.
fn assert_clean_end(what: &str, out: &Output) -> i32 {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{what}: {err}");
    let status = out.status.code().unwrap_or_else(|| panic!("{what}: killed by a signal: {err}"));
    match status {
        0 => {}
        s if s % 2 == 1 && s != 3 && s != 5 => {}
        3 | 4 => {
            assert!(err.lines().any(|l| l.starts_with("picoqemu: ")), "{what}: no picoqemu: line: {err}")
        }
        other => panic!("{what}: unexpected status {other}: {err}"),
    }
    status
}

#[test]
fn writes_over_all_memory_including_the_bios_area_and_the_text_buffer() {
    // Copies itself to the high memory area (FFFF:0010 = 0x100000), jumps there, fills every
    // byte of the first MiB (IVT, its own old copy, text buffer, BIOS area) with 0x07 'A' and exits.
    let image = sector(|a| {
        a.mov(ax, 0xFFFFu32)?;
        a.mov(es, ax)?;
        a.mov(si, 0x7C00u32)?;
        a.mov(di, 0x0010u32)?;
        a.mov(cx, 256u32)?;
        a.rep().movsw()?;
        // Continue at the copy of `high` below: FFFF:(0x10 + offset of high).
        let mut high = a.create_label();
        a.jmp(high)?; // placeholder jump, replaced by the far jump below at run time
        a.set_label(&mut high)?;
        a.xor(bx, bx)?; // segment counter: 0x0000, 0x1000, ... 0xF000
        let mut seg = a.create_label();
        a.set_label(&mut seg)?;
        a.mov(es, bx)?;
        a.xor(di, di)?;
        a.mov(ax, 0x0741u32)?;
        a.mov(cx, 0x8000u32)?;
        a.rep().stosw()?;
        a.add(bx, 0x1000u32)?;
        a.jnz(seg)?;
        done(a)
    });
    // Patch the short `jmp high` into a far jump to the relocated copy: the fill loop then runs
    // from FFFF:xxxx while it overwrites 0x7C00.
    let image = relocate_jump(image);
    for backend in backends("writes_over_all_memory") {
        let out = run("fill", backend, &image, &["--timeout", "60s", "--screen", "text"]);
        assert_eq!(assert_clean_end(backend, &out), status_of(DONE_EXIT), "{backend}: {}", stderr(&out));
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains(&"A".repeat(80)), "{backend}: the text buffer was not filled: {screen}");
    }
}

/// Replaces the 2-byte `jmp short high` after `rep movsw` with `jmp far FFFF:(0x10 + high-0x7C00)`
/// placed as `push/retf` is not needed: the far jump is 5 bytes, so the code is re-laid out.
fn relocate_jump(image: Vec<u8>) -> Vec<u8> {
    // Layout: mov ax,FFFF (3) mov es,ax (2) mov si (3) mov di (3) mov cx (3) rep movsw (2) = 16,
    // then EB 00 (jmp short +0) at 16..18 and `high` at 18.
    assert_eq!(&image[16..18], &[0xEB, 0x00], "unexpected layout");
    let high = 18usize;
    let mut code = image[..16].to_vec();
    // jmp far FFFF:(0x10 + high + 3), the 3 extra bytes being this jump's growth.
    let target = 0x10 + high + 3;
    code.extend_from_slice(&[0xEA, target as u8, (target >> 8) as u8, 0xFF, 0xFF]);
    code.extend_from_slice(&image[high..510]);
    code.truncate(510);
    boot_sector(&code).expect("fits")
}

#[test]
fn jumps_past_the_end_of_ram() {
    // With the smallest RAM, FFFF:FFFF is the last byte of RAM: a HLT there halts.
    let hlt_at_top = sector(|a| {
        a.mov(ax, 0xFFFFu32)?;
        a.mov(es, ax)?;
        a.mov(byte_ptr(0xFFFF).es(), 0xF4u32)?;
        a.jmp_far(0xFFFF, 0xFFFF)
    });
    // Code that runs off the top of the address space (zeroed RAM, then IP wraps) never stops.
    let run_off = sector(|a| a.jmp_far(0xFFFF, 0x0010));
    for backend in backends("jumps_past_the_end_of_ram") {
        let out = run("hlt_top", backend, &hlt_at_top, &["--mem", "1088K", "--timeout", "10s"]);
        assert_eq!(assert_clean_end(backend, &out), 0, "{backend}: {}", stderr(&out));
        let out = run("run_off", backend, &run_off, &with(&["--mem", "1088K"], limits(backend)));
        let s = assert_clean_end(backend, &out);
        assert!(s == 3 || s == 4, "{backend}: status {s}: {}", stderr(&out));
    }
}

#[test]
fn garbage_code_ends_cleanly() {
    let patterns: [&[u8]; 6] = [&[0xFF], &[0x0F, 0xFF], &[0xFE, 0xFF], &[0xF0, 0x90], &[0x0F], &[0xC4, 0xC0]];
    for backend in backends("garbage_code_ends_cleanly") {
        for (i, p) in patterns.iter().enumerate() {
            let code: Vec<u8> = p.iter().copied().cycle().take(510).collect();
            let image = boot_sector(&code).expect("fits");
            let out = run(&format!("garbage{i}"), backend, &image, limits(backend));
            assert_clean_end(&format!("{backend} pattern {p:02x?}"), &out);
        }
    }
}

#[test]
fn triple_fault_is_status_3() {
    // An IDT limit of 0 makes the INT fault, the fault's delivery fault, and so on: shutdown.
    // 0x7D00 is in the zero padding of the sector: limit 0, base 0.
    let image = sector(|a| {
        a.lidt(ptr(0x7D00))?;
        a.int3()?;
        a.hlt()
    });
    for backend in backends("triple_fault_is_status_3") {
        let out = run("triple", backend, &image, &["--timeout", "2s"]);
        let s = assert_clean_end(backend, &out);
        if backend == "kvm" && s == 4 {
            // KVM's emulator here ignores the IDT limit in real mode and delivers the INT
            // through IVT[3] (a silicon CPU shuts down): it spins until the timeout.
            eprintln!("note: kvm ignored the real-mode IDT limit: {}", stderr(&out));
            continue;
        }
        assert_eq!(s, 3, "{backend}: {}", stderr(&out));
        assert!(stderr(&out).contains("triple fault"), "{backend}: {}", stderr(&out));
    }
}

#[test]
fn jmp_self_ends_at_the_budget_or_the_timeout() {
    let image = picoqemu::guests::jmp_self().expect("jmp $");
    for backend in backends("jmp_self_ends_at_the_budget_or_the_timeout") {
        let out = run("jmp_self_t", backend, &image, &["--timeout", "1s"]);
        assert_eq!(assert_clean_end(backend, &out), 4, "{backend}: {}", stderr(&out));
        assert!(stderr(&out).contains("timeout"), "{backend}: {}", stderr(&out));
    }
    let out = run("jmp_self_b", "interp", &image, &["--max-instructions", "1000000"]);
    assert_eq!(assert_clean_end("interp", &out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("budget"), "{}", stderr(&out));
}

/// `(bytes, mnemonic)` of instructions KVM's emulator on our hosts cannot run
/// (`../shared/design/kvm-on-our-hosts.md` section 4), each followed by the exit sequence.
/// (`fninit` is not among them: KVM's emulator implements it; the probe's x87 snippet failed
/// at the instructions after it.)
const KVM_CANNOT_EMULATE: [(&[u8], &str); 11] = [
    (&[0x27], "daa"),
    (&[0x62, 0x07], "bound"),
    (&[0xC8, 0x08, 0x00, 0x02], "enter"),
    (&[0xF1], "int1"),
    (&[0x0F, 0xC7, 0xF0], "rdrand"),
    (&[0xF3, 0x0F, 0xB8, 0xC3], "popcnt"),
    (&[0xF2, 0x0F, 0x38, 0xF0, 0xC3], "crc32"),
    (&[0x0F, 0x01, 0xD0], "xgetbv"),
    (&[0x63, 0x07], "arpl"),
    (&[0xD9, 0xE8], "fld1"),
    (&[0x0F, 0x77], "emms"),
];

fn unemulatable_guest(insn: &[u8]) -> Vec<u8> {
    sector_with_handler(|a| {
        a.mov(sp, 0x7000u32)?;
        a.xor(bx, bx)?; // BOUND reads its bounds at DS:0 (IVT[0] = 7C02, 0000): AX is below
        a.mov(ax, 0x0100u32)?;
        a.mov(ecx, 0x1000u32)?;
        a.db(insn)?;
        done(a)
    })
}

#[test]
fn instructions_kvm_cannot_emulate_are_named_status_3_stops() {
    for backend in backends("instructions_kvm_cannot_emulate_are_named_status_3_stops") {
        for (insn, mnemonic) in KVM_CANNOT_EMULATE {
            let image = unemulatable_guest(insn);
            let out = run(&format!("noemu_{mnemonic}"), backend, &image, &["--timeout", "10s"]);
            let what = format!("{backend} {mnemonic}");
            let s = assert_clean_end(&what, &out);
            let err = stderr(&out);
            if backend == "kvm" {
                assert_eq!(s, 3, "{what}: {err}");
                assert!(err.contains("could not emulate"), "{what}: {err}");
                assert!(err.contains(mnemonic), "{what}: the instruction is not named: {err}");
                assert!(err.contains("--backend interp"), "{what}: no advice: {err}");
            } else {
                // The interpreter runs it, faults through the IVT, or names it as unsupported.
                assert!(
                    s == status_of(DONE_EXIT) || s == status_of(HANDLER_EXIT) || s == 3,
                    "{what}: {s}: {err}"
                );
                if s == 3 {
                    assert!(err.contains("unsupported instruction"), "{what}: {err}");
                }
            }
        }
    }
}

#[test]
fn vmcall_is_a_named_stop_long_before_the_timeout() {
    // KVM here can spin inside KVM_RUN on VMCALL; the backend detects it (CS:IP stuck on an
    // instruction it cannot complete) within a few 100 ms ticks. The 60 s timeout is only a
    // safety net: reaching it (status 4) means the detection failed.
    let image = unemulatable_guest(&[0x0F, 0x01, 0xC1]);
    for backend in backends("vmcall_is_a_named_stop_long_before_the_timeout") {
        let out = run("vmcall", backend, &image, &["--timeout", "60s"]);
        let s = assert_clean_end(backend, &out);
        if backend == "kvm" {
            assert_eq!(s, 3, "kvm: {}", stderr(&out));
            assert!(stderr(&out).contains("vmcall"), "kvm names the instruction: {}", stderr(&out));
        } else {
            // Real mode has no hypervisor: #UD through the IVT, or a named unsupported stop.
            assert!(s == 3 || s == status_of(HANDLER_EXIT), "{backend}: {s}: {}", stderr(&out));
        }
    }
}

#[test]
fn hlt_with_interrupts_off_halts() {
    let image = sector(|a| {
        a.cli()?;
        a.hlt()
    });
    for backend in backends("hlt_with_interrupts_off_halts") {
        let out = run("cli_hlt", backend, &image, &["--timeout", "10s"]);
        assert_eq!(assert_clean_end(backend, &out), 0, "{backend}: {}", stderr(&out));
    }
}

#[test]
fn int_through_a_garbage_ivt_ends_cleanly() {
    // Every IVT entry is FFFF:FFFF (where RAM is zero): the handler's first instruction crosses
    // the segment limit, which faults through the same garbage again.
    let image = sector(|a| {
        a.xor(ax, ax)?;
        a.mov(es, ax)?;
        a.xor(di, di)?;
        a.mov(ax, 0xFFFFu32)?;
        a.mov(cx, 512u32)?;
        a.rep().stosw()?;
        a.int(0x21)?;
        done(a)
    });
    for backend in backends("int_through_a_garbage_ivt_ends_cleanly") {
        let out = run("garbage_ivt", backend, &image, limits(backend));
        let s = assert_clean_end(backend, &out);
        assert!(s == 3 || s == 4, "{backend}: status {s}: {}", stderr(&out));
    }
}

#[test]
fn rep_with_the_count_at_its_maximum() {
    // 16-bit: CX = FFFF iterations (ECX's high half is ignored), then the end.
    let a16 = sector_with_handler(|a| {
        a.mov(ax, 0x1000u32)?;
        a.mov(es, ax)?;
        a.xor(di, di)?;
        a.mov(ecx, 0xFFFF_FFFFu32)?;
        a.rep().stosb()?;
        a.cmp(ecx, 0xFFFF_0000u32)?;
        let mut bad = a.create_label();
        a.jne(bad)?;
        done(a)?;
        a.set_label(&mut bad)?;
        a.hlt()
    });
    // 32-bit addressing: EDI passes offset FFFF and faults (#GP) long before ECX runs out.
    let a32 = sector_with_handler(|a| {
        a.mov(ax, 0x1000u32)?;
        a.mov(es, ax)?;
        a.xor(edi, edi)?;
        a.mov(ecx, 0xFFFF_FFFFu32)?;
        a.db(&[0x67, 0xF3, 0xAA])?; // a32 rep stosb
        done(a)
    });
    for backend in backends("rep_with_the_count_at_its_maximum") {
        let out = run("rep16", backend, &a16, &["--timeout", "60s"]);
        assert_eq!(assert_clean_end(backend, &out), status_of(DONE_EXIT), "{backend}: {}", stderr(&out));
        let out = run("rep32", backend, &a32, &["--timeout", "60s"]);
        assert_eq!(assert_clean_end(backend, &out), status_of(HANDLER_EXIT), "{backend}: {}", stderr(&out));
    }
}

#[test]
fn string_io_to_unclaimed_ports() {
    // rep insb from an unclaimed port fills the buffer with FF; rep outsb to it is dropped.
    let image = sector(|a| {
        a.mov(ax, 0x2000u32)?;
        a.mov(es, ax)?;
        a.mov(ds, ax)?;
        a.xor(di, di)?;
        a.mov(dx, 0x1234u32)?;
        a.mov(cx, 0x300u32)?;
        a.rep().insb()?;
        a.xor(si, si)?;
        a.mov(cx, 0x300u32)?;
        a.rep().outsb()?;
        a.xor(di, di)?;
        a.mov(al, 0xFFu32)?;
        a.mov(cx, 0x300u32)?;
        a.repe().scasb()?;
        let mut bad = a.create_label();
        a.jne(bad)?;
        done(a)?;
        a.set_label(&mut bad)?;
        a.hlt()
    });
    for backend in backends("string_io_to_unclaimed_ports") {
        let out = run("string_io", backend, &image, &["--timeout", "30s"]);
        assert_eq!(assert_clean_end(backend, &out), status_of(DONE_EXIT), "{backend}: {}", stderr(&out));
    }
}

#[test]
fn mmio_outside_any_device_register() {
    // The MMIO console window at 0xD0000 has registers at offsets 0 (print) and 4 (count);
    // stores elsewhere in the window are ignored and loads there read 0.
    let image = sector(|a| {
        a.mov(ax, 0xD000u32)?;
        a.mov(es, ax)?;
        a.mov(byte_ptr(0x0).es(), u32::from(b'X'))?;
        a.mov(dword_ptr(0x10).es(), 0x1234_5678u32)?;
        a.mov(byte_ptr(0xFFF).es(), 0x55u32)?;
        a.mov(al, byte_ptr(0x800).es())?;
        a.add(al, byte_ptr(0xFFF).es())?;
        a.add(al, byte_ptr(0x4).es())?; // the count: 1
        a.add(al, 0x40u32)?;
        a.out(0xF4u32, al)?;
        a.hlt()
    });
    for backend in backends("mmio_outside_any_device_register") {
        let out = run("mmio", backend, &image, &["--mmio-console", "0xd0000", "--timeout", "30s"]);
        assert_eq!(assert_clean_end(backend, &out), status_of(0x41), "{backend}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "X", "{backend}");
    }
}

/// The flood guest: `rounds` times `rep outsb` of a 32 KiB pattern buffer to COM1.
fn serial_flood(rounds: u16) -> Vec<u8> {
    sector(|a| {
        a.mov(ax, 0x3000u32)?;
        a.mov(es, ax)?;
        a.mov(ds, ax)?;
        a.xor(di, di)?;
        a.mov(cx, 0x8000u32)?;
        let mut fill = a.create_label();
        a.set_label(&mut fill)?;
        a.mov(ax, di)?;
        a.and(al, 0x3Fu32)?;
        a.add(al, 0x30u32)?;
        a.stosb()?;
        a.loop_(fill)?;
        a.mov(bx, u32::from(rounds))?;
        a.mov(dx, 0x3F8u32)?;
        let mut round = a.create_label();
        a.set_label(&mut round)?;
        a.xor(si, si)?;
        a.mov(cx, 0x8000u32)?;
        a.rep().outsb()?;
        a.dec(bx)?;
        a.jnz(round)?;
        done(a)
    })
}

/// Runs `args` with stdout drained as it comes; returns (status, stdout, peak RSS in KiB).
/// The child is reaped with `wait4` (for its own resource usage), not through `Child`.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[&str]) -> (Option<i32>, Vec<u8>, i64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_picoqemu"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning picoqemu");
    let mut stdout = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut stdout).expect("reading stdout");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data that wait4 fills in; `pid` is our own child, which
    // has not been waited for (std's `Child` is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to local variables; wait4 writes only through them.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, stdout, usage.ru_maxrss)
}

#[test]
fn serial_flood_loses_nothing_and_memory_stays_bounded() {
    for backend in backends("serial_flood_loses_nothing_and_memory_stays_bounded") {
        // 64 MiB on the interpreter; 4 MiB on KVM (an exit per string I/O chunk here).
        let rounds: u16 = if backend == "kvm" { 128 } else { 2048 };
        let path = image_path("flood", backend, &serial_flood(rounds));
        let p = path.to_str().expect("UTF-8 path");
        let (status, out, rss_kib) =
            run_measured(&["run", "--backend", backend, "--screen", "none", "--timeout", "120s", p]);
        let idle = image_path("idle", backend, &sector(|a| a.hlt()));
        let idle = idle.to_str().expect("UTF-8 path");
        let (_, _, idle_kib) = run_measured(&["run", "--backend", backend, "--screen", "none", idle]);
        assert_eq!(status, Some(status_of(DONE_EXIT)), "{backend}");
        let expected = usize::from(rounds) * 0x8000;
        assert_eq!(out.len(), expected, "{backend}: serial bytes lost or added");
        for (i, chunk) in out.chunks(0x8000).enumerate() {
            let ok = chunk.iter().enumerate().all(|(j, &b)| b == 0x30 + (j as u8 & 0x3F));
            assert!(ok, "{backend}: round {i} of the flood is corrupt");
        }
        // Output streams to the host: the peak memory of the flood exceeds that of a guest
        // that only halts by less than the output's size.
        let growth = rss_kib - idle_kib;
        assert!(
            growth * 1024 < expected as i64 * 3 / 4,
            "{backend}: peak RSS {rss_kib} KiB, idle {idle_kib} KiB, for {expected} bytes of output"
        );
    }
}
