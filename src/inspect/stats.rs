//! `--stats`: after the run, on stderr: instructions retired (counted by the interpreter, and
//! by KVM only when it single-stepped), KVM's exits by reason, the accesses each device served
//! and those that went to no device, the BIOS services the guest called that no BIOS
//! implements, and the wall time of the run.
use std::fmt::Write as _;
use std::time::Duration;

use picoqemu_core::{BackendStats, DeviceStats, IoStats};

/// A BIOS service the guest asked for that the BIOS does not implement (`--stats` lists
/// them; the BIOS fills the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownBiosCall {
    /// The interrupt vector (`int 0x10`).
    pub vector: u8,
    /// AH at the call (the function).
    pub ah: u8,
    /// How many times it was called.
    pub count: u64,
}

/// What `--stats` prints, gathered after the run.
pub struct RunStats<'a> {
    pub backend: &'a str,
    pub cpu: BackendStats,
    pub devices: Vec<DeviceStats>,
    pub io: IoStats,
    /// `None` when no BIOS is loaded.
    pub bios: Option<&'a [UnknownBiosCall]>,
    pub wall: Duration,
}

/// The `--stats` text.
pub fn format_stats(s: &RunStats) -> String {
    let mut out = format!("stats ({} backend):\n", s.backend);
    let _ = match s.cpu.instructions {
        Some(n) => writeln!(out, "  instructions retired: {n}"),
        None => writeln!(
            out,
            "  instructions retired: not counted (KVM runs the guest freely; --trace counts them)"
        ),
    };
    if let Some(exits) = s.cpu.exit_reasons {
        let list: Vec<String> =
            exits.by_reason().iter().filter(|(_, n)| *n > 0).map(|(name, n)| format!("{name} {n}")).collect();
        let _ = writeln!(
            out,
            "  exits: {} ({})",
            exits.total(),
            if list.is_empty() { "none".into() } else { list.join(", ") }
        );
    }
    let used: Vec<&DeviceStats> = s.devices.iter().filter(|d| d.reads + d.writes > 0).collect();
    if used.is_empty() {
        out.push_str("  devices: no port or MMIO access\n");
    } else {
        out.push_str("  devices (port and MMIO accesses):\n");
        for d in used {
            let _ = writeln!(out, "    {:<20} {} reads, {} writes", d.name, d.reads, d.writes);
        }
    }
    let (ur, uw) = (s.io.unclaimed_reads, s.io.unclaimed_writes);
    if ur + uw > 0 {
        let _ = writeln!(out, "    {:<20} {ur} reads, {uw} writes", "(no device)");
    }
    out.push_str(&bios_lines(s.bios));
    let _ = writeln!(out, "  wall time: {:.3} ms", s.wall.as_secs_f64() * 1e3);
    out
}

/// The unknown-BIOS-services part: `none loaded`, `none`, or one line per service.
fn bios_lines(bios: Option<&[UnknownBiosCall]>) -> String {
    match bios {
        None => "  bios: none loaded\n".into(),
        Some([]) => "  bios: no unknown service called\n".into(),
        Some(calls) => {
            let mut out = String::from("  bios: unknown services called:\n");
            for c in calls {
                let _ = writeln!(out, "    int {:#04x} ah={:#04x}: {} times", c.vector, c.ah, c.count);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoqemu_core::ExitCounts;

    fn stats(cpu: BackendStats, bios: Option<&[UnknownBiosCall]>) -> String {
        let devices = vec![
            DeviceStats { name: "VGA", reads: 0, writes: 0 },
            DeviceStats { name: "debug console", reads: 0, writes: 3 },
        ];
        let io = IoStats { unclaimed_writes: 2, ..IoStats::default() };
        let wall = Duration::from_micros(1500);
        format_stats(&RunStats { backend: "kvm", cpu, devices, io, bios, wall })
    }

    #[test]
    fn interpreter_counts_and_devices() {
        let cpu = BackendStats { instructions: Some(42), ..BackendStats::default() };
        let text = stats(cpu, None);
        assert!(text.contains("  instructions retired: 42\n"), "{text}");
        assert!(!text.contains("exits"), "{text}");
        assert!(text.contains("    debug console        0 reads, 3 writes\n"), "{text}");
        assert!(!text.contains("VGA"), "{text}");
        assert!(text.contains("    (no device)          0 reads, 2 writes\n"), "{text}");
        assert!(text.contains("  bios: none loaded\n"), "{text}");
        assert!(text.contains("  wall time: 1.500 ms\n"), "{text}");
    }

    #[test]
    fn kvm_exits_by_reason() {
        let exits = ExitCounts { io: 3, hlt: 1, signal: 2, ..ExitCounts::default() };
        let cpu = BackendStats { instructions: None, exits: Some(6), exit_reasons: Some(exits) };
        let text = stats(cpu, None);
        assert!(text.contains("instructions retired: not counted"), "{text}");
        assert!(text.contains("  exits: 6 (io 3, hlt 1, signal 2)\n"), "{text}");
    }

    #[test]
    fn bios_services_plug_in() {
        let calls = [UnknownBiosCall { vector: 0x10, ah: 0x4F, count: 2 }];
        let text = stats(BackendStats::default(), Some(&calls));
        assert!(text.contains("    int 0x10 ah=0x4f: 2 times\n"), "{text}");
        assert!(stats(BackendStats::default(), Some(&[])).contains("bios: no unknown service called"));
    }
}
