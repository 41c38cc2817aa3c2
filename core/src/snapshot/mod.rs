//! Whole-machine snapshots that resume on either backend (`--save-state` / `--load-state`).
//!
//! [`save`] encodes a [`Machine`] — its configuration, all of guest RAM, virtual time, the IRQ
//! lines and interrupt requests, every device's state ([`crate::Device::save`], one section
//! per device keyed by its name) — together with a CPU's [`CpuSnapshot`] (read with
//! [`crate::Backend::cpu_snapshot`]). [`restore`] checks a file against a machine built the
//! same way and loads it; the CPU part is then given to any backend with
//! [`crate::Backend::restore_cpu_snapshot`]. The container ([`format`](mod@format)) is versioned and
//! checksummed; every problem is a typed [`SnapshotError`], never a panic. Host output a
//! device already wrote (COM1, port 0xE9, the MMIO console) is not part of the machine and
//! not saved; bus traffic counters start again from zero.
mod codec;
mod cpu;
pub mod format;

use thiserror::Error;

pub use codec::{StateReader, StateWriter};
pub use cpu::{CpuSnapshot, InterruptShadow};
use format::{Section, Tag};

use crate::clock::TimeMode;
use crate::{Machine, MachineConfig, Platform};

/// Why a snapshot cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("not a picoqemu snapshot (it does not start with the snapshot magic)")]
    BadMagic,
    #[error("snapshot format version {found} is not supported (this picoqemu reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("the snapshot is truncated: {what}")]
    Truncated { what: String },
    #[error(
        "the snapshot is corrupt: its checksum is {stored:#010x} but its contents give {computed:#010x}"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("the snapshot was saved on another machine: {0}; build the machine with the same options")]
    ConfigMismatch(String),
    #[error("the snapshot has the state of a device this machine does not have: {0}")]
    UnknownDevice(String),
    #[error("the snapshot lacks the state of this machine's device '{0}'")]
    MissingDevice(String),
    #[error("the snapshot lacks its {0} section")]
    MissingSection(String),
    #[error("the snapshot's {section} section is invalid: {reason}")]
    Invalid { section: String, reason: String },
}

const CONF: Tag = *b"CONF";
const CPU: Tag = *b"CPU ";
const TIME: Tag = *b"TIME";
const IRQS: Tag = *b"IRQS";
const RAM: Tag = *b"RAM ";
const DEV: Tag = *b"DEV ";
/// Longest device name a file may carry.
const MAX_NAME: usize = 64;

/// Encodes `machine` and the CPU state `cpu` as a snapshot file.
pub fn save(machine: &Machine, cpu: &CpuSnapshot) -> Vec<u8> {
    let mut sections: Vec<(Tag, Vec<u8>)> = Vec::new();
    let mut w = StateWriter::new();
    encode_config(machine.config(), &mut w);
    sections.push((CONF, w.into_vec()));
    let mut w = StateWriter::new();
    cpu.encode(&mut w);
    sections.push((CPU, w.into_vec()));
    let mut w = StateWriter::new();
    w.u64(machine.clock().now_ns());
    sections.push((TIME, w.into_vec()));
    let mut w = StateWriter::new();
    machine.bus().save_interrupts(&mut w);
    sections.push((IRQS, w.into_vec()));
    sections.push((RAM, machine.ram().to_vec()));
    for (name, state) in machine.bus().save_devices() {
        let mut w = StateWriter::new();
        w.bytes(name.as_bytes());
        w.raw(&state);
        sections.push((DEV, w.into_vec()));
    }
    format::encode(&sections)
}

/// Checks `bytes` against `machine` (same configuration, same devices) and loads the machine
/// part into it; returns the CPU part for [`crate::Backend::restore_cpu_snapshot`]. Every
/// check that does not need a device's own payload runs before anything is changed; a device
/// that refuses its payload may leave the machine partly restored (reset it before reuse).
pub fn restore(machine: &mut Machine, bytes: &[u8]) -> Result<CpuSnapshot, SnapshotError> {
    let sections = format::decode(bytes)?;
    let one = |tag: Tag| -> Result<&[u8], SnapshotError> {
        let mut found = sections.iter().filter(|s| s.tag == tag);
        let first = found.next().ok_or_else(|| SnapshotError::MissingSection(format::tag_name(&tag)))?;
        if found.next().is_some() {
            return Err(SnapshotError::Invalid {
                section: format::tag_name(&tag),
                reason: "it appears more than once".into(),
            });
        }
        Ok(first.payload)
    };
    if let Some(s) = sections.iter().find(|s| ![CONF, CPU, TIME, IRQS, RAM, DEV].contains(&s.tag)) {
        return Err(SnapshotError::Invalid {
            section: format::tag_name(&s.tag),
            reason: "this picoqemu knows no such section".into(),
        });
    }
    check_config(machine.config(), one(CONF)?)?;
    let cpu = CpuSnapshot::decode(&mut StateReader::new("CPU", one(CPU)?))?;
    let mut time = StateReader::new("TIME", one(TIME)?);
    let now_ns = time.u64()?;
    time.finish()?;
    let ram = one(RAM)?;
    if ram.len() != machine.ram().len() {
        return Err(SnapshotError::Invalid {
            section: "RAM".into(),
            reason: format!("{} bytes for {} bytes of guest RAM", ram.len(), machine.ram().len()),
        });
    }
    let devices = device_sections(&sections)?;
    machine.bus().check_devices(&devices)?;
    machine.bus_mut().restore_interrupts(&mut StateReader::new("IRQS", one(IRQS)?), now_ns)?;
    machine.bus_mut().restore_devices(&devices)?;
    machine
        .ram_mut()
        .write(0, ram)
        .map_err(|e| SnapshotError::Invalid { section: "RAM".into(), reason: e.to_string() })?;
    Ok(cpu)
}

/// The device sections as (name, state payload).
fn device_sections<'a>(sections: &[Section<'a>]) -> Result<Vec<(String, &'a [u8])>, SnapshotError> {
    let mut out = Vec::new();
    for s in sections.iter().filter(|s| s.tag == DEV) {
        let mut r = StateReader::new("DEV", s.payload);
        let name = r.bytes(MAX_NAME)?;
        let name = std::str::from_utf8(name).map_err(|_| r.invalid("a device name is not UTF-8"))?;
        let state = &s.payload[4 + name.len()..];
        out.push((name.to_string(), state));
    }
    Ok(out)
}

fn platform_code(p: Platform) -> u8 {
    match p {
        Platform::Bare => 0,
        Platform::Pc => 1,
    }
}

fn encode_config(c: &MachineConfig, w: &mut StateWriter) {
    w.u64(c.mem_size as u64);
    w.bool(c.a20_wrap);
    w.u8(platform_code(c.platform));
    match c.time {
        TimeMode::Virtual { ns_per_instruction } => {
            w.u8(0);
            w.u64(ns_per_instruction);
        }
        TimeMode::Realtime => {
            w.u8(1);
            w.u64(0);
        }
    }
}

/// Compares the saved configuration with `machine`'s, naming the first difference.
fn check_config(machine: &MachineConfig, payload: &[u8]) -> Result<(), SnapshotError> {
    let mut saved = StateWriter::new();
    encode_config(machine, &mut saved);
    let mut r = StateReader::new("CONF", payload);
    let mem = r.u64()?;
    let a20 = r.bool()?;
    let platform = r.u8()?;
    let (time, ns) = (r.u8()?, r.u64()?);
    r.finish()?;
    let mismatch = |what: String| Err(SnapshotError::ConfigMismatch(what));
    if mem != machine.mem_size as u64 {
        return mismatch(format!(
            "it has {} KiB of guest RAM, this machine {} KiB (--mem)",
            mem / 1024,
            machine.mem_size / 1024
        ));
    }
    if a20 != machine.a20_wrap {
        return mismatch(format!(
            "A20 wrapping is {} there, {} here (--a20-wrap)",
            on(a20),
            on(machine.a20_wrap)
        ));
    }
    if platform != platform_code(machine.platform) {
        let name = |c: u8| match c {
            0 => "bare".to_string(),
            1 => "pc".to_string(),
            v => format!("unknown ({v})"),
        };
        return mismatch(format!(
            "its platform is {}, this machine's {}",
            name(platform),
            name(platform_code(machine.platform))
        ));
    }
    if payload != saved.as_slice() {
        return mismatch(format!(
            "its time mode ({time}, {ns} ns per instruction) differs from this machine's"
        ));
    }
    Ok(())
}

fn on(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}
