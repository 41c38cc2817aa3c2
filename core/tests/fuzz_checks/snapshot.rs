//! Invariants of the snapshot loader (`picoqemu_core::snapshot::restore`) on hostile files:
//! random bytes, a valid snapshot with bytes flipped (its checksum then fixed, so the damage
//! reaches the section and device decoders), cut short, or with its header fields changed.
//! Shared by the cargo-fuzz target `fuzz/fuzz_targets/snapshot.rs` and the proptest in
//! `core/tests/fuzz_props.rs`.
//!
//! Input: byte 0 picks the mode; the rest is the file (mode 0) or 5-byte mutations (offset,
//! xor value). Checked: loading never panics; a file that loads saves back to a file that
//! loads to the same CPU snapshot and saves to the same bytes; the loaded machine's devices
//! then survive port reads, time passing, idling and interrupt acknowledges without a panic.
use picoqemu_core::snapshot::{self, format, CpuSnapshot, InterruptShadow};
use picoqemu_core::{CpuState, IoBus, Machine, MachineConfig, Platform, MIN_MEM_SIZE};

fn config() -> MachineConfig {
    MachineConfig { mem_size: MIN_MEM_SIZE, platform: Platform::Pc, ..MachineConfig::default() }
}

fn machine() -> Machine {
    Machine::new(config(), IoBus::capturing()).expect("a PC machine")
}

/// A snapshot with state worth breaking: PIC initialised with a request in service, PIT
/// channels counting, UART programmed with input queued, CRTC registers, a queued vector.
pub fn base() -> Vec<u8> {
    let mut m = machine();
    let bus = m.bus_mut();
    for (port, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0xA0, 0x11), (0xA1, 0x70)] {
        let _ = bus.pio_write(port, &[v]);
    }
    for (port, v) in [(0xA1, 0x02), (0xA1, 0x01), (0x21, 0xFC), (0x43, 0x34), (0x40, 0x10), (0x40, 0x01)] {
        let _ = bus.pio_write(port, &[v]);
    }
    for (port, v) in [(0x43, 0xB6), (0x42, 0x33), (0x42, 0x00), (0x61, 0x03), (0x43, 0x00)] {
        let _ = bus.pio_write(port, &[v]);
    }
    for (port, v) in
        [(0x3FB, 0x80), (0x3F8, 0x01), (0x3FB, 0x03), (0x3FF, 0x5A), (0x3D4, 0x0E), (0x3D5, 0x07)]
    {
        let _ = bus.pio_write(port, &[v]);
    }
    bus.uart_mut().push_input(b"queued");
    m.retire(50_000);
    let _ = m.acknowledge_interrupt();
    m.raise_interrupt(0x42);
    m.ram_mut().write(0x7C00, b"\xFA\xF4").expect("RAM");
    let state = CpuState { eip: 0x7C00, ..CpuState::default() };
    let cpu = CpuSnapshot {
        state,
        shadow: InterruptShadow::Sti,
        halted: true,
        pending_interrupt: Some(0x08),
        instructions: 5_000,
    };
    snapshot::save(&m, &cpu)
}

/// Sets the trailing CRC-32 to match the rest of the file.
fn fix_crc(file: &mut [u8]) {
    if file.len() >= 4 {
        let body = file.len() - 4;
        let crc = crc32fast_hash(&file[..body]);
        file[body..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// CRC-32 (IEEE), bit by bit: the test does not depend on the crate the loader uses.
fn crc32fast_hash(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Applies 5-byte mutations to `file`: most land in the header and the small sections before
/// RAM or in the device sections after it, where the decoders are.
fn mutate(mut file: Vec<u8>, muts: &[u8]) -> Vec<u8> {
    let len = file.len();
    for m in muts.chunks_exact(5) {
        let raw = u32::from_le_bytes([m[0], m[1], m[2], m[3]]) as usize;
        let at = match raw % 4 {
            0 => raw / 4 % 400.min(len),
            1 | 2 => len - 1 - (raw / 4 % 1200.min(len)),
            _ => raw / 4 % len,
        };
        file[at] ^= m[4].max(1);
    }
    file
}

/// Loads `file` into a fresh machine; on success checks the save/load round trip and pokes
/// the devices.
fn load_and_poke(file: &[u8]) {
    let mut m = machine();
    let Ok(cpu) = snapshot::restore(&mut m, file) else { return };
    let again = snapshot::save(&m, &cpu);
    let mut m2 = machine();
    let cpu2 = snapshot::restore(&mut m2, &again).expect("a saved snapshot loads");
    assert_eq!(cpu2, cpu, "the CPU part survives a save/load round trip");
    assert!(snapshot::save(&m2, &cpu2) == again, "save/load/save is stable");
    let bus = m.bus_mut();
    let mut b = [0u8; 1];
    for port in [0x20, 0x21, 0xA0, 0xA1, 0x40, 0x41, 0x42, 0x61, 0x3F8, 0x3FA, 0x3FD, 0x3D5, 0x3DA, 0x80] {
        bus.pio_read(port, &mut b);
    }
    for (port, v) in [(0x43, 0xC2), (0x61, 0x00), (0x61, 0x01), (0x20, 0x0C)] {
        let _ = bus.pio_write(port, &[v]);
    }
    bus.pio_read(0x20, &mut b);
    for _ in 0..4 {
        m.retire(100_000);
        let _ = m.idle();
        let _ = m.acknowledge_interrupt();
        let _ = m.instructions_until_event();
    }
}

/// The check: see the module doc.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => load_and_poke(rest),
        1 => {
            let mut file = mutate(base(), rest);
            fix_crc(&mut file);
            load_and_poke(&file);
        }
        2 => {
            let file = base();
            let cut = rest.iter().fold(0usize, |a, &b| a.wrapping_mul(257).wrapping_add(usize::from(b)));
            let cut = cut % file.len();
            let e =
                snapshot::restore(&mut machine(), &file[..cut]).expect_err("a file cut short never loads");
            let _ = e.to_string();
        }
        _ => {
            let mut file = base();
            let n = rest.len().min(format::HEADER_LEN);
            for (i, &x) in rest[..n].iter().enumerate() {
                file[8 + i % (format::HEADER_LEN - 8)] ^= x;
            }
            fix_crc(&mut file);
            load_and_poke(&file);
        }
    }
}
