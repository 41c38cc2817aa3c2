//! Invariants of the port/MMIO bus and every device behind it (COM1 16550, VGA CRTC, debug
//! console, POST port, debug exit, MMIO console) under arbitrary access sequences, checked
//! against a small reference model of the documented behaviour. Shared by the cargo-fuzz
//! target `fuzz/fuzz_targets/bus.rs` and the proptest in `core/tests/fuzz_props.rs`.
//!
//! Input: byte 0 configures the bus (detached ports; an MMIO console and its base), then each
//! access takes 4 bytes (kind + size, address, value). The model predicts what every read
//! returns where the documentation fixes it (unclaimed ports and MMIO read all ones; the
//! scratch, divisor latch, LCR, MCR, CRTC index and registers, POST code read back; the
//! receive queue is FIFO; LSR always says the transmitter is empty; 0xE9 reads 0xE9), which
//! writes end the run (only the debug-exit port), what every character device printed, and the
//! traffic counters.
use std::collections::VecDeque;

use picoqemu_core::devices::{MmioConsole, Sink};
use picoqemu_core::{IoAction, IoBus, IoStats, StopReason};

/// Ports the generator prefers (a random 16-bit port almost never hits a device).
const PORTS: [u16; 16] = [
    0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x3D4, 0x3D5, 0x3DA, 0x3C0, 0xE9, 0x80, 0xF4,
    0xF3,
];

/// The reference model.
#[derive(Default)]
struct Model {
    detached: bool,
    console: Option<u64>,
    stats: IoStats,
    serial: Vec<u8>,
    debugcon: Vec<u8>,
    mmio_out: Vec<u8>,
    mmio_count: u32,
    post: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    rx: VecDeque<u8>,
    crtc_index: u8,
    crtc: [u8; 0x19],
}

impl Model {
    fn reset(&mut self) {
        let (detached, console) = (self.detached, self.console);
        *self = Model { detached, console, divisor: 12, ..Model::default() };
        self.crtc[0x0A] = 0x0D;
        self.crtc[0x0B] = 0x0E;
    }

    fn claimed(port: u16) -> bool {
        matches!(port, 0x3F8..=0x3FF | 0x3C0..=0x3DF | 0xE9 | 0x80 | 0xF4)
    }

    /// The value a read of `port` must return, when the documentation fixes it.
    fn read(&mut self, port: u16) -> Option<u8> {
        let dlab = self.lcr & 0x80 != 0;
        Some(match port {
            0x3F8 if dlab => self.divisor as u8,
            0x3F8 => self.rx.pop_front().unwrap_or(0),
            0x3F9 if dlab => (self.divisor >> 8) as u8,
            0x3FB => self.lcr,
            0x3FC => self.mcr,
            0x3FF => self.scr,
            0x3D4 => self.crtc_index,
            0x3D5 => self.crtc.get(usize::from(self.crtc_index)).copied().unwrap_or(0xFF),
            0xE9 => 0xE9,
            0x80 => self.post,
            0xF4 => 0xFF,
            p if !Self::claimed(p) => 0xFF,
            _ => return None,
        })
    }

    fn write(&mut self, port: u16, v: u8) {
        let dlab = self.lcr & 0x80 != 0;
        match port {
            0x3F8 if dlab => self.divisor = (self.divisor & 0xFF00) | u16::from(v),
            // Loopback: into the 16-byte receive FIFO, dropped (overrun) when it is full.
            0x3F8 if self.mcr & 0x10 != 0 && self.rx.len() < 16 => self.rx.push_back(v),
            0x3F8 if self.mcr & 0x10 != 0 => {}
            0x3F8 => self.serial.push(v),
            0x3F9 if dlab => self.divisor = (self.divisor & 0xFF) | u16::from(v) << 8,
            0x3FA if v & 2 != 0 => self.rx.clear(),
            0x3FB => self.lcr = v,
            0x3FC => self.mcr = v & 0x1F,
            0x3FF => self.scr = v,
            0x3D4 => self.crtc_index = v,
            0x3D5 => {
                if let Some(r) = self.crtc.get_mut(usize::from(self.crtc_index)) {
                    *r = v;
                }
            }
            0xE9 => self.debugcon.push(v),
            0x80 => self.post = v,
            _ => {}
        }
    }
}

/// Runs the access sequence `data` describes and asserts every invariant.
pub fn check(data: &[u8]) {
    let Some((&cfg, ops)) = data.split_first() else { return };
    let mut model = Model::default();
    model.reset();
    model.detached = cfg & 1 != 0;
    let mut bus = if model.detached { IoBus::detached() } else { IoBus::capturing() };
    if cfg & 2 != 0 {
        // Anywhere, including the very top of the address space.
        let base =
            if cfg & 4 != 0 { u64::MAX - u64::from(cfg >> 3) * 0x100 } else { u64::from(cfg >> 3) << 15 };
        // A window that would run past the top of the address space is refused at
        // registration; then the bus has no console.
        if bus.register(MmioConsole::new(base, Sink::capture())).is_ok() {
            model.console = Some(base);
        }
    }
    for op in ops.chunks_exact(4) {
        step(&mut bus, &mut model, op);
        assert_eq!(bus.stats(), model.stats, "traffic counters after {op:02x?}");
    }
    assert_eq!(bus.uart().out.captured(), model.serial.as_slice(), "COM1 output");
    assert_eq!(bus.debugcon().out.captured(), model.debugcon.as_slice(), "debug console output");
    if let Some(c) = bus.mmio_console() {
        assert_eq!(c.out.captured(), model.mmio_out.as_slice(), "MMIO console output");
    }
}

fn port_of(sel: u8, raw: u8, value: u8) -> u16 {
    if sel & 0x80 != 0 {
        PORTS[usize::from(raw % 16)]
    } else {
        u16::from_le_bytes([raw, value])
    }
}

fn step(bus: &mut IoBus, model: &mut Model, op: &[u8]) {
    let (sel, a, v) = (op[0], op[1], op[2]);
    let size = [1usize, 2, 4, 1][usize::from(op[3] & 3)];
    let data: Vec<u8> = (0..size).map(|i| v.wrapping_add(i as u8 * 0x11)).collect();
    match sel & 7 {
        0 | 1 => pio_read(bus, model, port_of(sel, a, v), size),
        2 | 3 => pio_write(bus, model, port_of(sel, a, v), &data),
        4 => mmio_read(bus, model, mmio_addr(model, a, v, op[3]), size),
        5 => mmio_write(bus, model, mmio_addr(model, a, v, op[3]), &data),
        6 => {
            let bytes = vec![v; usize::from(a % 40)];
            bus.uart_mut().push_input(&bytes);
            let room = 65536usize.saturating_sub(model.rx.len());
            model.rx.extend(bytes.into_iter().take(room));
        }
        _ if a == 0 => {
            bus.reset();
            model.reset();
            assert_eq!(bus.uart().out.captured(), b"", "reset keeps captured output");
        }
        _ => bus.flush(),
    }
}

fn mmio_addr(model: &Model, a: u8, v: u8, hi: u8) -> u64 {
    match model.console {
        Some(base) if hi & 0x80 != 0 => base.wrapping_add(u64::from(a & 0x0F)).wrapping_sub(u64::from(v & 3)),
        _ => u64::from_le_bytes([a, v, hi >> 4, 0, 0, 0, 0, 0]),
    }
}

fn pio_read(bus: &mut IoBus, model: &mut Model, port: u16, size: usize) {
    let mut buf = vec![0u8; size];
    bus.pio_read(port, &mut buf);
    model.stats.pio_reads += 1;
    // The debug-exit port answers the rest of an access that reaches it (all ones).
    let mut whole = false;
    for (i, &got) in buf.iter().enumerate() {
        let p = port.wrapping_add(i as u16);
        whole |= p == 0xF4 && !model.detached;
        let want = if model.detached || whole { Some(0xFF) } else { model.read(p) };
        if model.detached || (!whole && !Model::claimed(p)) {
            model.stats.unclaimed_reads += 1;
        }
        if let Some(w) = want {
            assert_eq!(got, w, "read of port {p:#x} (byte {i} of an access at {port:#x})");
        }
        if p == 0x3FD && !model.detached {
            assert_eq!(got & 0x60, 0x60, "LSR must report the transmitter empty");
            assert_eq!(got & 1, u8::from(!model.rx.is_empty()), "LSR data-ready bit");
        }
        if p == 0x3FA && !model.detached {
            assert!(matches!(got & 0x0F, 1 | 2 | 4) && got & 0x30 == 0, "IIR {got:#x}");
        }
    }
}

fn pio_write(bus: &mut IoBus, model: &mut Model, port: u16, data: &[u8]) {
    let action = bus.pio_write(port, data);
    model.stats.pio_writes += 1;
    if model.detached {
        model.stats.unclaimed_writes += data.len() as u64;
        assert_eq!(action, IoAction::Continue, "a detached bus stopped the run");
        return;
    }
    // The debug-exit port takes the rest of an access that reaches it as one value.
    let exit_at = (0..data.len()).find(|&i| port.wrapping_add(i as u16) == 0xF4);
    for (i, &b) in data.iter().enumerate().take(exit_at.unwrap_or(data.len())) {
        let p = port.wrapping_add(i as u16);
        if !Model::claimed(p) {
            model.stats.unclaimed_writes += 1;
        }
        model.write(p, b);
    }
    if let Some(i) = exit_at {
        let code = data[i..].iter().rev().fold(0u32, |acc, &b| acc << 8 | u32::from(b));
        assert_eq!(action, IoAction::Stop(StopReason::DebugExit(code)), "debug exit");
        assert_eq!(bus.debug_exit().last(), Some(code));
        return;
    }
    assert_eq!(action, IoAction::Continue, "a write to {port:#x} stopped the run");
}

fn in_console(model: &Model, addr: u64) -> Option<u64> {
    model.console.and_then(|base| addr.checked_sub(base)).filter(|&o| o < 0x1000)
}

fn mmio_read(bus: &mut IoBus, model: &mut Model, addr: u64, size: usize) {
    let mut buf = vec![0u8; size];
    bus.mmio_read(addr, &mut buf);
    model.stats.mmio_reads += 1;
    let Some(off) = in_console(model, addr) else {
        model.stats.unclaimed_reads += 1;
        assert!(buf.iter().all(|&b| b == 0xFF), "unclaimed MMIO read at {addr:#x} gave {buf:02x?}");
        return;
    };
    let count = model.mmio_count.to_le_bytes();
    for (i, &got) in buf.iter().enumerate() {
        let o = off + i as u64;
        let want = if (4..8).contains(&o) { count[(o - 4) as usize] } else { 0 };
        assert_eq!(got, want, "MMIO console byte at offset {o:#x}");
    }
}

fn mmio_write(bus: &mut IoBus, model: &mut Model, addr: u64, data: &[u8]) {
    assert_eq!(bus.mmio_write(addr, data), IoAction::Continue, "an MMIO write stopped the run");
    model.stats.mmio_writes += 1;
    match in_console(model, addr) {
        None => model.stats.unclaimed_writes += 1,
        Some(0) => {
            model.mmio_out.push(data[0]);
            model.mmio_count = model.mmio_count.wrapping_add(1);
        }
        Some(_) => {}
    }
}
