//! Embedding picoqemu: what a program that uses the crates (rather than the `picoqemu`
//! command) does. Run with `cargo run --release --example embed`.
//!
//! 1. Runs the article's "Hello World!" program on every available CPU (the interpreter, and
//!    KVM when `/dev/kvm` is usable) and checks that their screens and registers agree.
//! 2. Hooks port I/O: a guest assembled here writes ten bytes to port 0x300, a [`PortHook`]
//!    closure collects them.
//! 3. Moves a half-finished guest between CPUs: runs the hello program for 1,000
//!    instructions on one backend, saves a snapshot, restores it into a fresh machine and
//!    finishes it on the other backend; the screen equals that of an uninterrupted run.
use std::error::Error;
use std::sync::{Arc, Mutex};

use iced_x86::code_asm::*;
use picoqemu::{
    load_image, snapshot, Backend, CpuState, ImageKind, InterpBackend, IoBus, KvmBackend, Machine,
    MachineConfig, PortHook, RunLimits, StopReason,
};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// A CPU for `machine`: `"kvm"` when it can be opened, otherwise the interpreter.
fn cpu(name: &str, machine: &Machine) -> Result<Box<dyn Backend>> {
    Ok(match name {
        "kvm" => Box::new(KvmBackend::new(machine)?),
        _ => Box::new(InterpBackend::new()),
    })
}

/// The backends this host offers, interpreter first.
fn available_backends() -> Vec<&'static str> {
    let mut names = vec!["interp"];
    match KvmBackend::probe() {
        Ok(()) => names.push("kvm"),
        Err(e) => println!("(KVM unavailable here: {e}; showing the interpreter only)"),
    }
    names
}

/// A machine with `image` loaded in the article's raw layout, and its start state.
fn machine_with(image: &[u8]) -> Result<(Machine, CpuState)> {
    let mut machine = Machine::new(MachineConfig::default(), IoBus::capturing())?;
    let start = load_image(&mut machine, image, ImageKind::Raw)?;
    Ok((machine, start))
}

/// Runs `image` to its `hlt` on backend `name`: the screen and the final registers.
fn run_to_halt(name: &str, image: &[u8]) -> Result<(String, CpuState)> {
    let (mut machine, start) = machine_with(image)?;
    let mut backend = cpu(name, &machine)?;
    backend.set_state(&start)?;
    let stop = backend.run(&mut machine, RunLimits::instructions(1_000_000))?;
    if stop != StopReason::Halted {
        return Err(format!("{name}: expected a halt, got {stop}").into());
    }
    Ok((machine.screen_text(), backend.state()?))
}

fn same_program_on_every_cpu(image: &[u8], backends: &[&str]) -> Result<()> {
    let (screen, state) = run_to_halt("interp", image)?;
    print!("{screen}");
    for name in backends {
        let (other_screen, other_state) = run_to_halt(name, image)?;
        let diff = state.diff(&other_state);
        if other_screen != screen || !diff.is_empty() {
            return Err(format!("{name} differs from the interpreter: {diff:?}").into());
        }
        println!(
            "{name}: same screen and registers (CS:IP {:04x}:{:04x})",
            other_state.cs(),
            other_state.ip()
        );
    }
    Ok(())
}

/// `mov al, 0 / mov cx, 10 / next: out 0x300, al (via dx) / inc al / loop next / hlt`.
fn port_writer() -> Result<Vec<u8>> {
    let mut a = CodeAssembler::new(16)?;
    let mut next = a.create_label();
    a.mov(al, 0)?;
    a.mov(cx, 10)?;
    a.mov(dx, 0x300)?;
    a.set_label(&mut next)?;
    a.out(dx, al)?;
    a.inc(al)?;
    a.loop_(next)?;
    a.hlt()?;
    Ok(a.assemble(0)?)
}

fn hook_port_io(backends: &[&str]) -> Result<()> {
    let image = port_writer()?;
    for name in backends {
        let (mut machine, start) = machine_with(&image)?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let hook = PortHook::new("example port", 0x300..=0x300).on_write(move |_port, byte| {
            if let Ok(mut v) = log.lock() {
                v.push(byte);
            }
        });
        machine.bus_mut().register(hook)?;
        let mut backend = cpu(name, &machine)?;
        backend.set_state(&start)?;
        let stop = backend.run(&mut machine, RunLimits::instructions(10_000))?;
        let bytes = seen.lock().map_err(|_| "hook poisoned")?.clone();
        println!("{name}: {stop}; port 0x300 saw {bytes:?}");
        if bytes != (0..10).collect::<Vec<u8>>() {
            return Err(format!("{name}: the hook saw {bytes:?}").into());
        }
    }
    Ok(())
}

/// Runs 1,000 instructions on `from`, saves a snapshot, restores it into a fresh machine and
/// finishes there on `to`.
fn move_between_cpus(image: &[u8], from: &str, to: &str) -> Result<()> {
    let (mut first, start) = machine_with(image)?;
    let mut a = cpu(from, &first)?;
    a.set_state(&start)?;
    let stop = a.run(&mut first, RunLimits::instructions(1_000))?;
    // The whole machine (RAM, devices, time) and the CPU (with its hidden state) in one file.
    let file: Vec<u8> = snapshot::save(&first, &a.cpu_snapshot()?);

    let mut second = Machine::new(MachineConfig::default(), IoBus::capturing())?;
    let cpu_part = snapshot::restore(&mut second, &file)?;
    let mut b = cpu(to, &second)?;
    b.restore_cpu_snapshot(&cpu_part)?;
    let end = b.run(&mut second, RunLimits::instructions(1_000_000))?;
    let (whole, _) = run_to_halt("interp", image)?;
    println!(
        "{from} -> {to}: paused at {:04x}:{:04x} ({stop}, snapshot of {} bytes), finished with {end}; screen {}",
        cpu_part.state.cs(),
        cpu_part.state.ip(),
        file.len(),
        if second.screen_text() == whole { "identical" } else { "DIFFERENT" }
    );
    if end != StopReason::Halted || second.screen_text() != whole {
        return Err("the moved guest did not finish like an uninterrupted run".into());
    }
    Ok(())
}

pub fn main() -> Result<()> {
    let backends = available_backends();
    let hello = picoqemu::guests::hello()?;
    same_program_on_every_cpu(&hello, &backends)?;
    hook_port_io(&backends)?;
    let last = backends[backends.len() - 1];
    move_between_cpus(&hello, "interp", last)?;
    move_between_cpus(&hello, last, "interp")?;
    Ok(())
}
