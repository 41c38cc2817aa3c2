//! `picoqemu run --gdb` driven by a real GDB (`gdb -batch`) and by a minimal remote-protocol
//! client, on both backends: connect, software and hardware breakpoints, stepi, registers,
//! memory read and write by linear address, `monitor` commands, a write watchpoint, continue
//! to the guest's end (GDB sees the exit status), detach, kill (status 137), GDB's Ctrl-C
//! (the 0x03 byte) during a continue, attaching to a running guest, and a port already in use.
//!
//! The port is always 0: picoqemu announces the bound port on stderr and the test reads it.
//! Without `gdb` on PATH the tests that run it skip with a printed reason, or fail
//! under `PICOQEMU_REQUIRE_GDB=1` (set by `.ci/run`); KVM runs skip likewise without /dev/kvm
//! (`PICOQEMU_REQUIRE_KVM=1` makes them fail).
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Output, Stdio};

use iced_x86::code_asm::{al, ax, bx, word_ptr, CodeAssembler, CodeLabel};
use iced_x86::BlockEncoderOptions;
use picoqemu::guests;

mod common;
use common::kvm_usable;

/// The backends to test: the interpreter, and KVM when usable.
fn backends(test: &str) -> Vec<&'static str> {
    let mut v = vec!["interp"];
    if kvm_usable(test) {
        v.push("kvm");
    }
    v
}

/// True when `gdb` runs; otherwise prints why the test skips (or fails when required).
fn gdb_usable(test: &str) -> bool {
    let ok = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "show version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("PICOQEMU_REQUIRE_GDB").as_deref() != Ok("1"),
            "{test}: PICOQEMU_REQUIRE_GDB=1 but gdb cannot be run"
        );
        eprintln!("SKIP: {test}: gdb is not installed (apt-get install gdb)");
    }
    ok
}

/// The test guest at 0000:7C00 and the addresses of its instructions:
/// `[0] mov ax,0x1234; [1] mov bx,0x600; [2] mov [bx],ax; [3] add ax,[bx]; [4] mov [bx+2],ax;
/// [5] mov al,0x10; [6] out 0xf4,al` (debug exit 0x10: status 33) and a `hlt`.
fn guest() -> (PathBuf, Vec<u32>) {
    let mut a = CodeAssembler::new(16).unwrap();
    let mut l: Vec<CodeLabel> = (0..7).map(|_| a.create_label()).collect();
    a.set_label(&mut l[0]).unwrap();
    a.mov(ax, 0x1234u32).unwrap();
    a.set_label(&mut l[1]).unwrap();
    a.mov(bx, 0x600u32).unwrap();
    a.set_label(&mut l[2]).unwrap();
    a.mov(word_ptr(bx), ax).unwrap();
    a.set_label(&mut l[3]).unwrap();
    a.add(ax, word_ptr(bx)).unwrap();
    a.set_label(&mut l[4]).unwrap();
    a.mov(word_ptr(bx + 2), ax).unwrap();
    a.set_label(&mut l[5]).unwrap();
    a.mov(al, 0x10u32).unwrap();
    a.set_label(&mut l[6]).unwrap();
    a.out(u32::from(guests::DEBUG_EXIT_PORT), al).unwrap();
    a.hlt().unwrap();
    let r = a.assemble_options(0x7C00, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
    let ips = l.iter().map(|x| r.label_ip(x).unwrap() as u32).collect();
    let path = unique_path("cli_gdb_guest");
    std::fs::write(&path, guests::boot_sector(r.inner.code_buffer.as_slice()).unwrap()).unwrap();
    (path, ips)
}

/// A file name of its own for each image written (tests run in parallel: one test must not
/// truncate the image another is booting).
fn unique_path(stem: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{stem}-{}-{n}.img", std::process::id()))
}

/// A boot sector that loops forever.
fn spinner() -> PathBuf {
    let mut a = CodeAssembler::new(16).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.inc(ax).unwrap();
    a.jmp(top).unwrap();
    let path = unique_path("cli_gdb_spinner");
    std::fs::write(&path, guests::boot_sector(&a.assemble(0x7C00).unwrap()).unwrap()).unwrap();
    path
}

/// A running `picoqemu run --gdb 127.0.0.1:0 …` and the port it announced.
struct Pico {
    child: Child,
    stderr: BufReader<ChildStderr>,
    seen: String,
    port: u16,
}

impl Pico {
    fn start(backend: &str, image: &PathBuf, extra: &[&str]) -> Pico {
        let mut child = Command::new(env!("CARGO_BIN_EXE_picoqemu"))
            .args(["run", "--backend", backend, "--gdb", "127.0.0.1:0"])
            .args(extra)
            .arg(image)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning picoqemu");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let port = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "picoqemu ended before listening: {seen}");
            seen.push_str(&line);
            if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
                break rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
            }
        };
        Pico { child, stderr, seen, port }
    }

    /// Waits for the end: (status, stdout, all of stderr).
    fn finish(mut self) -> (i32, String, String) {
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        self.stderr.read_to_string(&mut self.seen).unwrap();
        let status = self.child.wait().unwrap();
        (status.code().expect("exited, not killed by a signal"), out, self.seen)
    }
}

/// Runs `gdb -batch` with `cmds` against `port`.
fn gdb(port: u16, cmds: &[String]) -> Output {
    let mut c = Command::new("gdb");
    // No `set architecture`: picoqemu's target description says i8086.
    c.args(["-batch", "-nx", "-ex"]).arg(format!("target remote 127.0.0.1:{port}"));
    for cmd in cmds {
        c.arg("-ex").arg(cmd);
    }
    c.output().expect("running gdb")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn gdb_breaks_steps_reads_writes_watches_and_continues_to_the_end() {
    if !gdb_usable("gdb_session") {
        return;
    }
    let (image, ip) = guest();
    for backend in backends("gdb_session") {
        let pico = Pico::start(backend, &image, &["--gdb-wait"]);
        let cmds: Vec<String> = vec![
            "info registers eip".into(),
            "x/2i 0x7c00".into(),
            format!("break *{:#x}", ip[1]),
            "continue".into(),
            format!("hbreak *{:#x}", ip[3]),
            "continue".into(),
            "info registers eax ebx".into(),
            "x/2xb 0x600".into(),
            "set {short}0x600 = 0x1111".into(),
            "stepi".into(),
            "info registers eax eip".into(),
            "monitor x 0060:0 2".into(),
            "delete".into(),
            "watch *(short*)0x602".into(),
            "continue".into(),
            "info registers eip".into(),
            "delete".into(),
            "continue".into(),
        ];
        let out = gdb(pico.port, &cmds);
        let log = text(&out);
        let (status, _, err) = pico.finish();
        let has =
            |s: &str| assert!(log.contains(s), "{backend}: gdb output lacks {s:?}:\n{log}\npicoqemu: {err}");
        has("eip            0x7c00");
        // 16-bit disassembly: GDB took the architecture from picoqemu's target description.
        has("=> 0x7c00:\tmov    $0x1234,%ax");
        has("0x7c03:\tmov    $0x600,%bx");
        has(&format!("Breakpoint 1, {:#010x} in ?? ()", ip[1]));
        has(&format!("Breakpoint 2, {:#010x} in ?? ()", ip[3]));
        has("eax            0x1234");
        has("ebx            0x600");
        has("0x600:\t0x34\t0x12");
        // The written word was added: 0x1234 + 0x1111.
        has("eax            0x2345");
        has(&format!("eip            {:#x}", ip[4]));
        has("0x00600: 11 11");
        has("Hardware watchpoint 3: *(short*)0x602");
        has("New value = 9029");
        has(&format!("eip            {:#x}", ip[5]));
        has("exited with code 041");
        assert_eq!(status, 33, "{backend}: {err}");
    }
}

#[test]
fn gdb_detach_lets_the_guest_finish_and_kill_exits_137() {
    if !gdb_usable("gdb_detach_kill") {
        return;
    }
    let (image, ip) = guest();
    for backend in backends("gdb_detach_kill") {
        let pico = Pico::start(backend, &image, &["--gdb-wait"]);
        let out = gdb(pico.port, &[format!("hbreak *{:#x}", ip[2]), "continue".into(), "detach".into()]);
        let (status, _, err) = pico.finish();
        assert!(text(&out).contains("Breakpoint 1,"), "{backend}: {}", text(&out));
        assert_eq!(status, 33, "{backend}: detach runs the guest on: {err}");
        assert!(err.contains("gdb: detached; the guest runs on"), "{err}");

        let pico = Pico::start(backend, &image, &["--gdb-wait"]);
        let out = gdb(pico.port, &["stepi".into(), "kill".into()]);
        let (status, _, err) = pico.finish();
        assert_eq!(status, 137, "{backend}: {}\n{err}", text(&out));
        assert!(err.contains("picoqemu: gdb: the debugger killed the guest"), "{err}");
    }
}

/// A minimal GDB remote-protocol client (no-ack mode is never asked for, so `+` acks flow).
struct Rsp(TcpStream);

impl Rsp {
    fn connect(port: u16) -> Rsp {
        Rsp(TcpStream::connect(("127.0.0.1", port)).expect("connecting to picoqemu"))
    }

    fn send(&mut self, body: &str) {
        let sum = body.bytes().fold(0u8, |s, b| s.wrapping_add(b));
        self.0.write_all(format!("${body}#{sum:02x}").as_bytes()).unwrap();
    }

    /// Reads one packet's body (run-length encoding expanded), acknowledging it.
    fn reply(&mut self) -> String {
        let mut b = [0u8; 1];
        loop {
            self.0.read_exact(&mut b).expect("reading a reply");
            if b[0] == b'$' {
                break;
            }
        }
        let mut body: Vec<u8> = Vec::new();
        loop {
            self.0.read_exact(&mut b).unwrap();
            match b[0] {
                b'#' => break,
                b'*' => {
                    self.0.read_exact(&mut b).unwrap();
                    let last = *body.last().expect("a run follows a character");
                    body.resize(body.len() + usize::from(b[0] - 29), last);
                }
                c => body.push(c),
            }
        }
        let mut sum = [0u8; 2];
        self.0.read_exact(&mut sum).unwrap();
        self.0.write_all(b"+").unwrap();
        String::from_utf8(body).unwrap()
    }
}

#[test]
fn gdb_interrupt_stops_a_spinning_guest_and_attach_stops_a_running_one() {
    let image = spinner();
    for backend in backends("gdb_interrupt") {
        // --gdb-wait: continue, then GDB's Ctrl-C byte.
        let pico = Pico::start(backend, &image, &["--gdb-wait"]);
        let mut client = Rsp::connect(pico.port);
        client.send("?");
        let first = client.reply();
        assert!(first.starts_with('S') || first.starts_with('T'), "{backend}: {first}");
        client.send("c");
        client.0.write_all(&[0x03]).unwrap();
        let stop = client.reply();
        assert!(
            stop.starts_with("S02") || stop.starts_with("T02"),
            "{backend}: stop after interrupt: {stop}"
        );
        client.send("k");
        let (status, _, err) = pico.finish();
        assert_eq!(status, 137, "{backend}: {err}");

        // Without --gdb-wait the guest runs until GDB connects, which stops it in its loop.
        let pico = Pico::start(backend, &image, &[]);
        let mut client = Rsp::connect(pico.port);
        client.send("?");
        let first = client.reply();
        assert!(first.starts_with('S') || first.starts_with('T'), "{backend}: {first}");
        client.send("g");
        let regs = client.reply();
        // EIP (register 8, 8 hex digits each, little-endian) is inside the loop at 0x7C00.
        let eip = u32::from_str_radix(&regs[64..72], 16).unwrap().swap_bytes();
        assert!((0x7C00..0x7C04).contains(&eip), "{backend}: eip {eip:#x}");
        client.send("k");
        let (status, _, err) = pico.finish();
        assert_eq!(status, 137, "{backend}: {err}");
        assert!(err.contains("gdb: connected"), "{err}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_usage_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::picoqemu(&["run", "--builtin", "hello", "--gdb", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with(&format!("picoqemu: --gdb {addr}: cannot listen: ")), "{err}");
    assert!(err.contains("Address already in use") && err.contains("pick another port"), "{err}");
    assert!(out.stdout.is_empty());
    let out = common::picoqemu(&["run", "--builtin", "hello", "--gdb-wait"]);
    assert_eq!(out.status.code(), Some(2), "--gdb-wait needs --gdb");
}

#[test]
fn gdb_owns_breakpoints_so_trace_break_and_magic_break_are_refused() {
    for extra in [&["--trace"][..], &["--break", "0:7c00"], &["--magic-break"]] {
        let mut args = vec!["run", "--builtin", "hello", "--gdb", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let out = common::picoqemu(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("cannot be used with"), "{extra:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}
