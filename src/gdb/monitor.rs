//! GDB `monitor` commands for real-mode work, where GDB itself only knows linear addresses:
//! `monitor regs` (the registers with segment bases and CS:IP), `monitor linear SEG:OFF`
//! (the linear address), `monitor x SEG:OFF [N]` (N bytes, default 16, in hex) and
//! `monitor help`. SEG may be a number or a segment register name (`cs`, `ds`, …).
use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};
use picoqemu_core::{BackendError, CpuState, SegReg};

use super::target::GdbTarget;

/// Bytes `monitor x` shows at most.
const MAX_DUMP: usize = 4096;

const HELP: &str = "picoqemu monitor commands:
  monitor regs              registers, segment bases, CS:IP and its linear address
  monitor linear SEG:OFF    the linear address of SEG:OFF (GDB's addresses are linear)
  monitor x SEG:OFF [N]     N bytes (default 16) at SEG:OFF, in hex
SEG is a number (hex with 0x, or plain hex) or cs, ds, es, ss, fs, gs.";

/// Parses a hex number (`0x` optional).
fn hex(s: &str) -> Option<u32> {
    let t = s.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

/// Parses `SEG:OFF` to a linear address (SEG a number or a register name).
pub fn linear(spec: &str, s: &CpuState) -> Result<u32, String> {
    let (seg, off) =
        spec.split_once(':').ok_or_else(|| format!("'{spec}' is not SEG:OFF, e.g. 07c0:0010"))?;
    let base = match SegReg::ALL.iter().find(|r| r.name().eq_ignore_ascii_case(seg.trim())) {
        Some(r) => s.seg(*r).base,
        None => hex(seg).filter(|v| *v <= 0xFFFF).ok_or_else(|| format!("bad segment '{seg}'"))? << 4,
    };
    let off = hex(off).ok_or_else(|| format!("bad offset '{off}'"))?;
    Ok(base.wrapping_add(off))
}

/// Runs one monitor command line and returns its output.
pub fn run(cmd: &str, s: &CpuState, read: &mut dyn FnMut(u32, &mut [u8]) -> usize) -> Result<String, String> {
    let mut words = cmd.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("regs"), None, _) => {
            let segs: Vec<String> = SegReg::ALL
                .iter()
                .map(|r| format!("{}={:04x}(base {:05x})", r.name(), s.seg(*r).selector, s.seg(*r).base))
                .collect();
            Ok(format!(
                "{s}\n{}\nCS:IP={:04x}:{:04x} linear {:#x}",
                segs.join(" "),
                s.cs(),
                s.eip,
                s.pc_linear()
            ))
        }
        (Some("linear"), Some(spec), None) => Ok(format!("{:#x}", linear(spec, s)?)),
        (Some("x"), Some(spec), n) => {
            let n = match n {
                Some(n) => n.parse::<usize>().map_err(|_| format!("bad count '{n}'"))?.min(MAX_DUMP),
                None => 16,
            };
            let at = linear(spec, s)?;
            let mut buf = vec![0u8; n];
            let got = read(at, &mut buf);
            let mut out = String::new();
            for (i, row) in buf[..got].chunks(16).enumerate() {
                let bytes: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
                out.push_str(&format!("{:#07x}: {}\n", at as usize + 16 * i, bytes.join(" ")));
            }
            if got < n {
                out.push_str(&format!("(only {got} of {n} bytes are in guest RAM)\n"));
            }
            Ok(out.trim_end().to_string())
        }
        (Some("help") | None, _, _) => Ok(HELP.into()),
        _ => Err(format!("unknown monitor command '{}'; try monitor help", cmd.trim())),
    }
}

impl MonitorCmd for GdbTarget<'_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), BackendError> {
        let state = self.backend.state()?;
        let cmd = String::from_utf8_lossy(cmd);
        let ram = self.machine.ram();
        let mut read = |at: u32, buf: &mut [u8]| {
            let n = ram.len().saturating_sub(at as usize).min(buf.len());
            if ram.read(u64::from(at), &mut buf[..n]).is_err() {
                return 0;
            }
            n
        };
        match run(&cmd, &state, &mut read) {
            Ok(text) => outputln!(out, "{text}"),
            Err(e) => outputln!(out, "error: {e}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seg_off_and_dump() {
        let mut s = CpuState::default();
        s.set_seg(SegReg::Ds, 0x07C0);
        assert_eq!(linear("07c0:0010", &s), Ok(0x7C10));
        assert_eq!(linear("ds:0x10", &s), Ok(0x7C10));
        assert!(linear("7c00", &s).is_err() && linear("zz:1", &s).is_err() && linear("12345:0", &s).is_err());
        let mem: Vec<u8> = (0..32).collect();
        let mut read = |at: u32, buf: &mut [u8]| {
            let n = mem.len().saturating_sub(at as usize).min(buf.len());
            buf[..n].copy_from_slice(&mem[at as usize..at as usize + n]);
            n
        };
        assert_eq!(
            run("x 0:1e 4", &s, &mut read).unwrap(),
            "0x0001e: 1e 1f\n(only 2 of 4 bytes are in guest RAM)"
        );
        assert!(run("regs", &s, &mut read).unwrap().contains("ds=07c0(base 07c00)"));
        assert!(run("frob", &s, &mut read).is_err());
    }
}
